"""The sampler contract shared by every negative sampler, and helpers.

A sampler draws negative items for a batch and reports the proposal log-probabilities of what
it drew, so that losses can apply the logQ correction::

    log_pos_prob, neg_ids, log_neg_prob = sampler(query, num_neg, pos_items, user_hist=None)

* ``query`` [B, d]: the query vectors (used by model-based samplers; the others only take the
  batch size and device from ``pos_items`` and may be given ``None``);
* ``num_neg``: K, negatives per positive;
* ``pos_items`` [B] (or [B, P]) int64 inner item ids of the positives;
* ``user_hist`` optional [B, H] int64, each row's interacted items padded with 0.

Returns ``log_pos_prob`` (shape of ``pos_items``), ``neg_ids`` (``pos_items.shape + [K]``,
int64, on ``pos_items``' device) and ``log_neg_prob`` (shape of ``neg_ids``). Items are inner ids
``1..num_items-1``; the padding id 0 is never drawn. ``update(item_vectors=None,
item_counts=None)`` refreshes the sampler (each epoch). Draws use ``generator`` (or a
``seed``) when given, else torch's global RNG, so a seeded run repeats its draws.
"""
from typing import Optional, Tuple

import torch
from torch import nn

from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor


class Sampler(nn.Module):
    """Base class of the negative samplers.

    Args:
        num_items: catalogue size *including* the padding id 0 (``dataset.num_items``).
        generator: a ``torch.Generator`` for the draws (the same seed gives the same draws).
        seed: alternatively, the seed of a new CPU generator.
    """

    def __init__(self, num_items: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        super().__init__()
        if num_items is not None and int(num_items) < 2:
            raise ConfigError(f"{type(self).__name__}: num_items counts the padding id 0 and must be >= 2, "
                              f"got {num_items}.")
        if generator is not None and seed is not None:
            raise ConfigError(f"{type(self).__name__}: give either generator= or seed=, not both.")
        self.num_items = None if num_items is None else int(num_items)
        self.generator = generator if seed is None else torch.Generator().manual_seed(int(seed))

    # ---------------------------------------------------------------- contract
    def forward(self, query: Optional[Tensor], num_neg: int, pos_items: Tensor,
                user_hist: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        raise TypeError(f"{type(self).__name__} must implement forward() of its base class.")

    def update(self, item_vectors: Optional[Tensor] = None, item_counts: Optional[Tensor] = None) -> None:
        """Refresh the sampler (called each epoch); samplers ignore what they do not use."""

    def log_prob(self, items: Tensor, pos_items: Optional[Tensor] = None,
                 user_hist: Optional[Tensor] = None) -> Tensor:
        """Exact log-probability [B, M] that one draw for row b is ``items[b, m]``."""
        raise TypeError(f"{type(self).__name__} must implement log_prob() of its base class.")

    def manual_seed(self, seed: int) -> "Sampler":
        """Draw from a new CPU generator seeded with ``seed`` from now on."""
        self.generator = torch.Generator().manual_seed(int(seed))
        return self

    # ---------------------------------------------------------------- helpers
    def check(self, num_neg: int, pos_items: Tensor, user_hist: Optional[Tensor] = None) -> int:
        """Validate the inputs; return K."""
        if isinstance(num_neg, bool) or int(num_neg) != num_neg or num_neg < 0:
            raise ConfigError(f"{type(self).__name__}: num_neg must be an integer >= 0, got {num_neg!r}.")
        if pos_items is None or pos_items.dtype not in (torch.int64, torch.int32) or pos_items.dim() not in (1, 2):
            raise ConfigError(f"{type(self).__name__}: pos_items must be an integer tensor [B] or [B, P].")
        if user_hist is not None and (user_hist.dim() != 2 or user_hist.shape[0] != pos_items.shape[0]):
            raise ConfigError(f"{type(self).__name__}: user_hist must be [B, H] with B = {pos_items.shape[0]}, "
                              f"got {tuple(user_hist.shape)}.")
        return int(num_neg)

    def prob_dtype(self, query: Optional[Tensor]) -> torch.dtype:
        return query.dtype if query is not None and query.is_floating_point() else torch.get_default_dtype()

    def _draw(self, fn, device: torch.device, **kw) -> Tensor:
        gen = self.generator
        if gen is None:
            return fn(device=device, **kw)
        return fn(generator=gen, device=gen.device, **kw).to(device)

    def rand(self, shape, device, dtype=torch.float64) -> Tensor:
        """Uniform [0, 1) draws from the sampler's generator."""
        return self._draw(lambda **k: torch.rand(*shape, **k), device, dtype=dtype)

    def randint(self, low: int, high: int, shape, device) -> Tensor:
        """Uniform integers in [low, high) from the sampler's generator."""
        return self._draw(lambda **k: torch.randint(low, high, tuple(shape), **k), device, dtype=torch.int64)

    def randperm(self, n: int, device) -> Tensor:
        return self._draw(lambda **k: torch.randperm(n, **k), device, dtype=torch.int64)

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}"


def accidental_hits(neg_ids: Tensor, pos_items: Tensor, user_hist: Optional[Tensor] = None) -> Tensor:
    """Bool mask [B, ..., K]: the negative equals a positive of its row (or one of its history).

    Pass it to a loss as ``neg_is_pos`` to drop accidental hits. ``pos_items`` is [B] or [B, P]
    (for [B, P] every positive of row b counts); ``user_hist`` is [B, H] padded with 0.

    Example:
        >>> accidental_hits(torch.tensor([[3, 4]]), torch.tensor([4])).tolist()
        [[False, True]]
    """
    b = neg_ids.shape[0]
    known = pos_items.reshape(b, -1).long()
    if user_hist is not None:
        known = torch.cat([known, user_hist.long()], dim=1)
    known = known.masked_fill(known <= 0, -1).sort(dim=1).values.contiguous()
    flat = neg_ids.reshape(b, -1).long().contiguous()
    at = torch.searchsorted(known, flat).clamp(max=known.shape[1] - 1)
    hit = known.gather(1, at) == flat
    return hit.reshape(neg_ids.shape)


def uniform_log_prob(n: Tensor) -> Tensor:
    """``-log(n)`` with ``n`` items in the support."""
    return -torch.log(n.double())


def check_ids(items: Tensor, num_items: int, what: str) -> None:
    """DataError if ``items`` holds an id outside ``0..num_items-1``."""
    if items.numel() and (int(items.min()) < 0 or int(items.max()) >= num_items):
        raise DataError(f"{what} holds item ids outside 0..{num_items - 1} (num_items={num_items}); "
                        f"use the dataset's inner ids and its num_items.")


def is_shared(neg_ids: Tensor) -> bool:
    """Whether ``neg_ids`` [..., K] holds the same K items for every row (a stride-0 expanded view, as
    :class:`~recstudio.model.sampler.shared.SharedUniformSampler` returns): the model then scores them by
    one matrix product against ``neg_ids.reshape(-1, K)[0]``."""
    return neg_ids.dim() >= 2 and all(s == 0 for s in neg_ids.stride()[:-1])


__all__ = ["Sampler", "accidental_hits", "uniform_log_prob", "check_ids", "is_shared"]
