"""Popularity-based negative sampler: ``p(i) ∝ count_i^alpha``."""
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.base import Sampler, check_ids
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor


class PopularitySampler(Sampler):
    """Draws items with probability ``p(i) = count_i^alpha / Σ_j count_j^alpha`` (with replacement).

    ``item_counts`` has one entry per inner id (length ``num_items``; entry 0, the padding, is
    ignored) and comes from the constructor or ``update(item_counts=...)`` (each epoch, e.g. the
    training interaction counts). ``alpha = 0`` is the uniform sampler over ``1..num_items-1``
    (``0^0 = 1``); with ``alpha > 0`` an item with count 0 is never drawn and has
    ``log q = -inf``. Draws invert the float64 CDF with ``searchsorted`` (any catalogue size);
    the returned ``log q`` are ``alpha·log(count_i) - log Σ_j count_j^alpha`` for the drawn
    negatives and for the positives. A draw may hit a positive; see ``accidental_hits``.

    Args:
        num_items: catalogue size including padding 0.
        alpha: popularity exponent (0.75 as in word2vec is common; 1 = proportional).
        item_counts: optional initial counts [num_items].
        generator, seed: source of randomness (see ``Sampler``).

    Example:
        >>> s = PopularitySampler(4, alpha=1.0, item_counts=torch.tensor([0, 1, 0, 3]), seed=0)
        >>> lp, neg, lq = s(None, 1000, torch.tensor([1]))
        >>> sorted(set(neg.flatten().tolist())), round(lp.exp().item(), 4)
        ([1, 3], 0.25)
    """

    def __init__(self, num_items: int, alpha: float = 1.0, item_counts: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)
        if float(alpha) < 0:
            raise ConfigError(f"PopularitySampler: alpha must be >= 0, got {alpha}.")
        self.alpha = float(alpha)
        self.register_buffer("log_table", torch.empty(0, dtype=torch.float64), persistent=False)
        self.register_buffer("cdf", torch.empty(0, dtype=torch.float64), persistent=False)
        self.last = 0
        if item_counts is not None:
            self.update(item_counts=item_counts)

    def update(self, item_vectors: Optional[Tensor] = None, item_counts: Optional[Tensor] = None) -> None:
        """Set the popularity table from ``item_counts`` (ignored when ``None``)."""
        if item_counts is None:
            return
        counts = torch.as_tensor(item_counts).detach().to(torch.float64).flatten()
        if counts.numel() != self.num_items:
            raise DataError(f"PopularitySampler: item_counts has {counts.numel()} entries; expected num_items = "
                            f"{self.num_items} (one per inner id, entry 0 = padding).")
        if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
            raise DataError("PopularitySampler: item_counts must be finite and >= 0.")
        weight = counts.pow(self.alpha)
        weight[0] = 0.0
        cdf = torch.cumsum(weight, 0)
        total = float(cdf[-1])
        if total <= 0:
            raise DataError("PopularitySampler: every item has count 0; nothing can be drawn.")
        dev = self.log_table.device
        self.log_table = (torch.log(weight) - torch.log(cdf[-1])).to(dev)
        self.cdf = cdf.to(dev)
        self.last = int(torch.nonzero(weight > 0).max())

    def _table(self) -> Tensor:
        if self.log_table.numel() == 0:
            raise ConfigError("PopularitySampler has no item counts yet: pass item_counts= to the constructor "
                              "or call update(item_counts=...) before drawing.")
        return self.log_table

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        table = self._table()
        check_ids(pos_items, self.num_items, "pos_items")
        dtype, dev = self.prob_dtype(query), pos_items.device
        shape = (*pos_items.shape, k)
        u = self.rand((pos_items.numel() * k,), self.cdf.device) * self.cdf[-1]
        neg = torch.searchsorted(self.cdf, u, right=True).clamp(max=self.last).reshape(shape)
        log_neg = table[neg].to(dtype)
        log_pos = table[pos_items.to(table.device).long()].to(dtype)
        return log_pos.to(dev), neg.to(dev), log_neg.to(dev)

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        table = self._table()
        ok = (items >= 0) & (items < self.num_items)
        lp = table[items.clamp(0, self.num_items - 1).long().to(table.device)].to(items.device)
        return torch.where(ok, lp, torch.full_like(lp, float("-inf")))

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, alpha={self.alpha}"
