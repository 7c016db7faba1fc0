"""k-means for the cluster-based samplers: faiss when installed, else a vectorised torch Lloyd.

Example:
    >>> import torch
    >>> x = torch.cat([torch.zeros(5, 2), torch.ones(5, 2) * 10])
    >>> centroids, labels = kmeans(x, 2, iters=5, seed=0, backend="torch")
    >>> sorted(torch.bincount(labels).tolist())
    [5, 5]
"""
from typing import Tuple

import torch

from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor
BACKENDS = ("auto", "faiss", "torch")


def faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _assign(x: Tensor, centroids: Tensor) -> Tensor:
    """Nearest centroid (squared euclidean) of each row of ``x``."""
    d2 = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.t() + (centroids * centroids).sum(1)
    return d2.argmin(1)


def _torch_kmeans(x: Tensor, k: int, iters: int, seed: int) -> Tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(int(seed))
    init = torch.randperm(x.shape[0], generator=gen)[:k].to(x.device)
    centroids = x[init].clone()
    labels = _assign(x, centroids)
    for _ in range(int(iters)):
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        filled = counts > 0  # an empty cluster keeps its previous centroid
        centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
        new = _assign(x, centroids)
        if torch.equal(new, labels):
            break
        labels = new
    return centroids, labels


def _faiss_kmeans(x: Tensor, k: int, iters: int, seed: int) -> Tuple[Tensor, Tensor]:
    import faiss
    import numpy as np
    data = np.ascontiguousarray(x.detach().cpu().float().numpy())
    km = faiss.Kmeans(data.shape[1], k, niter=int(iters), seed=int(seed), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(data)
    _, labels = km.index.search(data, 1)
    centroids = torch.from_numpy(km.centroids.copy()).to(device=x.device, dtype=x.dtype)
    return centroids, torch.from_numpy(labels[:, 0].astype("int64")).to(x.device)


def kmeans(x: Tensor, k: int, iters: int = 10, seed: int = 0, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """``(centroids [k', d], labels [n])`` of ``x [n, d]`` with ``k' = min(k, n)`` clusters.

    Args:
        x: the points (rows).
        k: number of clusters (clamped to the number of points).
        iters: Lloyd iterations (the torch backend stops early once the assignment is stable).
        seed: initialisation seed (k distinct points drawn at random).
        backend: ``'faiss'`` (``faiss.Kmeans``), ``'torch'``, or ``'auto'`` (faiss when installed).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"kmeans backend must be one of {BACKENDS}, got {backend!r}.")
    if x.dim() != 2 or x.shape[0] == 0:
        raise ConfigError(f"kmeans needs a non-empty [n, d] matrix, got shape {tuple(x.shape)}.")
    if int(k) < 1:
        raise ConfigError(f"kmeans needs k >= 1 clusters, got {k}.")
    k = min(int(k), x.shape[0])
    x = x.detach()
    if backend == "faiss" or (backend == "auto" and faiss_installed()):
        return _faiss_kmeans(x, k, iters, seed)
    return _torch_kmeans(x, k, iters, seed)


__all__ = ["kmeans", "faiss_installed", "BACKENDS"]
