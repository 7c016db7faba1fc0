"""Top-k ranking metrics as tensor operations, and the exact, tie-broken top-k they start from.

Every ranking metric reads

- ``hits``: bool ``[B, K]``, ``hits[u, r-1]`` = the item at rank ``r`` of user ``u``'s top-K list is
  relevant (a target of ``u``);
- ``n_rel``: ``[B]``, the number of distinct relevant items of each user,

and returns per-user values: ``[B]`` for one cutoff ``k``, ``[B, len(k)]`` for a list of cutoffs,
``[B, K]`` (every cutoff ``1..K``) for ``k=None``. Cutoffs larger than ``K`` are fine: the missing
ranks count as misses. Users with ``n_rel == 0`` get 0 (never NaN); the evaluators leave them out of
the averages. Definitions follow RecBole (see ``docs/metrics.md``).

Ranking order is **by score, descending, then by item id, ascending** (the lower id wins a tie), the
same on every device and whether or not items are scored in chunks (:func:`topk_exact`).
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from recstudio.utils.errors import ConfigError
from recstudio.utils.registry import Registry

#: name -> metric function; ``METRICS.info[name]`` has ``kind`` ('ranking', 'coverage' or 'pointwise'),
#: ``higher_is_better`` and ``summary``.
METRICS: Registry = Registry("metric")

Cutoffs = Union[int, Sequence[int], None]
NEG_INF = float("-inf")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (e.g. ``ndcg@10``, ``rmse``) is better, as registered in
    :data:`METRICS` (the pointwise metrics register on ``import recstudio.eval``); names it does
    not know count as higher-is-better.

    Args:
        metric: a metric name, with or without an ``@k`` cutoff (case-insensitive).

    Example:
        >>> from recstudio.eval import higher_is_better
        >>> higher_is_better("ndcg@10"), higher_is_better("rmse")
        (True, False)
    """
    name = metric.split("@")[0]
    if name not in METRICS:
        return True
    return bool(METRICS.info[METRICS.canonical(name)].get("higher_is_better", True))


# ---- exact top-k ---------------------------------------------------------------------------------
def sort_by_score_then_id(values: torch.Tensor, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``(values, ids)`` reordered by value descending, then id ascending (two stable sorts)."""
    order = torch.argsort(ids, dim=1, stable=True)
    values, ids = values.gather(1, order), ids.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    return values.gather(1, order), ids.gather(1, order)


def topk_exact(scores: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The top-``k`` columns of each row by (score descending, column ascending).

    ``torch.topk`` leaves the order of equal scores unspecified; here the result is unique: ties are
    broken by the lower column, both inside the list and at its boundary (which of several items
    with the k-th score get in). Cost: one ``topk(k+1)``; rows whose ``k``-th and ``k+1``-th scores
    tie (e.g. popularity scores) are fully sorted (stable) instead. ``-inf`` ties are not resolved
    (those entries are "not ranked", see :func:`topk_masked`).

    Args:
        scores: float ``[B, N]``; NaN is refused.
        k: list length; ``k > N`` gives ``N`` columns.

    Returns:
        ``(values [B, min(k, N)], columns [B, min(k, N)] int64)``.

    Raises:
        ValueError: the scores contain NaN.
    """
    n = scores.shape[1]
    k = min(int(k), n)
    if k <= 0:
        empty = scores.new_empty(scores.shape[0], 0)
        return empty, empty.long()
    values, ids = torch.topk(scores, min(k + 1, n), dim=1, largest=True, sorted=True)
    if torch.isnan(values).any():  # topk puts NaN first, so any NaN in a row shows up here
        raise ValueError("scores contain NaN; a model produced invalid scores (diverged training?).")
    if values.shape[1] > k:
        kth = values[:, k - 1]
        ambiguous = (values[:, k] == kth) & (kth > NEG_INF)
        values, ids = values[:, :k].contiguous(), ids[:, :k].contiguous()
        if bool(ambiguous.any()):
            rows = ambiguous.nonzero().squeeze(1)
            sv, si = torch.sort(scores[rows], dim=1, descending=True, stable=True)
            values[rows], ids[rows] = sv[:, :k], si[:, :k]
    tied = (values[:, 1:] == values[:, :-1]).any(1)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        values[rows], ids[rows] = sort_by_score_then_id(values[rows], ids[rows])
    return values, ids


def merge_topk(values: torch.Tensor, ids: torch.Tensor, new_values: torch.Tensor, new_ids: torch.Tensor,
               k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Merge a running top-k with a new candidate list (same order as :func:`topk_exact`)."""
    v, i = sort_by_score_then_id(torch.cat([values, new_values], 1), torch.cat([ids, new_ids], 1))
    return v[:, :k], i[:, :k]


def csr_rows(indptr: torch.Tensor, nnz: Optional[int] = None) -> torch.Tensor:
    """Row of every stored entry of a CSR (``repeat_interleave`` of the row lengths)."""
    nnz = int(indptr[-1]) if nnz is None else nnz
    rows = torch.arange(len(indptr) - 1, device=indptr.device)
    return torch.repeat_interleave(rows, indptr[1:] - indptr[:-1], output_size=nnz)


def mask_scores(scores: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, offset: int = 0,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Set, in place, the scores of the CSR's items (and of item 0) to ``-inf``.

    ``scores`` holds the columns ``offset .. offset + width - 1`` of the item space (an item chunk);
    only the CSR entries falling in that range are written. ``rows`` (the row of every CSR entry,
    :func:`csr_rows`) may be passed to avoid recomputing it for every chunk. Returns ``scores``.
    """
    dev, width = scores.device, scores.shape[1]
    indices = indices.to(dev)
    rows = csr_rows(indptr.to(dev), len(indices)) if rows is None else rows.to(dev)
    cols = indices - offset if offset else indices
    if len(indices) and (offset > 0 or int(indices.max()) >= width):
        keep = (cols >= 0) & (cols < width)
        rows, cols = rows[keep], cols[keep]
    scores[rows, cols] = NEG_INF
    if offset == 0 and width > 0:
        scores[:, 0] = NEG_INF
    return scores


def topk_masked(scores: torch.Tensor, history_indptr: Optional[torch.Tensor], history_indices: Optional[torch.Tensor],
                k: int, inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items of each row after masking the history and item 0.

    Args:
        scores: float ``[B, num_items]`` (column = item id, column 0 = padding).
        history_indptr, history_indices: CSR of the items to exclude per row (``None``: only item 0).
        k: list length; any ``k >= 1`` (rows with fewer rankable items are padded).
        inplace: write the ``-inf`` mask into ``scores`` instead of a copy.

    Returns:
        ``(values [B, k], ids [B, k])`` by score descending, then id ascending. Entries that are not
        ranked (masked, scored ``-inf``, or beyond the rankable items) have value ``-inf`` and id
        ``-1``, like the ANN indexes' padding.

    Example:
        >>> s = torch.tensor([[0.0, 3.0, 5.0, 5.0, 1.0]])
        >>> topk_masked(s, torch.tensor([0, 1]), torch.tensor([3]), 3)[1].tolist()
        [[2, 1, 4]]
    """
    if not inplace or not scores.is_contiguous():
        scores = scores.clone()
    if history_indptr is None:
        history_indptr = torch.zeros(scores.shape[0] + 1, dtype=torch.long, device=scores.device)
        history_indices = history_indptr[:0]
    mask_scores(scores, history_indptr, history_indices)
    values, ids = topk_exact(scores, k)
    return pad_topk(values, ids, k)


def pad_topk(values: torch.Tensor, ids: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Set ids of ``-inf`` entries to -1 and pad the lists to ``k`` columns (value -inf, id -1)."""
    ids = ids.masked_fill(values == NEG_INF, -1)
    if values.shape[1] < k:
        extra = k - values.shape[1]
        values = torch.cat([values, values.new_full((values.shape[0], extra), NEG_INF)], 1)
        ids = torch.cat([ids, ids.new_full((ids.shape[0], extra), -1)], 1)
    return values, ids


# ---- hits ----------------------------------------------------------------------------------------
def _row_keys(indptr: torch.Tensor, indices: torch.Tensor, stride: int) -> torch.Tensor:
    keys = csr_rows(indptr, len(indices)) * stride + indices
    if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
        keys = torch.sort(keys).values
    return keys


def in_csr(ids: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """bool ``[B, L]``: whether ``ids[u, j]`` is among row ``u``'s CSR entries (ids < 0 never are).

    One ``searchsorted`` over the row-offset keys ``row * stride + item`` (no dense ``[B, N]``).
    """
    dev = ids.device
    indptr, indices = indptr.to(dev), indices.to(dev)
    if len(indices) == 0 or ids.numel() == 0:
        return torch.zeros(ids.shape, dtype=torch.bool, device=dev)
    stride = max(int(indices.max()), int(ids.max())) + 1
    keys = _row_keys(indptr, indices, stride)
    query = torch.arange(ids.shape[0], device=dev)[:, None] * stride + ids
    pos = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
    return (keys[pos] == query) & (ids >= 0)


def count_distinct(indptr: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Distinct items per CSR row (``[B]`` int64)."""
    rows = len(indptr) - 1
    if len(indices) == 0:
        return torch.zeros(rows, dtype=torch.long, device=indptr.device)
    keys = _row_keys(indptr, indices.to(indptr.device), int(indices.max()) + 1)
    new = torch.ones_like(keys, dtype=torch.bool)
    new[1:] = keys[1:] != keys[:-1]
    return torch.zeros(rows, dtype=torch.long, device=indptr.device).index_add_(
        0, csr_rows(indptr, len(indices)), new.long())


def ranking_hits(topk_ids: torch.Tensor, target_indptr: torch.Tensor,
                 target_indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(hits [B, K] bool, n_rel [B] int64)`` of top-K lists against the targets' CSR.

    ``hits[u, r]`` = ``topk_ids[u, r]`` is a target of row ``u`` (id ``-1`` padding never is);
    ``n_rel[u]`` = number of *distinct* targets of row ``u``.

    Example:
        >>> h, n = ranking_hits(torch.tensor([[3, 1, -1]]), torch.tensor([0, 2]), torch.tensor([1, 7]))
        >>> h.tolist(), n.tolist()
        ([[False, True, False]], [2])
    """
    target_indptr = target_indptr.to(topk_ids.device)
    return in_csr(topk_ids, target_indptr, target_indices), count_distinct(target_indptr, target_indices)


# ---- metrics -------------------------------------------------------------------------------------
def _cutoffs(k: Cutoffs, width: int) -> Tuple[List[int], bool]:
    """Cutoffs as a list of ints, and whether a single int was given."""
    if k is None:
        return list(range(1, width + 1)), False
    single = isinstance(k, int)
    ks = [int(k)] if single else [int(c) for c in k]
    if any(c < 1 for c in ks):
        raise ConfigError(f"cutoffs must be >= 1, got {k}.")
    return ks, single


def ranking_metrics(hits: torch.Tensor, n_rel: torch.Tensor,
                    wanted: Mapping[str, Sequence[int]]) -> Dict[str, torch.Tensor]:
    """Several ranking metrics at several cutoffs in one pass (shared cumulative sums).

    Args:
        hits: bool ``[B, K]``; n_rel: ``[B]``.
        wanted: metric name (``recall, precision, hit, mrr, ndcg, map``) -> cutoffs.

    Returns:
        name -> float32 ``[B, len(cutoffs)]`` per-user values (the formulas of each metric's function).
    """
    width = max([hits.shape[1]] + [max(ks) for ks in wanted.values() if len(ks)])
    h = hits.float()
    if width > h.shape[1]:  # cutoffs beyond the list: the missing ranks are misses
        h = torch.cat([h, h.new_zeros(h.shape[0], width - h.shape[1])], 1)
    n = n_rel.to(h.device).float()
    ranks = torch.arange(1, width + 1, device=h.device, dtype=torch.float32)
    cum = h.cumsum(1)
    out = {}
    for name, ks in wanted.items():
        kt = torch.tensor(list(ks), device=h.device, dtype=torch.long)
        kf = kt.float()
        c = cum[:, kt - 1]
        if name == "recall":
            out[name] = c / n.clamp(min=1)[:, None]
        elif name == "recall_trunc":  # hits / min(k, n_rel) (Liang et al. 2018; Steck 2019)
            out[name] = c / torch.minimum(n[:, None], kf[None, :]).clamp(min=1)
        elif name == "precision":
            out[name] = c / kf * (n > 0)[:, None]
        elif name == "hit":
            out[name] = (c > 0).float()
        elif name == "mrr":
            out[name] = (h * (cum == 1) / ranks).cumsum(1)[:, kt - 1]
        elif name == "ndcg":
            disc = 1.0 / torch.log2(ranks + 1)
            n_ideal = torch.minimum(n.long()[:, None], kt[None, :])  # min(n_rel, k)
            idcg = disc.cumsum(0)[(n_ideal - 1).clamp(min=0)]
            out[name] = (h * disc).cumsum(1)[:, kt - 1] / torch.where(n_ideal > 0, idcg, torch.ones_like(idcg))
        elif name == "map":
            ap = (h * cum / ranks).cumsum(1)[:, kt - 1]
            out[name] = ap / torch.minimum(n[:, None], kf[None, :]).clamp(min=1)
        else:
            raise ConfigError(f"unknown ranking metric {name!r}; use one of {', '.join(RANKING_METRICS)}.")
    return out


def _one(name: str, hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs) -> torch.Tensor:
    ks, single = _cutoffs(k, hits.shape[1])
    out = ranking_metrics(hits, n_rel, {name: ks})[name]
    return out[:, 0] if single else out


@METRICS.register("recall", kind="ranking", higher_is_better=True, summary="hits@k / n_rel")
def recall(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """Recall@k = (hits in the top k) / n_rel -- RecBole's definition, not hits / min(k, n_rel).

    Example:
        >>> recall(torch.tensor([[True, False, True]]), torch.tensor([4]), 3).tolist()
        [0.5]
    """
    return _one("recall", hits, n_rel, k)


@METRICS.register("recall_trunc", kind="ranking", higher_is_better=True, summary="hits@k / min(k, n_rel)")
def recall_trunc(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """Truncated recall@k = (hits in the top k) / min(k, n_rel).

    The recall of Liang et al. (Variational Autoencoders for Collaborative Filtering, WWW 2018) and
    Steck (Embarrassingly Shallow Autoencoders, WWW 2019): the denominator is the most hits a top-k
    list can hold, so a perfect ranking scores 1 whatever the number of relevant items. ``recall``
    (RecBole's) divides by ``n_rel`` instead; the two agree when ``n_rel <= k``.

    Example:
        >>> recall_trunc(torch.tensor([[True, False, True]]), torch.tensor([4]), 2).tolist()
        [0.5]
    """
    return _one("recall_trunc", hits, n_rel, k)


@METRICS.register("precision", kind="ranking", higher_is_better=True, summary="hits@k / k")
def precision(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """Precision@k = (hits in the top k) / k (divided by k even when fewer than k items were ranked)."""
    return _one("precision", hits, n_rel, k)


@METRICS.register("hit", kind="ranking", higher_is_better=True, summary="1 if any hit in the top k")
def hit(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """Hit@k (hit ratio) = 1 if at least one relevant item is in the top k, else 0."""
    return _one("hit", hits, n_rel, k)


@METRICS.register("mrr", kind="ranking", higher_is_better=True, summary="1 / rank of the first hit")
def mrr(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """MRR@k = 1 / (rank of the first relevant item) if it is within the top k, else 0."""
    return _one("mrr", hits, n_rel, k)


@METRICS.register("ndcg", kind="ranking", higher_is_better=True, summary="binary-relevance NDCG")
def ndcg(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """NDCG@k = DCG@k / IDCG@k with binary relevance.

    DCG@k = sum_{r=1..k} hit_r / log2(r + 1); IDCG@k = sum_{r=1..min(n_rel, k)} 1 / log2(r + 1).

    Example:
        >>> round(ndcg(torch.tensor([[False, True]]), torch.tensor([1]), 2).item(), 4)  # 1/log2(3)
        0.6309
    """
    return _one("ndcg", hits, n_rel, k)


@METRICS.register("map", kind="ranking", higher_is_better=True, summary="RecBole's MAP")
def map_(hits: torch.Tensor, n_rel: torch.Tensor, k: Cutoffs = None) -> torch.Tensor:
    """MAP@k = (1 / min(n_rel, k)) * sum_{r=1..k} hit_r * precision@r (RecBole's MAP)."""
    return _one("map", hits, n_rel, k)


#: name -> per-user metric function ``fn(hits, n_rel, k)`` (the ranking metrics of :data:`METRICS`)
RANKING_FUNCTIONS = {"recall": recall, "precision": precision, "hit": hit, "mrr": mrr, "ndcg": ndcg, "map": map_}
RANKING_FUNCTIONS["recall_trunc"] = recall_trunc
RANKING_METRICS = tuple(RANKING_FUNCTIONS)


@METRICS.register("item_coverage", kind="coverage", higher_is_better=True,
                  summary="share of items in at least one top-k list")
def item_coverage(topk_ids: torch.Tensor, num_items: int, k: Cutoffs = None) -> torch.Tensor:
    """Item coverage@k = |union of the users' top-k items| / (num_items - 1).

    ``num_items`` counts the padding id 0, so the denominator is the number of real items
    ``1..num_items-1``; padding ids (``<= 0``) are not counted. For one batch; the evaluators
    accumulate the union over all batches (:func:`items_seen`).

    Example:
        >>> item_coverage(torch.tensor([[1, 2], [1, 3]]), 5, 1).item()
        0.25
    """
    ks, single = _cutoffs(k, topk_ids.shape[1])
    out = torch.stack([items_seen(topk_ids, num_items, c).sum() / max(num_items - 1, 1) for c in ks])
    return out[0] if single else out


def items_seen(topk_ids: torch.Tensor, num_items: int, k: int) -> torch.Tensor:
    """bool ``[num_items]``: item appears in some row's top-``k`` (index 0 is always False)."""
    seen = torch.zeros(num_items, dtype=torch.bool, device=topk_ids.device)
    ids = topk_ids[:, :k].reshape(-1)
    seen[ids[ids > 0]] = True
    return seen
