"""Per-batch accumulation of full-ranking metrics inside Lightning's validation / test loops."""
from typing import Dict, Optional, Sequence

import torch

from recstudio.eval.evaluator import FullRankingEvaluator
from recstudio.utils.errors import ConfigError


class RankingAccumulator:
    """Full-ranking metrics accumulated batch by batch inside Lightning's loops.

    A thin layer over :class:`recstudio.eval.FullRankingEvaluator` that also sums the partial
    results of every process under distributed training.

    Args:
        metrics: metric names (``recall``, ``ndcg``, ..., ``item_coverage``).
        cutoffs: list lengths, e.g. ``[10, 20]``.
    """

    def __init__(self, metrics: Sequence[str], cutoffs: Sequence[int]):
        self.evaluator = FullRankingEvaluator(metrics, cutoffs)

    def add(self, scores: torch.Tensor, batch: Dict[str, torch.Tensor]) -> None:
        """Rank ``scores`` [B, num_items] with the batch's history masked and score the top lists."""
        self.evaluator.update(batch, scores)

    def add_topk(self, batch: Dict[str, torch.Tensor], topk_ids: torch.Tensor, num_items: int) -> None:
        """Score precomputed top-k ids (e.g. from an ANN index)."""
        self.evaluator.update_topk(batch, topk_ids, num_items)

    def compute(self, strategy: Optional[object] = None) -> Dict[str, float]:
        """Means over users (summed across processes when a distributed ``strategy`` is given)."""
        acc = self.evaluator.acc
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            dev = strategy.root_device
            for name in list(acc.sums):
                acc.sums[name] = strategy.reduce(acc.sums[name].to(dev), reduce_op="sum").cpu()
            acc.users = int(strategy.reduce(torch.tensor(float(acc.users), device=dev), reduce_op="sum"))
            for k in list(acc.seen):
                acc.seen[k] = strategy.reduce(acc.seen[k].to(dev).float(), reduce_op="sum").cpu() > 0
        return self.evaluator.compute()


class SampledRankingAccumulator(RankingAccumulator):
    """Sampled ranking: each user's targets ranked against ``num_negatives`` sampled items
    (:class:`recstudio.eval.SampledRankingEvaluator`; see docs/metrics.md for the protocol)."""

    def __init__(self, metrics: Sequence[str], cutoffs: Sequence[int], num_negatives: int, sampling: str,
                 item_counts: Optional[torch.Tensor], seed: int):
        from recstudio.eval.evaluator import SampledRankingEvaluator
        self.evaluator = SampledRankingEvaluator(metrics, cutoffs, num_negatives=num_negatives, sampling=sampling,
                                                 item_counts=item_counts, seed=seed)

    def add_sampled(self, batch: Dict[str, torch.Tensor], score_items_fn, num_items: int) -> None:
        self.evaluator.update(batch, score_items_fn, num_items)


#: metrics where lower is better (early stopping and checkpoints minimise them)
LOWER_IS_BETTER = ("rmse", "mae", "logloss")


def monitor_mode(metric: str) -> str:
    """``'min'`` for error metrics (rmse, mae, logloss), ``'max'`` otherwise."""
    return "min" if metric.split("@")[0] in LOWER_IS_BETTER else "max"


class RatingAccumulator:
    """Sums squared and absolute errors of rating predictions; :meth:`compute` gives rmse / mae.

    ``rmse = sqrt(mean((pred - rating)^2))``, ``mae = mean(|pred - rating|)`` over all evaluated
    interactions (not per user).
    """

    NAMES = ("rmse", "mae")

    def __init__(self, metrics: Sequence[str]):
        bad = [m for m in metrics if m not in self.NAMES]
        if bad:
            raise ConfigError(f"rating-prediction metrics are {list(self.NAMES)}, got {bad}.")
        self.metrics = list(metrics)
        self.sq = self.abs = 0.0
        self.count = 0

    def add_ratings(self, pred: torch.Tensor, rating: torch.Tensor) -> None:
        err = (pred.float() - rating.float()).detach()
        self.sq += float((err ** 2).sum())
        self.abs += float(err.abs().sum())
        self.count += int(err.numel())

    def compute(self, strategy: Optional[object] = None) -> Dict[str, float]:
        totals = torch.tensor([self.sq, self.abs, float(self.count)], dtype=torch.float64)
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            totals = strategy.reduce(totals.to(strategy.root_device), reduce_op="sum").cpu()
        n = max(float(totals[2]), 1.0)
        values = {"rmse": float(torch.sqrt(totals[0] / n)), "mae": float(totals[1] / n)}
        return {m: values[m] for m in self.metrics}
