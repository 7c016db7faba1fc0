"""Mixed negative sampling: the batch's other positives plus uniform negatives (Yang et al., WWW 2020)."""
import math
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.inbatch import InBatchSampler
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


class MixedSampler(InBatchSampler):
    """In-batch negatives (the other rows' positives, ``B - 1`` per row) plus ``num_neg`` uniform items.

    In-batch negatives follow item popularity and so miss the tail of the catalogue; the uniform part
    keeps every item in the support (Yang et al., "Mixed negative sampling for learning two-tower neural
    networks in recommendations", WWW 2020). Row b's candidates are ``B`` draws from the batch
    distribution ``q_batch`` (its own positive among them) and ``K = num_neg`` from the uniform
    ``q_unif = 1 / (num_items - 1)``, so one candidate of the pool is a draw from the mixture

        ``q(i) = (B q_batch(i) + K q_unif) / (B + K)``,

    and that is the log-probability returned for the positive and for every negative (the logQ
    correction of a sampled softmax). ``q_batch`` is the empirical batch frequency, or the item
    popularity with ``estimate='popularity'`` (as :class:`InBatchSampler`). Uniform draws may hit a
    positive: the framework masks them through ``neg_is_pos``.

    Args:
        num_items: catalogue size including padding 0.
        estimate: ``'batch'`` | ``'popularity'`` (see :class:`InBatchSampler`).
        item_counts: counts [num_items] for ``'popularity'``.
        batch_negatives: ``None`` (default): all ``B - 1`` in-batch negatives; an integer ``n < B - 1``:
            ``n`` distinct random offsets shared by the rows (as :class:`InBatchSampler` with ``num_neg = n``),
            for batches too large for ``[B, B - 1]`` negatives (a sequential model's ``B`` is its number of
            target positions, thousands per batch). The mixture then weighs ``n + 1`` batch draws (the
            row's own slot included, as ``B`` counts it) against ``K``.
        generator, seed: randomness of the offsets and the uniform draws.

    Example:
        >>> s = MixedSampler(num_items=11, seed=0)
        >>> lp, neg, lq = s(None, 2, torch.tensor([5, 7, 5]))
        >>> neg.shape, neg[:, :2].tolist()   # 2 in-batch + 2 uniform per row
        (torch.Size([3, 4]), [[7, 5], [5, 5], [5, 7]])
        >>> round(lp[1].exp().item(), 4)    # (3 * 1/3 + 2 * 1/10) / 5
        0.24
    """

    def __init__(self, num_items: int, estimate: str = "batch", item_counts: Optional[Tensor] = None,
                 batch_negatives: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        super().__init__(estimate=estimate, num_items=num_items, item_counts=item_counts, generator=generator,
                         seed=seed)
        if self.num_items is None:
            raise ConfigError("MixedSampler needs num_items (the catalogue size including padding 0).")
        if batch_negatives is not None and (isinstance(batch_negatives, bool) or int(batch_negatives) < 1):
            raise ConfigError(f"MixedSampler: batch_negatives must be None (all B - 1) or an integer >= 1, "
                              f"got {batch_negatives!r}.")
        self.batch_negatives = None if batch_negatives is None else int(batch_negatives)
        self.num_uniform: Optional[int] = None
        self.batch_draws: Optional[int] = None

    def mixture_log_prob(self, items: Tensor, pos_items: Tensor, num_uniform: int,
                         batch_draws: Optional[int] = None) -> Tensor:
        """``log q(i)`` of one candidate under the mixture of ``batch_draws`` (default ``B``) batch and
        ``num_uniform`` uniform draws."""
        b = pos_items.numel() if batch_draws is None else int(batch_draws)
        batch = self.batch_log_prob(items, pos_items).double()
        uniform = torch.full_like(batch, -math.log(self.num_items - 1))
        ok = (items >= 1) & (items < self.num_items)
        mixed = torch.logaddexp(batch + math.log(b), uniform + math.log(num_uniform)) - math.log(b + num_uniform)
        return torch.where(ok, mixed, torch.full_like(mixed, float("-inf")))

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        if pos_items is None or pos_items.dim() != 1:
            raise ConfigError("MixedSampler: pos_items must be [B] (one positive per row).")
        if num_neg is None or int(num_neg) < 1:
            raise ConfigError(f"MixedSampler: num_neg is the number of uniform negatives added to the in-batch "
                              f"ones and must be >= 1, got {num_neg}; use sampler inbatch for in-batch only.")
        k = int(num_neg)
        dtype, dev = self.prob_dtype(query), pos_items.device
        b, cap = pos_items.shape[0], self.batch_negatives
        capped = cap is not None and cap < b - 1
        _, in_batch, _ = super().forward(query, cap if capped else None, pos_items)
        uniform = self.randint(1, self.num_items, (b, k), dev)
        neg = torch.cat([in_batch, uniform], dim=1)
        self.num_uniform, self.batch_draws = k, (cap + 1 if capped else None)
        return (self.mixture_log_prob(pos_items, pos_items, k, self.batch_draws).to(dtype), neg,
                self.mixture_log_prob(neg, pos_items, k, self.batch_draws).to(dtype))

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        if self.num_uniform is None:
            raise ConfigError("MixedSampler.log_prob depends on num_neg: draw once first.")
        if pos_items is None and self.estimate == "batch":
            raise ConfigError("MixedSampler.log_prob needs the batch's pos_items for estimate='batch'.")
        return self.mixture_log_prob(items, pos_items, self.num_uniform, self.batch_draws)

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, estimate={self.estimate!r}, batch_negatives={self.batch_negatives}"
