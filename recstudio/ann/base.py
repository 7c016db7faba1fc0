"""The ``Index`` contract shared by every ANN backend, its registry and the ``build_index`` factory.

Conventions (the same for every index and device):

* ``metric`` is ``'ip'`` (inner product), ``'l2'`` (Euclidean) or ``'cosine'`` (vectors and queries
  are L2-normalised, then inner product).
* Scores are **higher-is-better** for every metric: ``ip`` gives ``q . x``, ``cosine`` gives the cosine
  similarity and ``l2`` gives the *negative squared* Euclidean distance ``-||q - x||^2``.
* Results are ``(scores [B, k] float, ids [B, k] int64)`` sorted by decreasing score. ``ids`` are the
  labels given to ``build`` (default ``0..N-1``). When fewer than ``k`` candidates remain (``k`` larger
  than the index, exclusion, or an IVF probe that visits too few items), the row is padded with id
  ``-1`` and score ``-inf``.
* ``exclude`` lists, per query, labels never to return: a CSR pair ``(indptr [B+1], indices [nnz])``
  (torch or numpy), a scipy / torch sparse CSR matrix with B rows and label columns, or a list of B
  sequences. Labels that are not in the index are ignored.
"""
import inspect
import warnings
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, RecStudioError
from recstudio.utils.registry import Registry
from recstudio.utils.suggest import did_you_mean

METRICS = ("ip", "l2", "cosine")
INDEXES: Registry = Registry("ANN index")
ArrayLike = Union[torch.Tensor, np.ndarray]

_WARNED = set()  # one-time warnings already given (reset in tests)


def warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_metric(metric: str) -> str:
    """``metric`` lower-cased, or a ConfigError naming the valid ones."""
    m = str(metric).lower()
    aliases = {"inner_product": "ip", "dot": "ip", "euclidean": "l2", "cos": "cosine"}
    m = aliases.get(m, m)
    if m not in METRICS:
        raise ConfigError(f"unknown ANN metric {metric!r}." + did_you_mean(str(metric), METRICS)
                          + f" Use one of {', '.join(METRICS)}.")
    return m


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ConfigError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__} ({e}).")


def _as_int64(x: Any, what: str) -> torch.Tensor:
    t = _as_tensor(x, what)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(f"{what} must hold integers, got dtype {t.dtype}.")
    return t.long()


class Index:
    """Base class: validation, label mapping, exclusion parsing and query chunking.

    Subclasses implement ``_build(vectors, metric)`` and ``_search(queries, k, rows, pos)`` which works
    on *positions* ``0..N-1`` (``rows``/``pos`` is the exclusion in COO form, rows sorted) and returns
    ``(scores [B, k'], positions [B, k'])`` with ``k' <= k``, position ``-1`` / score ``-inf`` for gaps.

    Args:
        query_chunk_size: queries searched at once (bounds temporary memory).
    """

    name = "index"
    requires_faiss = False

    def __init__(self, query_chunk_size: int = 4096):
        if int(query_chunk_size) <= 0:
            raise ConfigError(f"query_chunk_size must be positive, got {query_chunk_size}.")
        self.query_chunk_size = int(query_chunk_size)
        self.metric: Optional[str] = None
        self.dim: Optional[int] = None
        self.ntotal = 0
        self._labels: Optional[torch.Tensor] = None  # None: labels are 0..N-1
        self._sorted_labels: Optional[torch.Tensor] = None
        self._label_order: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric={self.metric!r}, ntotal={self.ntotal}, dim={self.dim})"

    # ------------------------------------------------------------------ build
    def build(self, vectors: ArrayLike, ids: Optional[ArrayLike] = None, metric: str = "ip") -> "Index":
        """Index ``vectors [N, d]`` under labels ``ids [N]`` (unique, >= 0; default ``arange(N)``).

        Returns ``self``. Building again replaces the contents.
        """
        metric = check_metric(metric)
        v = _as_tensor(vectors, "vectors")
        if v.dim() != 2 or v.shape[0] == 0 or v.shape[1] == 0:
            raise ConfigError(f"vectors must be a non-empty 2-D array [N, d], got shape {tuple(v.shape)}.")
        if not v.is_floating_point():
            v = v.float()
        if not bool(torch.isfinite(v).all()):
            raise ConfigError("vectors contain NaN or infinite values; the index cannot rank them.")
        n = v.shape[0]
        labels = None
        if ids is not None:
            lab = _as_int64(ids, "ids").reshape(-1).cpu()
            if lab.numel() != n:
                raise ConfigError(f"ids has {lab.numel()} labels but vectors has {n} rows; give one label per row.")
            if n and int(lab.min()) < 0:
                raise ConfigError("ids must be >= 0 (-1 marks padding in search results).")
            srt, order = torch.sort(lab)
            if n > 1 and bool((srt[1:] == srt[:-1]).any()):
                raise ConfigError("ids must be unique: each label names one vector.")
            if not torch.equal(lab, torch.arange(n)):
                labels, self._sorted_labels, self._label_order = lab, srt, order
        self._labels = labels
        self.metric, self.dim, self.ntotal = metric, int(v.shape[1]), int(n)
        self._build(v, metric)
        return self

    def _build(self, vectors: torch.Tensor, metric: str) -> None:
        raise TypeError(f"{type(self).__name__} must implement _build() of its base class.")

    # ------------------------------------------------------------------ search
    def search(self, queries: ArrayLike, k: int, exclude: Any = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` labels for each query, best first.

        Args:
            queries: ``[B, d]`` tensor or array.
            k: number of results per query (> 0); rows are padded with ``-1`` / ``-inf`` beyond what the
                index can return.
            exclude: per-query labels never to return (see the module docstring for the forms).

        Returns:
            ``(scores [B, k] float, ids [B, k] int64)`` on the queries' device (CPU for numpy input).
        """
        if self.metric is None:
            raise RecStudioError(f"{type(self).__name__} is empty: call build(vectors) before search().")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        k = int(k)
        q = _as_tensor(queries, "queries")
        out_device = q.device
        if q.dim() != 2:
            raise ConfigError(f"queries must be 2-D [B, d], got shape {tuple(q.shape)} "
                              "(use queries.unsqueeze(0) / queries[None] for a single query).")
        if q.shape[1] != self.dim:
            raise ConfigError(f"queries have {q.shape[1]} dimensions but the index was built on "
                              f"{self.dim}-dimensional vectors.")
        if not q.is_floating_point():
            q = q.float()
        B = q.shape[0]
        rows, pos = self._parse_exclude(exclude, B)
        kk = min(k, self.ntotal)
        out_s, out_i = [], []
        bounds = torch.searchsorted(rows, torch.arange(0, B + self.query_chunk_size, self.query_chunk_size,
                                                       device=rows.device)).tolist() if rows.numel() else None
        for c, a in enumerate(range(0, B, self.query_chunk_size)):
            b = min(B, a + self.query_chunk_size)
            if bounds is None:
                r, p = rows, pos
            else:
                r, p = rows[bounds[c]:bounds[c + 1]] - a, pos[bounds[c]:bounds[c + 1]]
            s, i = self._search(q[a:b], kk, r, p)
            out_s.append(s.to(out_device))
            out_i.append(i.to(out_device))
        if B == 0:
            scores = torch.empty(0, k, device=out_device)
            ids = torch.empty(0, k, dtype=torch.long, device=out_device)
            return scores, ids
        scores, pos_out = torch.cat(out_s), torch.cat(out_i)
        if pos_out.shape[1] < k:  # pad to k columns
            pad = k - pos_out.shape[1]
            scores = torch.cat([scores, scores.new_full((B, pad), float("-inf"))], 1)
            pos_out = torch.cat([pos_out, pos_out.new_full((B, pad), -1)], 1)
        missing = pos_out < 0
        scores = scores.masked_fill(missing, float("-inf"))
        if self._labels is not None:
            lab = self._labels.to(out_device)
            ids = torch.where(missing, pos_out.new_full((), -1), lab[pos_out.clamp_min(0)])
        else:
            ids = pos_out
        return scores, ids

    def _search(self, queries: torch.Tensor, k: int, rows: torch.Tensor, pos: torch.Tensor):
        raise TypeError(f"{type(self).__name__} must implement _search() of its base class.")

    # ------------------------------------------------------------------ exclusion
    def _parse_exclude(self, exclude: Any, B: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Exclusion as COO ``(rows, positions)`` int64 tensors, rows sorted; unknown labels dropped."""
        empty = torch.empty(0, dtype=torch.long)
        if exclude is None:
            return empty, empty
        if isinstance(exclude, torch.Tensor) and exclude.layout == torch.sparse_csr:
            indptr, indices = exclude.crow_indices(), exclude.col_indices()
        elif hasattr(exclude, "indptr") and hasattr(exclude, "indices"):  # scipy.sparse CSR
            indptr, indices = exclude.indptr, exclude.indices
        elif isinstance(exclude, tuple) and len(exclude) == 2 and not isinstance(exclude[0], (list, tuple)):
            indptr, indices = exclude
        elif isinstance(exclude, (list, tuple)):
            if len(exclude) != B:
                raise ConfigError(f"exclude has {len(exclude)} rows but there are {B} queries; give one "
                                  "sequence of labels per query (or a CSR pair (indptr, indices)).")
            arrs = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude]
            lens = np.fromiter((len(e) for e in arrs), dtype=np.int64, count=B)
            indptr = np.concatenate([[0], np.cumsum(lens)])
            indices = np.concatenate(arrs) if arrs else np.empty(0, np.int64)
        else:
            raise ConfigError(f"exclude must be None, a CSR pair (indptr, indices), a sparse CSR matrix or a "
                              f"list of label sequences, got {type(exclude).__name__}.")
        indptr = _as_int64(indptr, "exclude indptr").reshape(-1)
        indices = _as_int64(indices, "exclude indices").reshape(-1).to(indptr.device)
        if indptr.numel() != B + 1:
            raise ConfigError(f"exclude indptr has {indptr.numel()} entries but there are {B} queries; "
                              f"a CSR indptr needs B + 1 = {B + 1}.")
        start, end = int(indptr[0]), int(indptr[-1])
        indices = indices[start:end]
        counts = indptr.diff()
        if bool((counts < 0).any()) or indices.numel() != end - start:
            raise ConfigError("exclude indptr must be non-decreasing and end at len(indices).")
        rows = torch.repeat_interleave(torch.arange(B, device=indptr.device), counts)
        pos = self._labels_to_positions(indices)
        keep = pos >= 0
        if not bool(keep.all()):
            rows, pos = rows[keep], pos[keep]
        return rows, pos

    def _labels_to_positions(self, labels: torch.Tensor) -> torch.Tensor:
        """Positions of ``labels`` in the index, ``-1`` for labels it does not hold."""
        if self._labels is None:
            return torch.where((labels >= 0) & (labels < self.ntotal), labels, labels.new_full((), -1))
        srt = self._sorted_labels.to(labels.device)
        idx = torch.searchsorted(srt, labels).clamp_max(srt.numel() - 1)
        found = srt[idx] == labels
        return torch.where(found, self._label_order.to(labels.device)[idx], labels.new_full((), -1))


def build_index(name: str, vectors: ArrayLike, metric: str = "ip", ids: Optional[ArrayLike] = None,
                **params) -> Index:
    """Create the index registered as ``name`` ('exact', 'flat', 'ivf', 'hnsw'), build it, return it.

    ``params`` go to the index's constructor; unknown ones are a ConfigError. A faiss index asked for
    while faiss is not installed falls back to the exact torch index with a one-time warning
    (faiss-only params such as ``nlist`` are then ignored).

    Example:
        >>> index = build_index("exact", torch.randn(100, 8), metric="cosine")
        >>> scores, ids = index.search(torch.randn(4, 8), k=10, exclude=[[1, 2], [], [3], []])
    """
    cls = INDEXES.get(name)
    _check_params(cls, params, name)
    if getattr(cls, "requires_faiss", False) and not cls.backend_available():
        exact = INDEXES.get("exact")
        accepted = set(inspect.signature(exact.__init__).parameters) | {"query_chunk_size"}
        dropped = sorted(set(params) - accepted)
        warn_once(f"fallback:{name}", f"faiss is not installed, so ANN index {name!r} falls back to the exact "
                  f"torch index (same results, slower on large catalogues"
                  + (f"; ignoring {', '.join(dropped)}" if dropped else "")
                  + "). Install faiss with `pip install faiss-cpu` (or `pip install recstudio[faiss-cpu]`; "
                  "faiss-gpu-cu12 for GPUs).")
        params = {key: v for key, v in params.items() if key in accepted}
        cls = exact
    return cls(**params).build(vectors, ids=ids, metric=metric)


def _check_params(cls, params: dict, name: str) -> None:
    accepted = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted += [p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")]
    for key in params:
        if key not in accepted:
            raise ConfigError(f"unknown parameter {key!r} for ANN index {name!r}." + did_you_mean(key, accepted)
                              + f" Accepted: {', '.join(sorted(set(accepted)))}.")


def pad_columns(t: torch.Tensor, k: int, value) -> torch.Tensor:
    """``t [B, k']`` padded on the right with ``value`` to ``k`` columns."""
    if t.shape[1] >= k:
        return t
    return torch.cat([t, t.new_full((t.shape[0], k - t.shape[1]), value)], 1)


__all__: Sequence[str] = ["Index", "INDEXES", "METRICS", "build_index", "check_metric"]
