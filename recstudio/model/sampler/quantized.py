"""Samplers over k-means cells of the item vectors: PRIS (``cluster_uni`` / ``cluster_pop``, one codebook)
and MIDX (``midx_uni`` / ``midx_pop``, two codebooks over the two halves); formulas in
:mod:`recstudio.model.sampler.model_based`."""
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.base import check_ids
from recstudio.model.sampler.kmeans import BACKENDS, kmeans
from recstudio.model.sampler.snapshot import ModelBasedSampler, pairwise_score
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor


class QuantizedSampler(ModelBasedSampler):
    """Cells from k-means quantisation of the item vectors (one codebook: PRIS; two halves: MIDX).

    Args:
        num_items: catalogue size including padding 0.
        num_clusters: K, codewords per codebook (clamped to the number of items).
        metric: ``'ip'`` | ``'l2'`` | ``'auto'``.
        kmeans_iters: Lloyd iterations at each refresh.
        kmeans_backend: ``'auto'`` (faiss when installed), ``'faiss'`` or ``'torch'``.
        alpha: popularity exponent of the ``*_pop`` variants (weight ``count^alpha``).
        item_counts: training counts per item id (required by the ``*_pop`` variants).
        generator, seed: see :class:`Sampler`.
    """

    parts = 1
    within = "uniform"

    def __init__(self, num_items: int, num_clusters: int = 16, metric: str = "auto", kmeans_iters: int = 10,
                 kmeans_backend: str = "auto", alpha: float = 1.0, item_counts: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, metric, item_counts, generator, seed)
        if int(num_clusters) < 1:
            raise ConfigError(f"{type(self).__name__}: num_clusters must be >= 1, got {num_clusters}.")
        if kmeans_backend not in BACKENDS:
            raise ConfigError(f"{type(self).__name__}: kmeans_backend must be one of {BACKENDS}, got {kmeans_backend!r}.")
        if float(alpha) < 0:
            raise ConfigError(f"{type(self).__name__}: alpha must be >= 0, got {alpha}.")
        self.num_clusters, self.kmeans_iters = int(num_clusters), int(kmeans_iters)
        self.kmeans_backend, self.alpha = kmeans_backend, float(alpha)
        self.kmeans_seed = 0 if seed is None else int(seed)
        self.codebooks = []
        self.splits = []

    def item_weights(self) -> Tensor:
        """``w_i`` [num_items] float64: 1 (uniform within a cell) or ``count_i^alpha``; 0 at the padding."""
        if self.within == "uniform":
            w = torch.ones(self.num_items, dtype=torch.float64, device=self.vectors.device)
        else:
            if self.counts.numel() == 0:
                raise ConfigError(f"{type(self).__name__} draws by popularity: give item_counts (the model's "
                                  "training counts) before the first refresh.")
            w = self.counts.to(self.vectors.device).pow(self.alpha)
        w[0] = 0.0
        return w

    def rebuild(self) -> None:
        v = self.vectors[1:]
        d = v.shape[1]
        if self.parts == 2 and d < 2:
            raise ConfigError(f"{type(self).__name__} splits the vectors in two halves; they have d = {d}.")
        bounds = [0, d] if self.parts == 1 else [0, d // 2, d]
        self.splits = [(bounds[p], bounds[p + 1]) for p in range(self.parts)]
        self.codebooks, cell = [], torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        for p, (a, b) in enumerate(self.splits):
            centroids, labels = kmeans(v[:, a:b], self.num_clusters, self.kmeans_iters,
                                       self.kmeans_seed + self.refreshes * 7919 + p, self.kmeans_backend)
            self.codebooks.append(centroids.to(v.device))
            cell = cell * centroids.shape[0] + labels.to(v.device)
        self.num_cells = int(torch.tensor([c.shape[0] for c in self.codebooks]).prod())
        w = self.item_weights()
        if float(w.sum()) <= 0:
            raise DataError(f"{type(self).__name__}: every item has weight 0 (all counts 0); nothing can be drawn.")
        self.item_cell = torch.cat([cell.new_full((1,), -1), cell])  # [num_items], padding -1
        self.log_w = torch.log(w)  # -inf at the padding and at items of count 0 (pop)
        order = torch.sort(cell, stable=True).indices
        self.sorted_items = order + 1
        sizes = torch.bincount(cell, minlength=self.num_cells)
        self.cell_start = torch.cumsum(sizes, 0) - sizes
        self.cell_size = sizes
        mass = torch.zeros(self.num_cells, dtype=torch.float64, device=v.device).index_add_(0, cell, w[1:])
        self.log_mass = torch.log(mass)  # -inf for empty (or zero-popularity) cells
        self.cum_w = torch.cumsum(w[1:][order], 0)  # inclusive, over the items sorted by cell
        self.cum_before = torch.cat([self.cum_w.new_zeros(1), self.cum_w])[self.cell_start]

    def cell_scores(self, q: Tensor) -> Tensor:
        """``[B, num_cells]`` score of each cell (sum of the parts' codeword scores), float64."""
        out = None
        for (a, b), c in zip(self.splits, self.codebooks):
            s = pairwise_score(q[:, a:b], c, self.score_metric).double()
            out = s if out is None else (out.unsqueeze(2) + s.unsqueeze(1)).reshape(q.shape[0], -1)
        return out

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        q, per_row = self.rows(self.ready(query), pos_items)
        dev, b, draws = self.vectors.device, q.shape[0], k * per_row
        score = self.cell_scores(q)  # [B, C]
        logits = score + self.log_mass
        log_z = torch.logsumexp(logits, 1, keepdim=True)
        cdf = torch.cumsum(torch.exp(logits - log_z), 1)
        u = self.rand((b, draws), dev) * cdf[:, -1:]
        cells = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(max=self.num_cells - 1)
        start, size = self.cell_start[cells], self.cell_size[cells]
        if self.within == "uniform":
            r = torch.minimum((self.rand((b, draws), dev) * size).long(), size - 1)
            at = start + r
        else:
            target = self.cum_before[cells] + self.rand((b, draws), dev) * torch.exp(self.log_mass[cells])
            at = torch.searchsorted(self.cum_w, target.contiguous(), right=True)
            at = torch.minimum(torch.maximum(at, start), start + size - 1)
        neg = self.sorted_items[at]
        log_neg = score.gather(1, cells) + self.log_w[neg] - log_z
        log_pos = self._log_prob_rows(score, log_z, pos_items.reshape(b, -1).to(dev))
        return self.finish(query, pos_items, neg, log_pos, log_neg, k)

    def _log_prob_rows(self, score: Tensor, log_z: Tensor, items: Tensor) -> Tensor:
        cell = self.item_cell[items]
        lp = score.gather(1, cell.clamp(min=0)) + self.log_w[items] - log_z
        return torch.where(cell >= 0, lp, torch.full_like(lp, float("-inf")))

    def log_prob(self, items, pos_items=None, user_hist=None, query=None) -> Tensor:
        """Exact ``log q(items[b, m] | query[b])`` [B, M] (``-inf`` at the padding / zero-weight items)."""
        q = self.ready(query)
        score = self.cell_scores(q)
        log_z = torch.logsumexp(score + self.log_mass, 1, keepdim=True)
        flat = items.reshape(items.shape[0], -1).long().to(self.vectors.device)
        return self._log_prob_rows(score, log_z, flat).reshape(items.shape)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_clusters={self.num_clusters}, parts={self.parts}, "
                f"within={self.within!r}")


class ClusterUniformSampler(QuantizedSampler):
    """PRIS with uniform sampling inside a cluster (``cluster_uni``); see the module docstring."""
    parts, within = 1, "uniform"


class ClusterPopularitySampler(QuantizedSampler):
    """PRIS with popularity sampling inside a cluster (``cluster_pop``); see the module docstring."""
    parts, within = 1, "popularity"


class MIDXUniformSampler(QuantizedSampler):
    """MIDX, two k-means codebooks over the two halves, uniform in a cell (``midx_uni``)."""
    parts, within = 2, "uniform"


class MIDXPopularitySampler(QuantizedSampler):
    """MIDX, two k-means codebooks over the two halves, popularity in a cell (``midx_pop``)."""
    parts, within = 2, "popularity"


__all__ = ["QuantizedSampler", "ClusterUniformSampler", "ClusterPopularitySampler", "MIDXUniformSampler",
           "MIDXPopularitySampler"]
