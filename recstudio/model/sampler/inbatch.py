"""In-batch negatives: the positives of the other rows of the batch."""
import math
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.base import Sampler
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor
ESTIMATES = ("batch", "popularity")


class InBatchSampler(Sampler):
    """Negatives of row b are the positive items of the other rows of the batch.

    ``neg_ids[b, j] = pos_items[(b + o_j) mod B]`` for offsets ``o_j``: all of ``1..B-1`` (so
    ``neg_ids`` is [B, B-1], in the order of the rows after b) when ``num_neg`` is ``None`` or
    ``>= B-1``; otherwise ``num_neg`` distinct offsets drawn at random (shared by all rows),
    giving [B, num_neg]. Rows whose positives are the same item see it among their
    negatives: mask with ``accidental_hits(neg_ids, pos_items)`` → ``neg_is_pos``.

    Log-probabilities (for the logQ correction of Yi et al., RecSys 2019), chosen by ``estimate``:

    * ``'batch'`` (default): the empirical batch frequency ``log(c_B(i) / B)``, where
      ``c_B(i)`` counts the rows of this batch whose positive is item i — exactly the share
      of the batch's B slots that hold i;
    * ``'popularity'``: ``log(count_i / Σ_j count_j)`` from ``item_counts`` (constructor or
      ``update``), the probability that a training interaction drawn uniformly has item i,
      i.e. that a batch slot holds i.

    ``log_pos_prob`` and ``log_neg_prob`` are that value at the positive and at each negative.

    Args:
        estimate: ``'batch'`` | ``'popularity'``.
        num_items: catalogue size including padding (only needed for ``'popularity'``).
        item_counts: optional counts [num_items] for ``'popularity'``.
        generator, seed: randomness of the offsets when ``num_neg < B-1``.

    Example:
        >>> s = InBatchSampler()
        >>> lp, neg, lq = s(None, None, torch.tensor([5, 7, 5]))
        >>> neg.tolist(), [round(x, 4) for x in lp.exp().tolist()]
        ([[7, 5], [5, 5], [5, 7]], [0.6667, 0.3333, 0.6667])
    """

    def __init__(self, estimate: str = "batch", num_items: Optional[int] = None,
                 item_counts: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)
        if estimate not in ESTIMATES:
            raise ConfigError(f"InBatchSampler: estimate must be one of {ESTIMATES}, got {estimate!r}.")
        self.estimate = estimate
        self.register_buffer("log_table", torch.empty(0, dtype=torch.float64), persistent=False)
        if item_counts is not None:
            self.update(item_counts=item_counts)

    def update(self, item_vectors: Optional[Tensor] = None, item_counts: Optional[Tensor] = None) -> None:
        """Store the item counts used by ``estimate='popularity'`` (ignored when ``None``)."""
        if item_counts is None:
            return
        counts = torch.as_tensor(item_counts).detach().to(torch.float64).flatten().clone()
        if self.num_items is not None and counts.numel() != self.num_items:
            raise DataError(f"InBatchSampler: item_counts has {counts.numel()} entries; expected {self.num_items}.")
        if bool((counts < 0).any()) or float(counts[1:].sum()) <= 0:
            raise DataError("InBatchSampler: item_counts must be >= 0 with a positive total.")
        counts[0] = 0.0
        self.log_table = (torch.log(counts) - torch.log(counts.sum())).to(self.log_table.device)

    def batch_log_prob(self, items: Tensor, pos_items: Tensor) -> Tensor:
        """``log`` of the proposal probability of ``items`` given the batch's ``pos_items``."""
        if self.estimate == "popularity":
            if self.log_table.numel() == 0:
                raise ConfigError("InBatchSampler(estimate='popularity') has no item counts: pass item_counts= "
                                  "or call update(item_counts=...).")
            return self.log_table[items.long().to(self.log_table.device)].to(items.device)
        flat = pos_items.reshape(-1)
        uniq, counts = torch.unique(flat, return_counts=True)
        at = torch.searchsorted(uniq, items.reshape(-1).contiguous()).clamp(max=uniq.numel() - 1)
        found = uniq[at] == items.reshape(-1)
        freq = torch.where(found, counts[at].double(), torch.zeros_like(at, dtype=torch.float64))
        return (torch.log(freq) - math.log(flat.numel())).reshape(items.shape)

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        if pos_items is None or pos_items.dim() != 1:
            raise ConfigError("InBatchSampler: pos_items must be [B] (one positive per row).")
        b = pos_items.shape[0]
        k = b - 1 if num_neg is None else self.check(num_neg, pos_items, user_hist)
        dev, dtype = pos_items.device, self.prob_dtype(query)
        if k >= b - 1:
            offsets = torch.arange(1, b, device=dev)
        else:
            offsets = self.randperm(b - 1, dev)[:k] + 1
        rows = (torch.arange(b, device=dev).unsqueeze(1) + offsets.unsqueeze(0)) % max(b, 1)
        neg = pos_items.long()[rows]
        log_pos = self.batch_log_prob(pos_items, pos_items).to(dtype)
        log_neg = log_pos[rows]
        return log_pos, neg, log_neg

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        if pos_items is None and self.estimate == "batch":
            raise ConfigError("InBatchSampler.log_prob needs the batch's pos_items for estimate='batch'.")
        return self.batch_log_prob(items, pos_items)

    def extra_repr(self) -> str:
        return f"estimate={self.estimate!r}"
