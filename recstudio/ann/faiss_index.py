"""faiss indexes (Flat, IVF-Flat, HNSW-Flat) behind the ``Index`` contract, on CPU or GPU.

faiss is optional: this module imports it only when an index is built (``_import_faiss``), so
``import recstudio.ann`` works without it and ``build_index`` can fall back to the exact index.

Labels: faiss stores vectors at positions ``0..N-1``; the base class maps positions to the labels given
to ``build`` (instead of wrapping in ``IndexIDMap``), which works the same for every index type and on
GPU. Exclusion over-fetches ``k + (excluded count)`` results, drops the excluded labels and keeps the best
``k`` (numpy, vectorised); queries with more excluded labels than the first fetch covered are searched
again with a larger ``k``.
"""
import math
from typing import Optional

import numpy as np
import torch

from recstudio.ann.base import INDEXES, Index, warn_once
from recstudio.utils.errors import ConfigError

GPU_MAX_K = 2048  # faiss GPU indexes return at most 2048 neighbours per query


def _import_faiss():
    """The faiss module (patched to raise ImportError in tests)."""
    import faiss
    return faiss


def faiss_available() -> bool:
    try:
        _import_faiss()
        return True
    except ImportError:
        return False


def _require_faiss(name: str):
    try:
        return _import_faiss()
    except ImportError as e:
        raise ConfigError(f"ANN index {name!r} needs faiss, which is not installed ({e}). Install it with "
                          "`pip install faiss-cpu` (or faiss-gpu-cu12 for GPUs), or use the 'exact' index; "
                          "build_index() falls back to 'exact' by itself.") from e


def faiss_gpu_problem(faiss) -> Optional[str]:
    """Why a faiss GPU index cannot be used here, or ``None`` when it can."""
    if not hasattr(faiss, "StandardGpuResources"):
        return "the installed faiss has no GPU support (faiss-cpu); install faiss-gpu-cu12 (pip) or faiss-gpu (conda)"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU (torch.cuda.is_available() is False)"
    if getattr(faiss, "get_num_gpus", lambda: 0)() < 1:
        return "faiss reports no GPU (faiss.get_num_gpus() == 0)"
    return None


class FaissIndex(Index):
    """Common code of the faiss indexes.

    Args:
        device: ``'auto'`` (a faiss GPU index when faiss has GPU support and a GPU is visible, else CPU),
            ``'cpu'``, or ``'cuda[:n]'`` (ConfigError when no GPU index can be made).
        query_chunk_size: queries searched at once.

    faiss uses its own OpenMP thread count (``faiss.omp_get_max_threads()``); set it with
    ``faiss.omp_set_num_threads`` if needed.
    """

    requires_faiss = True
    gpu_capable = True

    def __init__(self, device: str = "auto", query_chunk_size: int = 4096):
        super().__init__(query_chunk_size=query_chunk_size)
        self.device_request = str(device)
        self.faiss = _require_faiss(self.name)
        self.index = None
        self.on_gpu = False
        self._gpu_resources = None

    @classmethod
    def backend_available(cls) -> bool:
        return faiss_available()

    # -------------------------------------------------------------- building
    def _make(self, d: int, n: int, faiss_metric):
        raise TypeError(f"{type(self).__name__} must implement _make() of its base class.")

    def _configure(self, index) -> None:
        """Set search-time parameters (after a GPU copy too)."""

    def _gpu_device(self) -> Optional[int]:
        """The GPU id to use, or ``None`` for CPU."""
        req = self.device_request
        if req == "cpu":
            return None
        if req != "auto":
            try:
                dev = torch.device(req)
            except (RuntimeError, TypeError) as e:
                raise ConfigError(f"invalid device {req!r} ({e}); use 'auto', 'cpu' or 'cuda[:n]'.")
            if dev.type == "cpu":
                return None
        problem = faiss_gpu_problem(self.faiss)
        if req == "auto":
            if problem is None and not self.gpu_capable:
                warn_once(f"nogpu:{self.name}", f"faiss has no GPU version of the {self.name!r} index; "
                          "it runs on CPU.")
            return None if (problem or not self.gpu_capable) else torch.cuda.current_device()
        if problem is not None:
            raise ConfigError(f"device={req!r} was requested for the faiss {self.name!r} index but {problem}. "
                              "Use device='cpu' (or 'auto', which picks the GPU only when it works).")
        if not self.gpu_capable:
            warn_once(f"nogpu:{self.name}", f"faiss has no GPU version of the {self.name!r} index; "
                      "falling back to CPU.")
            return None
        return dev.index if dev.index is not None else torch.cuda.current_device()

    def _build(self, vectors: torch.Tensor, metric: str) -> None:
        faiss = self.faiss
        x = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
        if metric == "cosine":
            faiss.normalize_L2(x)
        fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        gpu = self._gpu_device()
        index = self._make(x.shape[1], x.shape[0], fm)
        if gpu is not None:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, gpu, index)
        if not index.is_trained:
            index.train(x)
        index.add(x)
        self._configure(index)
        self.index, self.on_gpu = index, gpu is not None

    # -------------------------------------------------------------- search
    def _raw(self, q: np.ndarray, k: int):
        d, i = self.index.search(q, k)
        scores = -d if self.metric == "l2" else d
        scores[i < 0] = -np.inf
        return scores.astype(np.float32, copy=False), i.astype(np.int64, copy=False)

    def _search(self, queries, k, rows, pos):
        q = np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
        if self.metric == "cosine":
            self.faiss.normalize_L2(q)
        B, n = q.shape[0], self.ntotal
        max_k = min(n, GPU_MAX_K) if self.on_gpu else n
        if rows.numel() == 0:
            s, i = self._raw(q, min(k, max_k))
            return torch.from_numpy(s), torch.from_numpy(i)
        rows, pos = rows.cpu().numpy(), pos.cpu().numpy()
        counts = np.bincount(rows, minlength=B)
        keys = np.sort(rows * n + pos)
        # first fetch covers 90% of the queries; the others are searched again below
        k1 = min(max_k, k + int(math.ceil(np.quantile(counts, 0.9))))
        s, i = self._filtered(q, np.arange(B), k, k1, keys, n)
        valid = (i >= 0).sum(1)
        redo = np.flatnonzero((valid < k) & (k + counts > k1) & (k1 < max_k))
        if redo.size:
            k2 = min(max_k, k + int(counts[redo].max()))
            s[redo], i[redo] = self._filtered(q[redo], redo, k, k2, keys, n)
        if k + int(counts.max()) > max_k and self.on_gpu:
            warn_once("gpu-k", f"some queries exclude more than {GPU_MAX_K - k} labels; a faiss GPU index returns "
                      f"at most {GPU_MAX_K} neighbours, so those rows may be padded with -1.")
        return torch.from_numpy(s), torch.from_numpy(i)

    def _filtered(self, q, row_ids, k, kq, keys, n):
        """Search ``kq`` neighbours, drop excluded positions, keep the best ``k`` (padded with -1/-inf)."""
        s, i = self._raw(q, kq)
        key = np.where(i >= 0, row_ids[:, None] * n + i, -1)
        at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
        ok = (i >= 0) & (keys[at] != key)
        order = np.argsort(~ok, axis=1, kind="stable")[:, :k]  # valid ones first, in rank order
        ok = np.take_along_axis(ok, order, 1)
        s = np.where(ok, np.take_along_axis(s, order, 1), -np.inf).astype(np.float32)
        i = np.where(ok, np.take_along_axis(i, order, 1), -1)
        if s.shape[1] < k:
            s = np.pad(s, ((0, 0), (0, k - s.shape[1])), constant_values=-np.inf)
            i = np.pad(i, ((0, 0), (0, k - i.shape[1])), constant_values=-1)
        return s, i


@INDEXES.register("flat", summary="faiss brute force (IndexFlatIP / IndexFlatL2), CPU or GPU")
class FaissFlatIndex(FaissIndex):
    """Exact search with faiss ``IndexFlatIP`` / ``IndexFlatL2`` (usually faster than torch on CPU)."""

    name = "flat"

    def _make(self, d, n, fm):
        return self.faiss.IndexFlat(d, fm)


@INDEXES.register("ivf", summary="faiss IndexIVFFlat: k-means cells, search the nprobe nearest cells")
class FaissIVFIndex(FaissIndex):
    """Inverted file: k-means into ``nlist`` cells (trained on the vectors), search ``nprobe`` cells.

    Args:
        nlist: number of cells; default ``clip(4 * sqrt(N), 1, N // 39)`` (faiss wants >= 39 training
            points per cell). Must be <= N.
        nprobe: cells visited per query (recall/speed trade-off); default ``max(1, nlist // 4)``.
            ``nprobe == nlist`` is exact.
    """

    name = "ivf"

    def __init__(self, nlist: Optional[int] = None, nprobe: Optional[int] = None, device: str = "auto",
                 query_chunk_size: int = 4096):
        super().__init__(device=device, query_chunk_size=query_chunk_size)
        for key, v in (("nlist", nlist), ("nprobe", nprobe)):
            if v is not None and int(v) <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}.")
        self.nlist, self.nprobe = nlist, nprobe

    def _make(self, d, n, fm):
        if self.nlist is None:
            self.nlist = int(max(1, min(round(4 * math.sqrt(n)), n // 39)))
        if self.nlist > n:
            raise ConfigError(f"nlist={self.nlist} is larger than the {n} vectors to index; k-means needs at "
                              "least one vector per cell. Use a smaller nlist (about 4 * sqrt(N)).")
        if self.nprobe is None:
            self.nprobe = max(1, self.nlist // 4)
        self.nprobe = min(int(self.nprobe), self.nlist)
        quantizer = self.faiss.IndexFlat(d, fm)
        index = self.faiss.IndexIVFFlat(quantizer, d, int(self.nlist), fm)
        index.cp.seed = 1234  # k-means is repeatable
        index.nprobe = self.nprobe
        self._quantizer = quantizer  # keep the quantizer alive as long as the index
        return index

    def _configure(self, index):
        index.nprobe = self.nprobe

    def set_nprobe(self, nprobe: int) -> None:
        """Change the number of cells visited per query."""
        self.nprobe = max(1, min(int(nprobe), self.nlist))
        if self.index is not None:
            self._configure(self.index)


@INDEXES.register("hnsw", summary="faiss IndexHNSWFlat graph index (CPU only)")
class FaissHNSWIndex(FaissIndex):
    """Hierarchical navigable small-world graph (CPU; a GPU request falls back to CPU with a warning).

    Args:
        M: graph neighbours per node (memory and recall grow with it).
        ef_construction: candidate list size while building.
        ef_search: candidate list size while searching (faiss uses ``max(ef_search, k)``).
    """

    name = "hnsw"
    gpu_capable = False

    def __init__(self, M: int = 32, ef_search: int = 128, ef_construction: int = 200, device: str = "auto",
                 query_chunk_size: int = 4096):
        super().__init__(device=device, query_chunk_size=query_chunk_size)
        for key, v in (("M", M), ("ef_search", ef_search), ("ef_construction", ef_construction)):
            if int(v) <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}.")
        self.M, self.ef_search, self.ef_construction = int(M), int(ef_search), int(ef_construction)

    def _make(self, d, n, fm):
        index = self.faiss.IndexHNSWFlat(d, self.M, fm)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _configure(self, index):
        index.hnsw.efSearch = self.ef_search

    def set_ef_search(self, ef_search: int) -> None:
        self.ef_search = int(ef_search)
        if self.index is not None:
            self._configure(self.index)
