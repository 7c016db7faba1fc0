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
        num_items: item ids ``0..num_items-1`` (0 = padding); needed by ``item_coverage`` under
            distributed evaluation, where a process may have seen no batch at all.

    Example:
        >>> acc = RankingAccumulator(["recall"], [10], num_items=1683)
        >>> acc.compute()   # no user yet
        {'recall@10': 0.0}
    """

    def __init__(self, metrics: Sequence[str], cutoffs: Sequence[int], num_items: Optional[int] = None):
        self.evaluator = FullRankingEvaluator(metrics, cutoffs)
        self.num_items = num_items

    def add(self, scores: torch.Tensor, batch: Dict[str, torch.Tensor]) -> None:
        """Rank ``scores`` [B, num_items] with the batch's history masked and score the top lists."""
        self.evaluator.update(batch, scores)

    def add_topk(self, batch: Dict[str, torch.Tensor], topk_ids: torch.Tensor, num_items: int) -> None:
        """Score precomputed top-k ids (e.g. from an ANN index)."""
        self.evaluator.update_topk(batch, topk_ids, num_items)

    def compute(self, strategy: Optional[object] = None) -> Dict[str, float]:
        """Means over users; under a distributed ``strategy`` (world size > 1) the per-user metric
        sums, the user counts and the coverage sets of every process are all-reduced first, so
        every process returns the metrics of all users."""
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            self._all_reduce(strategy)
        return self.evaluator.compute()

    def _all_reduce(self, strategy) -> None:
        """Sum the counts of every process in one collective (fixed key order, zeros for what a
        process did not see), plus one for the coverage sets."""
        acc, dev = self.evaluator.acc, strategy.root_device
        names = list(acc.ranking)
        parts = [acc.sums.get(n, torch.zeros(len(acc.ranking[n]), dtype=torch.float64)).to(dev) for n in names]
        parts.append(torch.tensor([float(acc.users)], dtype=torch.float64, device=dev))
        flat = strategy.reduce(torch.cat(parts), reduce_op="sum").cpu()
        offset = 0
        for n in names:
            acc.sums[n] = flat[offset:offset + len(acc.ranking[n])]
            offset += len(acc.ranking[n])
        acc.users = int(round(float(flat[-1])))
        if acc.coverage:
            num_items = self.num_items or acc.num_items
            if num_items is None:
                raise ConfigError("distributed item_coverage needs num_items: RankingAccumulator(..., num_items=).")
            seen = torch.stack([acc.seen.get(k, torch.zeros(num_items, dtype=torch.bool)).to(dev).double()
                                for k in acc.coverage])
            seen = strategy.reduce(seen, reduce_op="sum").cpu() > 0
            acc.seen = {k: seen[i] for i, k in enumerate(acc.coverage)}
            acc.num_items = num_items


class SampledRankingAccumulator(RankingAccumulator):
    """Sampled ranking: each user's targets ranked against ``num_negatives`` sampled items
    (:class:`recstudio.eval.SampledRankingEvaluator`; see docs/metrics.md for the protocol)."""

    def __init__(self, metrics: Sequence[str], cutoffs: Sequence[int], num_negatives: int, sampling: str,
                 item_counts: Optional[torch.Tensor], seed: int):
        from recstudio.eval.evaluator import SampledRankingEvaluator
        self.evaluator = SampledRankingEvaluator(metrics, cutoffs, num_negatives=num_negatives, sampling=sampling,
                                                 item_counts=item_counts, seed=seed)
        self.num_items = None  # no item_coverage in sampled ranking

    def add_sampled(self, batch: Dict[str, torch.Tensor], score_items_fn, num_items: int,
                    batch_number: Optional[int] = None) -> None:
        """Sample, score and accumulate one batch. ``batch_number`` (the batch's position in the
        unsharded evaluation) seeds its negatives, so a sharded evaluation draws the same ones as a
        single process; ``None``: the next number."""
        if batch_number is not None:
            self.evaluator.batches_seen = int(batch_number)
        self.evaluator.update(batch, score_items_fn, num_items)


def monitor_mode(metric: str) -> str:
    """``'min'`` for metrics registered as lower-is-better (rmse, mae, logloss), ``'max'`` otherwise;
    early stopping and the best checkpoint follow it."""
    from recstudio.eval import higher_is_better
    return "max" if higher_is_better(metric) else "min"


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


class CTRAccumulator:
    """Click-prediction metrics (``auc``, ``gauc``, ``logloss``) of logits against 0/1 labels over all
    evaluated rows (:class:`recstudio.eval.PointwiseEvaluator`); ``gauc`` groups the rows by user.

    Under distributed evaluation every process's predictions are gathered first (AUC ranks globally).

    Example:
        >>> acc = CTRAccumulator(["auc", "logloss"])
        >>> acc.add_predictions(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]), torch.tensor([1, 1]))
        >>> acc.compute()["auc"]
        1.0
    """

    NAMES = ("auc", "gauc", "logloss")

    @classmethod
    def check(cls, metrics: Sequence[str]) -> None:
        bad = [m for m in metrics if str(m).lower() not in cls.NAMES]
        if bad:
            raise ConfigError(f"click-prediction (eval_task 'ctr') metrics are {list(cls.NAMES)}, got {bad}; set "
                              "metrics to some of them.")

    def __init__(self, metrics: Sequence[str]):
        from recstudio.eval.pointwise import PointwiseEvaluator
        self.check(metrics)
        self.metrics = [str(m).lower() for m in metrics]
        self.evaluator = PointwiseEvaluator(self.metrics, from_logits=True)

    def add_predictions(self, logits: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> None:
        self.evaluator.update(logits.detach().float(), labels.detach().float(), users.detach())

    def compute(self, strategy: Optional[object] = None) -> Dict[str, float]:
        ev = self.evaluator
        if strategy is not None and getattr(strategy, "world_size", 1) > 1:
            dev = strategy.root_device
            local = [torch.cat(x).to(dev).double() if x else torch.zeros(0, dtype=torch.float64, device=dev)
                     for x in (ev._scores, ev._labels, ev._groups)]
            n = torch.tensor([len(local[0])], device=dev)
            sizes = strategy.all_gather(n).view(-1)
            top = int(sizes.max())
            parts = []
            for t in local:
                padded = torch.zeros(top, dtype=t.dtype, device=dev)
                padded[:len(t)] = t
                g = strategy.all_gather(padded).view(len(sizes), top)
                parts.append(torch.cat([g[r, :int(s)] for r, s in enumerate(sizes)]).cpu())
            ev.reset()
            ev.update(parts[0], parts[1], parts[2].long())
        return ev.compute()
