"""Uniform negative samplers: over the whole catalogue, or over each user's unseen items."""
import math
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.base import Sampler, check_ids
from recstudio.utils.errors import DataError

Tensor = torch.Tensor


class UniformSampler(Sampler):
    """Uniform over items ``1..num_items-1`` (with replacement; may return a positive).

    Every draw has ``log q = -log(num_items - 1)``, and so has the positive. Accidental hits
    are possible; mask them with ``accidental_hits`` or use ``MaskedUniformSampler``.

    Args:
        num_items: catalogue size including padding 0.
        generator, seed: source of randomness (see ``Sampler``).

    Example:
        >>> s = UniformSampler(num_items=5, seed=0)
        >>> lp, neg, lq = s(None, 3, torch.tensor([1, 2]))
        >>> neg.shape, bool((neg >= 1).all()), round(lq[0, 0].item(), 4)
        (torch.Size([2, 3]), True, -1.3863)
    """

    def __init__(self, num_items: int, generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        dtype, dev = self.prob_dtype(query), pos_items.device
        neg = self.randint(1, self.num_items, (*pos_items.shape, k), dev)
        value = -math.log(self.num_items - 1)
        return (torch.full(pos_items.shape, value, dtype=dtype, device=dev), neg,
                torch.full(neg.shape, value, dtype=dtype, device=dev))

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        ok = (items >= 1) & (items < self.num_items)
        return torch.where(ok, torch.tensor(-math.log(self.num_items - 1), dtype=torch.float64, device=items.device),
                           torch.tensor(float("-inf"), dtype=torch.float64, device=items.device))


class MaskedUniformSampler(Sampler):
    """Uniform over each row's items that are neither its positive(s) nor in its history.

    Exact and rejection-free: with ``E_b`` the sorted set of excluded items of row b
    (``user_hist[b]`` without padding, plus ``pos_items[b]``) and ``n_b = num_items - 1 - |E_b|``
    allowed items, a draw picks ``r ~ U{0..n_b-1}`` and returns the r-th allowed item, found
    with one batched ``searchsorted`` over ``E_b[j] - 1 - j`` (the number of allowed items below
    ``E_b[j]``). Dense histories cost nothing extra, and a history item is never returned.

    Log-probabilities: every negative of row b has ``log q = -log(n_b)`` (exact). The
    positive itself is excluded from the draws; ``log_pos_prob`` reports the same per-row
    value ``-log(n_b)`` (the proposal density as if the positive were eligible), which is what
    the logQ correction uses. ``log_prob(items, ...)`` is the exact probability (``-inf`` for
    excluded items).

    Args:
        num_items: catalogue size including padding 0.
        generator, seed: source of randomness (see ``Sampler``).

    Raises:
        DataError: a row has no allowed item (its history covers the catalogue).

    Example:
        >>> s = MaskedUniformSampler(num_items=5, seed=0)
        >>> lp, neg, lq = s(None, 4, torch.tensor([1]), torch.tensor([[2, 3, 0]]))
        >>> neg.tolist(), round(lq[0, 0].exp().item(), 4)
        ([[4, 4, 4, 4]], 1.0)
    """

    def __init__(self, num_items: int, generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)

    def excluded(self, pos_items: Tensor, user_hist: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Per row: the sorted distinct excluded ids (padded with ``num_items``) and their count."""
        b, n = pos_items.shape[0], self.num_items
        parts = [pos_items.reshape(b, -1).long()]
        if user_hist is not None:
            parts.append(user_hist.long())
        e = torch.cat(parts, dim=1)
        check_ids(e, n, "pos_items / user_hist")
        e = e.masked_fill(e <= 0, n).sort(dim=1).values
        dup = torch.zeros_like(e, dtype=torch.bool)
        dup[:, 1:] = e[:, 1:] == e[:, :-1]
        e = e.masked_fill(dup, n).sort(dim=1).values
        return e, (e < n).sum(dim=1)

    def allowed(self, count: Tensor) -> Tensor:
        allowed = (self.num_items - 1) - count
        if bool((allowed <= 0).any()):
            rows = torch.nonzero(allowed <= 0).flatten()[:5].tolist()
            raise DataError(f"MaskedUniformSampler: batch rows {rows} have no item left to draw (their history "
                            f"and positives cover all {self.num_items - 1} items); drop such users or use "
                            f"the 'uniform' sampler.")
        return allowed

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        dtype, dev = self.prob_dtype(query), pos_items.device
        b = pos_items.shape[0]
        e, count = self.excluded(pos_items, user_hist)
        allowed = self.allowed(count)
        m = e.shape[1]
        draws = k * (pos_items.numel() // max(b, 1))
        r = (self.rand((b, draws), dev) * allowed.unsqueeze(1).double()).long()
        r = torch.minimum(r, allowed.unsqueeze(1) - 1)
        below = e - 1 - torch.arange(m, device=dev)  # allowed items below each excluded one
        below = torch.where(e < self.num_items, below, torch.full_like(below, self.num_items + m + 1))
        neg = r + 1 + torch.searchsorted(below.contiguous(), r.contiguous(), right=True)
        neg = neg.reshape(*pos_items.shape, k)
        row_lp = -torch.log(allowed.double()).to(dtype)
        log_pos = row_lp.reshape(b, *([1] * (pos_items.dim() - 1))).expand(pos_items.shape).clone()
        log_neg = row_lp.reshape(b, *([1] * (neg.dim() - 1))).expand(neg.shape).clone()
        return log_pos, neg, log_neg

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        if pos_items is None:
            pos_items = torch.zeros(items.shape[0], dtype=torch.long, device=items.device)
        e, count = self.excluded(pos_items, user_hist)
        allowed = self.allowed(count)
        flat = items.reshape(items.shape[0], -1).long().contiguous()
        at = torch.searchsorted(e, flat).clamp(max=e.shape[1] - 1)
        ok = (flat >= 1) & (flat < self.num_items) & (e.gather(1, at) != flat)
        lp = (-torch.log(allowed.double())).unsqueeze(1).expand_as(ok)
        return torch.where(ok, lp, torch.full_like(lp, float("-inf"))).reshape(items.shape)
