"""Pointwise metrics (auc, gauc, logloss for click/CTR-style rankers; rmse, mae for ratings) and an
evaluator that accumulates them over batches.

Every function takes flat tensors (any shape is flattened) and returns a 0-d float64 tensor on the
input's device.
"""
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch

from recstudio.eval.ranking import METRICS
from recstudio.utils.errors import ConfigError

NAN = float("nan")


def _flat(*tensors: torch.Tensor):
    out = [torch.as_tensor(t).reshape(-1) for t in tensors]
    if any(len(t) != len(out[0]) for t in out):
        raise ConfigError(f"pointwise metric inputs must have the same number of elements, got "
                          f"{[len(t) for t in out]}.")
    return out


def _average_ranks(sorted_keys: torch.Tensor) -> torch.Tensor:
    """1-based ranks of an ascending-sorted 1-D tensor, ties given the average of their ranks."""
    _, inverse, counts = torch.unique_consecutive(sorted_keys, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((ends - counts.double() + 1 + ends) / 2)[inverse]


@METRICS.register("auc", kind="pointwise", higher_is_better=True, summary="global ROC-AUC, ties = average rank")
def auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Global ROC-AUC (Mann-Whitney U): the probability that a random positive scores above a random
    negative, a tie counting 1/2.

    AUC = (sum of the positives' ranks - P (P + 1) / 2) / (P * N), ranks ascending by score, 1-based,
    tied scores sharing the average of their ranks; P / N = number of positives / negatives
    (``labels > 0`` is positive). NaN when P = 0 or N = 0 (undefined).

    Example:
        >>> auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1])).item()
        0.875
    """
    s, y = _flat(scores, labels)
    y = y > 0
    p = int(y.sum())
    n = len(y) - p
    if p == 0 or n == 0:
        return torch.tensor(NAN, dtype=torch.float64, device=s.device)
    sorted_s, order = torch.sort(s.double(), stable=True)
    rank_sum = _average_ranks(sorted_s)[y[order]].sum()
    return (rank_sum - p * (p + 1) / 2) / (p * n)


@METRICS.register("gauc", kind="pointwise", higher_is_better=True, summary="per-user AUC, weighted by samples")
def gauc(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Group AUC: per-group (per-user) :func:`auc`, averaged with weights = the group's number of samples.

    GAUC = sum_g n_g AUC_g / sum_g n_g over the groups that have both a positive and a negative
    sample; groups with one class only (AUC undefined) are skipped, in the numerator and the
    denominator. NaN when no group qualifies. Vectorised (one sort by (group, score)).

    Example:
        >>> s, y = torch.tensor([.1, .9, .5, .2, .3]), torch.tensor([0, 1, 0, 1, 1])
        >>> gauc(s, y, torch.tensor([1, 1, 2, 2, 3])).item()
        0.5
    """
    s, y, g = _flat(scores, labels, groups)
    if len(s) == 0:
        return torch.tensor(NAN, dtype=torch.float64, device=s.device)
    y = (y > 0).double()
    order = torch.argsort(s, stable=True)
    order = order[torch.argsort(g[order], stable=True)]  # by group, then by score
    s, y, g = s[order].double(), y[order], g[order]
    n = len(s)
    group_new = torch.ones(n, dtype=torch.bool, device=s.device)
    group_new[1:] = g[1:] != g[:-1]
    tie_new = group_new.clone()
    tie_new[1:] |= s[1:] != s[:-1]
    gid, tid = group_new.cumsum(0) - 1, tie_new.cumsum(0) - 1
    pos = torch.arange(n, device=s.device, dtype=torch.float64)
    pos_in_group = pos - pos[group_new][gid] + 1
    ng, nt = int(gid[-1]) + 1, int(tid[-1]) + 1
    tie_rank = torch.zeros(nt, dtype=torch.float64, device=s.device).index_add_(0, tid, pos_in_group)
    tie_rank /= torch.zeros(nt, dtype=torch.float64, device=s.device).index_add_(0, tid, torch.ones_like(pos))
    rank = tie_rank[tid]
    zeros = torch.zeros(ng, dtype=torch.float64, device=s.device)
    size = zeros.index_add(0, gid, torch.ones_like(y))
    npos = zeros.index_add(0, gid, y)
    rank_sum = zeros.index_add(0, gid, rank * y)
    nneg = size - npos
    valid = (npos > 0) & (nneg > 0)
    if not bool(valid.any()):
        return torch.tensor(NAN, dtype=torch.float64, device=s.device)
    per_group = (rank_sum - npos * (npos + 1) / 2) / (npos * nneg).clamp(min=1)
    return (per_group * size)[valid].sum() / size[valid].sum()


@METRICS.register("logloss", kind="pointwise", higher_is_better=False, summary="binary cross-entropy")
def logloss(scores: torch.Tensor, labels: torch.Tensor, from_logits: bool = True, eps: float = 1e-7) -> torch.Tensor:
    """Mean binary cross-entropy -[y log p + (1 - y) log(1 - p)], labels in [0, 1].

    ``from_logits=True`` (the default): ``scores`` are logits, p = sigmoid(score), computed stably
    (no clamping needed). ``from_logits=False``: ``scores`` are probabilities, clamped to
    ``[eps, 1 - eps]`` first.

    Example:
        >>> round(logloss(torch.tensor([0.0]), torch.tensor([1.0])).item(), 4)  # log 2
        0.6931
    """
    s, y = _flat(scores, labels)
    s, y = s.double(), y.double()
    if from_logits:
        return torch.nn.functional.binary_cross_entropy_with_logits(s, y)
    p = s.clamp(eps, 1 - eps)
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()


@METRICS.register("rmse", kind="pointwise", higher_is_better=False, summary="root mean squared error")
def rmse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """RMSE = sqrt(mean((pred - target)^2)).

    Example:
        >>> rmse(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])).item()
        1.0
    """
    p, t = _flat(preds, targets)
    return ((p.double() - t.double()) ** 2).mean().sqrt()


@METRICS.register("mae", kind="pointwise", higher_is_better=False, summary="mean absolute error")
def mae(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MAE = mean(|pred - target|).

    Example:
        >>> mae(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 2.0])).item()
        1.5
    """
    p, t = _flat(preds, targets)
    return (p.double() - t.double()).abs().mean()


class PointwiseEvaluator:
    """Accumulates ``(scores, labels[, groups])`` over batches, then computes pointwise metrics.

    The metrics need all samples at once (AUC ranks globally), so the predictions are kept
    (memory O(samples), 3 numbers each).

    Args:
        metrics: names among ``auc, gauc, logloss, rmse, mae``.
        from_logits: for ``logloss`` (see :func:`logloss`).

    Example:
        >>> ev = PointwiseEvaluator(["auc", "logloss"])
        >>> ev.update(torch.tensor([2.0, -1.0]), torch.tensor([1, 0]))
        >>> ev.compute()["auc"]
        1.0
    """

    def __init__(self, metrics: Sequence[str] = ("auc", "logloss"), from_logits: bool = True):
        self.metrics = [METRICS.canonical(m) for m in metrics]
        bad = [m for m in self.metrics if METRICS.info[m]["kind"] != "pointwise"]
        if bad:
            raise ConfigError(f"PointwiseEvaluator takes pointwise metrics (auc, gauc, logloss, rmse, mae), got {bad}; "
                              f"use FullRankingEvaluator or SampledRankingEvaluator for ranking metrics.")
        self.from_logits = from_logits
        self.reset()

    def reset(self) -> None:
        self._scores: List[torch.Tensor] = []
        self._labels: List[torch.Tensor] = []
        self._groups: List[torch.Tensor] = []

    def update(self, scores: torch.Tensor, labels: torch.Tensor, groups: Optional[torch.Tensor] = None) -> None:
        """Add one batch (``groups``, e.g. user ids, is needed for ``gauc`` only)."""
        self._scores.append(scores.detach().reshape(-1))
        self._labels.append(labels.detach().reshape(-1).to(scores.device))
        if groups is not None:
            self._groups.append(groups.detach().reshape(-1).to(scores.device))

    def compute(self) -> Dict[str, float]:
        if not self._scores:
            return {m: NAN for m in self.metrics}
        s, y = torch.cat(self._scores), torch.cat(self._labels)
        out = {}
        for m in self.metrics:
            if m == "gauc":
                if len(self._groups) != len(self._scores):
                    raise ConfigError("gauc needs groups (e.g. user ids) with every update().")
                out[m] = float(gauc(s, y, torch.cat(self._groups)))
            elif m == "logloss":
                out[m] = float(logloss(s, y, from_logits=self.from_logits))
            else:
                out[m] = float(METRICS.get(m)(s, y))
        return out

    def evaluate(self, batches: Iterable[Mapping[str, torch.Tensor]], score_fn: Callable, label_key: str,
                 group_key: Optional[str] = None) -> Dict[str, float]:
        """Reset, score every batch with ``score_fn(batch) -> [B]``, compare with ``batch[label_key]``."""
        self.reset()
        with torch.no_grad():
            for batch in batches:
                self.update(score_fn(batch), batch[label_key], batch[group_key] if group_key else None)
        return self.compute()
