"""The base of the model-based samplers: a snapshot of the item vectors and the batch's query vectors.

See :mod:`recstudio.model.sampler.model_based` for the samplers built on it (cluster / MIDX in
``quantized.py``, SIR / DNS in ``pool.py``, the retriever in ``retriever.py``).
"""
from typing import Callable, Optional, Tuple

import torch

from recstudio.model.sampler.base import Sampler
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor
METRICS = ("auto", "ip", "l2")


def pairwise_score(q: Tensor, v: Tensor, metric: str) -> Tensor:
    """``[B, N]`` scores of queries ``q [B, d]`` against vectors ``v [N, d]``."""
    dot = q @ v.t()
    if metric == "l2":
        return 2 * dot - (q * q).sum(-1, keepdim=True) - (v * v).sum(-1)
    return dot


def row_score(q: Tensor, v: Tensor, metric: str) -> Tensor:
    """``[B, M]`` scores of ``q [B, d]`` against per-row vectors ``v [B, M, d]``."""
    dot = (q.unsqueeze(1) * v).sum(-1)
    if metric == "l2":
        return 2 * dot - (q * q).sum(-1, keepdim=True) - (v * v).sum(-1)
    return dot


class ModelBasedSampler(Sampler):
    """Base of the samplers that need the query vectors and a snapshot of the item vectors.

    Args:
        num_items: catalogue size including the padding id 0.
        metric: ``'ip'``, ``'l2'`` or ``'auto'`` (the model's score function decides at refresh).
        item_counts: training counts per item id (the popularity of the ``*_pop`` samplers).
        generator, seed: see :class:`Sampler`.
    """

    needs_query = True
    needs_item_vectors = True

    def __init__(self, num_items: int, metric: str = "auto", item_counts: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)
        if metric not in METRICS:
            raise ConfigError(f"{type(self).__name__}: metric must be one of {METRICS}, got {metric!r}.")
        self.metric = metric
        self.query_map: Optional[Callable[[Tensor], Tensor]] = None
        self.refreshes = 0
        self.register_buffer("vectors", torch.empty(0), persistent=False)
        self.register_buffer("counts", torch.empty(0, dtype=torch.float64), persistent=False)
        if item_counts is not None:
            self.set_counts(item_counts)

    # ---------------------------------------------------------------- refresh
    def bind(self, score_func) -> None:
        """Follow ``score_func``: its query map (e.g. normalisation) and, for ``metric='auto'``, its metric."""
        self.query_map = score_func.query_vector
        if self.metric == "auto":
            self.metric = "l2" if getattr(score_func, "metric", "ip") == "l2" else "ip"

    def set_counts(self, item_counts) -> None:
        counts = torch.as_tensor(item_counts).detach().to(torch.float64).flatten().clone()
        if counts.numel() != self.num_items:
            raise DataError(f"{type(self).__name__}: item_counts has {counts.numel()} entries; expected num_items = "
                            f"{self.num_items}.")
        if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
            raise DataError(f"{type(self).__name__}: item_counts must be finite and >= 0.")
        counts[0] = 0.0
        self.counts = counts.to(self.counts.device)

    def update(self, item_vectors: Optional[Tensor] = None, item_counts: Optional[Tensor] = None) -> None:
        """Store new counts and / or a new snapshot of the item vectors ``[num_items, d]`` (row 0 = padding)
        and rebuild the proposal from them."""
        if item_counts is not None:
            self.set_counts(item_counts)
        if item_vectors is None:
            return
        v = item_vectors.detach()
        if v.dim() != 2 or v.shape[0] != self.num_items:
            raise DataError(f"{type(self).__name__}: item_vectors must be [num_items={self.num_items}, d], got "
                            f"{tuple(v.shape)}.")
        self.vectors = v.float().clone()
        self.rebuild()
        self.refreshes += 1

    def rebuild(self) -> None:
        """Recompute the proposal's tables from ``self.vectors`` (subclasses)."""

    @property
    def score_metric(self) -> str:
        return "ip" if self.metric == "auto" else self.metric

    # ---------------------------------------------------------------- helpers
    def ready(self, query: Optional[Tensor]) -> Tensor:
        if query is None:
            raise ConfigError(f"{type(self).__name__} is model-based: it needs the batch's query vectors. Use it "
                              "with an item-tower model (it passes them), or call sampler(query, k, pos).")
        if self.vectors.numel() == 0:
            raise ConfigError(f"{type(self).__name__} has no item vectors yet: call update(item_vectors=...) "
                              "(item-tower models do at the start of training).")
        q = query.detach()
        if self.query_map is not None:
            q = self.query_map(q)
        return q.to(self.vectors.device, torch.float32)

    def rows(self, query: Tensor, pos_items: Tensor) -> Tuple[Tensor, int]:
        """Per-row queries and the number of positives per row (``pos_items`` [B] or [B, P])."""
        b = pos_items.shape[0]
        if query.dim() != 2 or query.shape[0] != b:
            raise ConfigError(f"{type(self).__name__}: query must be [B, d] with B = {b} (one per row of "
                              f"pos_items), got {tuple(query.shape)}.")
        return query, pos_items.numel() // max(b, 1)

    def finish(self, query, pos_items, neg, log_pos, log_neg, k) -> Tuple[Tensor, Tensor, Tensor]:
        dtype, dev = self.prob_dtype(query), pos_items.device
        shape = (*pos_items.shape, k)
        return (log_pos.reshape(pos_items.shape).to(dev, dtype), neg.reshape(shape).to(dev),
                log_neg.reshape(shape).to(dev, dtype))

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, metric={self.metric!r}, refreshes={self.refreshes}"


__all__ = ["ModelBasedSampler", "pairwise_score", "row_score", "METRICS"]
