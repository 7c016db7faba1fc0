"""Full-ranking and sampled-ranking evaluators: stream user batches, accumulate per-user metric sums.

Both read evaluation batches as :class:`~recstudio.data.types.evaluation.EvalDataset` yields them:
``history_indptr`` / ``history_indices`` (items to mask) and ``target_indptr`` / ``target_indices``
(relevant items), item ids ``1..num_items-1`` (0 is padding, never ranked). Results are means over
the users with at least one target, keyed ``'<metric>@<k>'``. See ``docs/metrics.md``.
"""
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from recstudio.data.types.base import seed_for
from recstudio.eval.ranking import (METRICS, NEG_INF, csr_rows, items_seen, mask_scores,
                                    pad_topk, ranking_hits, ranking_metrics, topk_exact, topk_masked)
from recstudio.utils.errors import ConfigError

Batch = Mapping[str, torch.Tensor]


def parse_metrics(metrics: Sequence[str], cutoffs: Sequence[int]) -> List[Tuple[str, int]]:
    """``(canonical name, cutoff)`` pairs: ``'recall'`` takes every cutoff, ``'recall@10'`` only 10.

    Example:
        >>> parse_metrics(["NDCG", "hit@5"], [10, 20])
        [('ndcg', 10), ('ndcg', 20), ('hit', 5)]
    """
    cutoffs = [int(c) for c in ([cutoffs] if isinstance(cutoffs, int) else cutoffs)]
    if any(c < 1 for c in cutoffs):
        raise ConfigError(f"cutoffs must be integers >= 1, got {cutoffs}.")
    out: List[Tuple[str, int]] = []
    for m in ([metrics] if isinstance(metrics, str) else metrics):
        name, _, at = str(m).partition("@")
        name = METRICS.canonical(name.strip())
        if METRICS.info[name]["kind"] == "pointwise":
            raise ConfigError(f"{name!r} is a pointwise metric; use PointwiseEvaluator for it.")
        try:
            ks = [int(at)] if at else cutoffs
        except ValueError:
            raise ConfigError(f"bad cutoff in metric {m!r}; write e.g. 'recall@10'.") from None
        if not ks or min(ks) < 1:
            raise ConfigError(f"metric {m!r} needs cutoffs >= 1 (got {ks}).")
        out += [(name, k) for k in ks if (name, k) not in out]
    if not out:
        raise ConfigError("no metric to compute: give metrics=['recall', 'ndcg', ...] and cutoffs=[10, ...].")
    return out


class _Accumulator:
    """Per-user metric sums and the user count; coverage unions."""

    def __init__(self, pairs: List[Tuple[str, int]]):
        self.pairs = pairs
        self.ranking: Dict[str, List[int]] = {}
        self.coverage: List[int] = []
        for name, k in pairs:
            if name == "item_coverage":
                self.coverage.append(k)
            else:
                self.ranking.setdefault(name, []).append(k)
        self.max_k = max(k for _, k in pairs)
        self.reset()

    def reset(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.users = 0
        self.seen: Dict[int, torch.Tensor] = {}
        self.num_items: Optional[int] = None

    def update(self, hits: torch.Tensor, n_rel: torch.Tensor, topk_ids: Optional[torch.Tensor] = None,
               num_items: Optional[int] = None) -> None:
        keep = n_rel > 0
        if not bool(keep.all()):
            hits, n_rel = hits[keep], n_rel[keep]
            topk_ids = topk_ids[keep] if topk_ids is not None else None
        for name, vals in ranking_metrics(hits, n_rel, self.ranking).items():
            s = vals.double().sum(0)
            self.sums[name] = self.sums[name] + s if name in self.sums else s
        self.users += int(keep.sum())
        if self.coverage:
            if topk_ids is None or num_items is None:
                raise ConfigError("item_coverage needs the top-k ids and num_items.")
            self.num_items = num_items
            for k in self.coverage:
                seen = items_seen(topk_ids, num_items, k)
                self.seen[k] = self.seen[k] | seen if k in self.seen else seen

    def compute(self) -> Dict[str, float]:
        """Means over users (0.0 when no user was evaluated) and coverage shares."""
        vals = {n: (s / max(self.users, 1)).tolist() for n, s in self.sums.items()}
        out = {}
        for name, k in self.pairs:
            if name == "item_coverage":
                seen = self.seen.get(k)
                out[f"{name}@{k}"] = 0.0 if seen is None else float(seen.sum()) / max(self.num_items - 1, 1)
            else:
                out[f"{name}@{k}"] = vals[name][self.ranking[name].index(k)] if name in vals else 0.0
        return out


def _targets(batch: Batch):
    return batch["target_indptr"], batch["target_indices"]


def _history(batch: Batch):
    return batch["history_indptr"], batch["history_indices"]


def chunked_topk(score_chunk_fn: Callable, batch: Batch, num_items: int, k: int, chunk_size: int,
                 history: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 inplace: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` over all items, scoring ``chunk_size`` items at a time with a running top-k.

    ``score_chunk_fn(batch, lo, hi) -> [B, hi - lo]`` scores items ``lo..hi-1``; the chunk's history
    entries and item 0 are masked, its exact top-k is merged with the running one. Memory is
    O(B * (chunk_size + k)); the result equals :func:`topk_masked` on the full scores exactly
    (same tie-break). Returns ``(values [B, k], ids [B, k])`` with ``-inf`` / ``-1`` padding.
    """
    ptr, idx = history if history is not None else _history(batch)
    rows = csr_rows(ptr, len(idx))
    values = ids = None
    for lo in range(0, num_items, chunk_size):
        hi = min(lo + chunk_size, num_items)
        s = score_chunk_fn(batch, lo, hi)
        if s.dim() != 2 or s.shape[1] != hi - lo:
            raise ConfigError(f"score_chunk_fn(batch, {lo}, {hi}) must return [B, {hi - lo}], got {tuple(s.shape)}.")
        if not inplace or not s.is_contiguous() or s._base is not None or s.requires_grad:
            s = s.clone()
        if rows.device != s.device:
            rows, ptr, idx = rows.to(s.device), ptr.to(s.device), idx.to(s.device)
        mask_scores(s, ptr, idx, offset=lo, rows=rows)
        v, i = topk_exact(s, k)
        i = i + lo
        if values is None:
            values, ids = v, i
        else:  # every running id < every chunk id, so column order = id order and topk_exact's tie-break holds
            values, col = topk_exact(torch.cat([values, v], 1), k)
            ids = torch.cat([ids, i], 1).gather(1, col)
    if values is None:
        raise ConfigError("num_items must be >= 1.")
    return pad_topk(values, ids, k)


class FullRankingEvaluator:
    """Full ranking over all items, history masked, metrics at several cutoffs from one top-max(k) list.

    Args:
        metrics: names (``recall, precision, hit, mrr, ndcg, map, item_coverage``), each at every
            cutoff, or ``'name@k'`` for one cutoff.
        cutoffs: list lengths k (any size; rows with fewer rankable items are padded with misses).
        item_chunk_size: ``None``: ``score_fn(batch) -> [B, num_items]``. An int: items are scored in
            chunks with ``score_chunk_fn(batch, lo, hi)`` and a running top-k is kept, so no
            ``[B, num_items]`` tensor is ever built.
        inplace_scores: let the evaluator write the ``-inf`` mask into the tensors the score
            function returns (saves a copy). Views, non-contiguous tensors and tensors that
            require grad are always copied first.

    Example:
        >>> ev = FullRankingEvaluator(["recall", "ndcg"], [10, 20])
        >>> ev.evaluate(EvalDataset(split, "test").loader(1024), lambda b: model.score_all(b))  # doctest: +SKIP
        {'recall@10': 0.21, 'recall@20': 0.33, 'ndcg@10': 0.25, 'ndcg@20': 0.27}
    """

    def __init__(self, metrics: Sequence[str] = ("recall", "ndcg"), cutoffs: Sequence[int] = (10,),
                 item_chunk_size: Optional[int] = None, inplace_scores: bool = True):
        self.pairs = parse_metrics(metrics, cutoffs)
        self.acc = _Accumulator(self.pairs)
        self.max_k = self.acc.max_k
        if item_chunk_size is not None and int(item_chunk_size) < 1:
            raise ConfigError(f"item_chunk_size must be >= 1 or None, got {item_chunk_size}.")
        self.item_chunk_size = None if item_chunk_size is None else int(item_chunk_size)
        self.inplace_scores = inplace_scores

    @property
    def num_users(self) -> int:
        """Users accumulated since the last reset."""
        return self.acc.users

    def reset(self) -> None:
        self.acc.reset()

    def update_topk(self, batch: Batch, topk_ids: torch.Tensor, num_items: Optional[int] = None) -> None:
        """Accumulate precomputed top-k ids ``[B, K]`` (-1 = padding), e.g. from an ANN index."""
        if topk_ids.shape[1] < self.max_k:
            topk_ids = torch.cat([topk_ids, topk_ids.new_full((len(topk_ids), self.max_k - topk_ids.shape[1]), -1)], 1)
        hits, n_rel = ranking_hits(topk_ids, *_targets(batch))
        self.acc.update(hits, n_rel, topk_ids, num_items)

    def update(self, batch: Batch, scores: torch.Tensor) -> None:
        """Accumulate one batch from its full score matrix ``[B, num_items]`` (column = item id)."""
        if scores.dim() != 2:
            raise ConfigError(f"scores must be [B, num_items], got shape {tuple(scores.shape)}.")
        inplace = self.inplace_scores and scores._base is None and not scores.requires_grad
        _, ids = topk_masked(scores, *_history(batch), self.max_k, inplace=inplace)
        self.update_topk(batch, ids, scores.shape[1])

    def update_chunked(self, batch: Batch, score_chunk_fn: Callable, num_items: int) -> None:
        """Accumulate one batch scored item chunk by item chunk (see :func:`chunked_topk`)."""
        _, ids = chunked_topk(score_chunk_fn, batch, num_items, self.max_k, self.item_chunk_size or num_items,
                              inplace=self.inplace_scores)
        self.update_topk(batch, ids, num_items)

    def compute(self) -> Dict[str, float]:
        """``{'metric@k': mean over evaluated users}`` (coverage: share of items 1..num_items-1)."""
        return self.acc.compute()

    def evaluate(self, batches: Iterable[Batch], score_fn: Optional[Callable] = None, *,
                 score_chunk_fn: Optional[Callable] = None, num_items: Optional[int] = None) -> Dict[str, float]:
        """Reset, accumulate every batch, return :meth:`compute`. Runs under ``torch.no_grad()``.

        Give ``score_fn(batch) -> [B, num_items]``, or ``score_chunk_fn(batch, lo, hi) -> [B, hi - lo]``
        with ``num_items`` (the chunked path; ``item_chunk_size`` sets the chunk, default all items).
        """
        if (score_fn is None) == (score_chunk_fn is None):
            raise ConfigError("give exactly one of score_fn(batch) or score_chunk_fn(batch, lo, hi).")
        if score_chunk_fn is None and self.item_chunk_size is not None:
            raise ConfigError("item_chunk_size is set: pass score_chunk_fn(batch, lo, hi) (and num_items).")
        if score_chunk_fn is not None and num_items is None:
            raise ConfigError("the chunked path needs num_items (item ids 0..num_items-1, 0 = padding).")
        self.reset()
        with torch.no_grad():
            for batch in batches:
                if score_fn is not None:
                    self.update(batch, score_fn(batch))
                else:
                    self.update_chunked(batch, score_chunk_fn, num_items)
        return self.compute()


class SampledRankingEvaluator:
    """Sampled ranking: each user's targets ranked against sampled negatives only.

    One candidate list per user = all its (distinct) targets + its negatives, sorted by item id;
    the metrics are computed on that list exactly as in full ranking (``n_rel`` = number of
    targets). Negatives are distinct, never in the user's history or targets, and drawn
    uniformly over items ``1..num_items-1`` or proportionally to ``item_counts`` (without
    replacement); a user with fewer available items gets them all. Draws are seeded per batch
    from ``(seed, batch number)``, so each ``evaluate`` sees the same negatives.

    Args:
        metrics, cutoffs: as :class:`FullRankingEvaluator` (no ``item_coverage``).
        num_negatives: N.
        sampling: ``'uniform'`` or ``'popularity'`` (needs ``item_counts``, indexed by item id).
        negatives_per: ``'user'``: N negatives per user (the list has n_rel + N items);
            ``'target'``: N per target, N * n_rel in the user's list (RecBole's ``uni100``).
        seed: seed of the draws.
    """

    def __init__(self, metrics: Sequence[str] = ("recall", "ndcg"), cutoffs: Sequence[int] = (10,),
                 num_negatives: int = 100, sampling: str = "uniform", item_counts=None,
                 negatives_per: str = "user", seed: int = 0, max_rounds: int = 8):
        self.pairs = parse_metrics(metrics, cutoffs)
        if any(n == "item_coverage" for n, _ in self.pairs):
            raise ConfigError("item_coverage is not defined for sampled ranking; use FullRankingEvaluator.")
        self.acc = _Accumulator(self.pairs)
        self.max_k = self.acc.max_k
        if sampling not in ("uniform", "popularity"):
            raise ConfigError(f"sampling must be 'uniform' or 'popularity', got {sampling!r}.")
        if sampling == "popularity" and item_counts is None:
            raise ConfigError("sampling='popularity' needs item_counts (interactions per item id).")
        if negatives_per not in ("user", "target"):
            raise ConfigError(f"negatives_per must be 'user' or 'target', got {negatives_per!r}.")
        if int(num_negatives) < 0:
            raise ConfigError(f"num_negatives must be >= 0, got {num_negatives}.")
        self.num_negatives, self.sampling, self.negatives_per = int(num_negatives), sampling, negatives_per
        self.item_counts = (None if item_counts is None
                            else torch.as_tensor(np.asarray(item_counts), dtype=torch.float64))
        self.seed, self.max_rounds = int(seed), int(max_rounds)
        self.batches_seen = 0

    def reset(self) -> None:
        self.acc.reset()
        self.batches_seen = 0

    def _weights(self, num_items: int) -> torch.Tensor:
        if self.item_counts is None:
            w = torch.ones(num_items, dtype=torch.float64)
        else:
            if len(self.item_counts) != num_items:
                raise ConfigError(f"item_counts has {len(self.item_counts)} entries, expected num_items={num_items}.")
            w = self.item_counts.clamp(min=0).clone()
        w[0] = 0.0
        return w

    def candidates(self, batch: Batch, num_items: int, batch_number: int = 0):
        """``(item_ids [B, L], is_target [B, L], valid [B, L])`` on the CPU, columns sorted by id
        (invalid padding slots, id 0, last)."""
        t_ptr, t_idx = (t.cpu() for t in _targets(batch))
        h_ptr, h_idx = (t.cpu() for t in _history(batch))
        gen = torch.Generator().manual_seed(seed_for(self.seed, batch_number, 0xE7A1))
        return sample_negatives(h_ptr, h_idx, t_ptr, t_idx, self._weights(num_items), self.num_negatives,
                                self.negatives_per == "target", gen, self.max_rounds)

    def update(self, batch: Batch, score_items_fn: Callable, num_items: int) -> None:
        """Sample, score with ``score_items_fn(batch, item_ids [B, L]) -> [B, L]``, accumulate."""
        ids, is_target, valid = self.candidates(batch, num_items, self.batches_seen)
        self.batches_seen += 1
        dev = batch["target_indices"].device
        scores = score_items_fn(batch, ids.to(dev))
        if tuple(scores.shape) != tuple(ids.shape):
            raise ConfigError(f"score_items_fn must return [B, L] = {tuple(ids.shape)}, got {tuple(scores.shape)}.")
        scores = scores.masked_fill(~valid.to(scores.device), NEG_INF)
        values, cols = topk_exact(scores, self.max_k)
        hits = is_target.to(scores.device).gather(1, cols) & (values > NEG_INF)
        if hits.shape[1] < self.max_k:
            hits = torch.cat([hits, hits.new_zeros(len(hits), self.max_k - hits.shape[1])], 1)
        self.acc.update(hits, is_target.sum(1).to(scores.device))

    def compute(self) -> Dict[str, float]:
        return self.acc.compute()

    def evaluate(self, batches: Iterable[Batch], score_items_fn: Callable, num_items: int) -> Dict[str, float]:
        """Reset, accumulate every batch (under ``torch.no_grad()``), return the means."""
        self.reset()
        with torch.no_grad():
            for batch in batches:
                self.update(batch, score_items_fn, num_items)
        return self.compute()


def sample_negatives(history_indptr: torch.Tensor, history_indices: torch.Tensor, target_indptr: torch.Tensor,
                     target_indices: torch.Tensor, weights: torch.Tensor, num_negatives: int, per_target: bool,
                     generator: torch.Generator, max_rounds: int = 8):
    """Candidate lists for sampled ranking (CPU tensors in, CPU tensors out).

    Each row gets its distinct targets and ``m = min(N or N * n_rel, available)`` distinct negatives:
    items with ``weights > 0`` that are neither in its history nor in its targets, drawn with
    probability proportional to ``weights`` (without replacement). Draws are made i.i.d. and the
    excluded or repeated ones redrawn, up to ``max_rounds`` times; rows still incomplete (users
    with few available items) are drawn exactly with the Gumbel-top-k trick over all items.

    Returns:
        ``(item_ids [B, L], is_target [B, L], valid [B, L])``, columns sorted by item id, invalid
        (padding) slots last with id 0.
    """
    num_items, b = len(weights), len(target_indptr) - 1
    stride = num_items
    for name, idx in (("target", target_indices), ("history", history_indices)):
        if len(idx) and (int(idx.max()) >= num_items or int(idx.min()) < 0):
            raise ConfigError(f"{name} item ids must be in 0..num_items-1 = {num_items - 1}.")
    t_keys = torch.unique(csr_rows(target_indptr, len(target_indices)) * stride + target_indices)
    t_rows, t_items = t_keys // stride, t_keys % stride
    n_rel = torch.bincount(t_rows, minlength=b)
    h_keys = csr_rows(history_indptr, len(history_indices)) * stride + history_indices
    ex_keys = torch.unique(torch.cat([t_keys, h_keys]))
    ex_rows, ex_items = ex_keys // stride, ex_keys % stride
    positive = weights > 0
    excluded = torch.bincount(ex_rows, weights=positive[ex_items].double(), minlength=b).long()
    avail = int(positive.sum()) - excluded
    want = n_rel * num_negatives if per_target else torch.full((b,), num_negatives, dtype=torch.long)
    m = torch.minimum(want, avail).clamp(min=0)
    width = int(m.max()) if b else 0
    cdf = torch.cumsum(weights.double(), 0)
    col = torch.arange(width)
    slot = col[None, :] < m[:, None]

    def draw(n: int) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=num_items - 1)

    def bad_slots(ids: torch.Tensor) -> torch.Tensor:
        query = torch.arange(b)[:, None] * stride + ids
        pos = torch.searchsorted(ex_keys, query).clamp_(max=max(len(ex_keys) - 1, 0))
        member = ex_keys[pos] == query if len(ex_keys) else torch.zeros_like(slot)
        key = torch.where(slot, ids, -1 - col[None, :])
        sv, order = torch.sort(key, dim=1, stable=True)
        dup_sorted = torch.zeros_like(slot)
        dup_sorted[:, 1:] = sv[:, 1:] == sv[:, :-1]
        return slot & (member | torch.zeros_like(slot).scatter_(1, order, dup_sorted))

    ids = torch.zeros(b, width, dtype=torch.long)
    ids[slot] = draw(int(slot.sum()))
    bad = bad_slots(ids)
    for _ in range(max_rounds):
        if not bool(bad.any()):
            break
        ids[bad] = draw(int(bad.sum()))
        bad = bad_slots(ids)
    if bool(bad.any()):  # exact fallback for the rows still incomplete: Gumbel-top-k without replacement
        rows = bad.any(1).nonzero().squeeze(1)
        u = torch.rand(len(rows), num_items, generator=generator, dtype=torch.float64).clamp_(min=1e-300)
        keys = torch.log(weights.double())[None, :] - torch.log(-torch.log(u))
        local = torch.full((b,), -1, dtype=torch.long)
        local[rows] = torch.arange(len(rows))
        lr = local[ex_rows]
        keys[lr[lr >= 0], ex_items[lr >= 0]] = NEG_INF
        ids[rows] = torch.topk(keys, width, dim=1).indices
    tw = int(n_rel.max()) if b else 0
    t_ptr = torch.zeros(b + 1, dtype=torch.long)
    torch.cumsum(n_rel, 0, out=t_ptr[1:])
    targets = torch.zeros(b, tw, dtype=torch.long)
    targets[t_rows, torch.arange(len(t_keys)) - t_ptr[t_rows]] = t_items
    t_valid = torch.arange(tw)[None, :] < n_rel[:, None]
    ids = torch.cat([targets, ids], 1)
    is_target = torch.cat([t_valid, torch.zeros_like(slot)], 1)
    valid = torch.cat([t_valid, slot], 1)
    ids = ids.masked_fill(~valid, 0)
    order = torch.argsort(torch.where(valid, ids, num_items + torch.arange(ids.shape[1])[None, :]), dim=1)
    return ids.gather(1, order), is_target.gather(1, order), valid.gather(1, order)


__all__ = ["FullRankingEvaluator", "SampledRankingEvaluator", "chunked_topk", "parse_metrics", "sample_negatives"]
