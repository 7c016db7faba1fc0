"""Cosine contrastive loss (CCL) of SimpleX."""
from typing import Optional

import torch

from recstudio.model.loss.base import Loss

Tensor = torch.Tensor


class CCLLoss(Loss):
    """Cosine contrastive loss: ``max(0, 1 - pos) + w/K · Σ_k max(0, neg_k - margin)``.

    Meant for cosine scores in [-1, 1] (use a cosine score function): the positive is pulled
    to 1 and only negatives whose similarity exceeds ``margin`` are pushed away. ``w`` is
    ``neg_weight``; when it is ``None`` (default) ``w = K``, i.e. the negative term is summed,
    as in the SimpleX reference code.

    Paper: Mao et al., "SimpleX: A simple and strong baseline for collaborative filtering",
    CIKM 2021.

    Args:
        margin: similarity above which a negative is penalised (0.8 by default).
        neg_weight: ``w``; ``None`` sums over the negatives.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = CCLLoss(margin=0.5, neg_weight=1.0)
        >>> round(loss(torch.tensor([0.75]), torch.tensor([[0.9, 0.1]])).item(), 4)  # 0.25 + 0.4/2
        0.45
    """

    needs_negatives = True

    def __init__(self, margin: float = 0.8, neg_weight: Optional[float] = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = float(margin)
        self.neg_weight = None if neg_weight is None else float(neg_weight)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        neg = self.negatives(pos, neg_score)
        keep = self.valid(neg, neg_is_pos)
        neg_term = torch.relu(neg - self.margin).expand(*pos.shape, neg.shape[-1])
        if self.neg_weight is None:
            neg_term = self.neg_sum(neg_term, keep)
        else:
            neg_term = self.neg_weight * self.neg_mean(neg_term, keep)
        return self.reduce(torch.relu(1.0 - pos) + neg_term)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, neg_weight={self.neg_weight}, " + super().extra_repr()
