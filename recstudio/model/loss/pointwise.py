"""Pointwise losses: binary cross-entropy, MSE, and WRMF's confidence-weighted squared error."""
import torch
import torch.nn.functional as F

from recstudio.model.loss.base import Loss
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


class BCELoss(Loss):
    """Binary cross-entropy on logits, in two forms.

    * With ``neg_score`` (sampled negatives, the default use): the positive has label 1 and
      every sampled negative label 0, ``loss = -log σ(pos) - Σ_k log σ(-neg_k)``; each drawn
      negative is one 0-labelled example, as in NCF and SASRec (``neg_reduction='mean'``
      averages the negative term over the K negatives instead of summing it).
    * Without ``neg_score``: pointwise on ``label`` (0/1 or soft targets in [0, 1]),
      ``loss = -label·log σ(pos) - (1 - label)·log σ(-pos)``, e.g. for CTR rankers.

    Computed with ``softplus`` (``-log σ(x) = softplus(-x)``), stable for any logit.
    ``PointwiseBCELoss`` (``'pointwise_bce'``) is the same loss declaring ``pointwise=True``.

    Args:
        neg_reduction: ``'sum'`` | ``'mean'`` over the negatives of a positive.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = BCELoss()
        >>> round(loss(torch.tensor([0.0]), torch.tensor([[0.0, 0.0]])).item(), 4)  # 3 log 2
        2.0794
        >>> round(loss(torch.tensor([0.0]), label=torch.tensor([1.0])).item(), 4)
        0.6931
    """

    needs_negatives = True

    def __init__(self, neg_reduction: str = "sum", reduction: str = "mean"):
        super().__init__(reduction)
        if neg_reduction not in ("sum", "mean"):
            raise ConfigError(f"BCELoss: neg_reduction must be 'sum' or 'mean', got {neg_reduction!r}.")
        self.neg_reduction = neg_reduction

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        if neg_score is None:
            label = self.require("label", label, "Pass 0/1 labels (pointwise) or neg_score (sampled negatives).")
            return self.reduce(F.binary_cross_entropy_with_logits(pos, label.to(pos.dtype), reduction="none"))
        neg = self.negatives(pos, neg_score)
        keep = self.valid(neg, neg_is_pos)
        neg_term = F.softplus(neg).expand(*pos.shape, neg.shape[-1])
        neg_term = self.neg_sum(neg_term, keep) if self.neg_reduction == "sum" else self.neg_mean(neg_term, keep)
        return self.reduce(F.softplus(-pos) + neg_term)

    def extra_repr(self) -> str:
        return f"neg_reduction={self.neg_reduction!r}, " + super().extra_repr()


class PointwiseBCELoss(BCELoss):
    """``BCELoss`` declared pointwise: the framework passes ``label`` and draws no negatives.

    Example:
        >>> round(PointwiseBCELoss()(torch.tensor([0.0, 0.0]), label=torch.tensor([1, 0])).item(), 4)
        0.6931
    """

    needs_negatives = False
    pointwise = True


class MSELoss(Loss):
    """Squared error on ratings: ``(pos_score - label)^2``.

    Args:
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> MSELoss()(torch.tensor([3.0, 4.0]), label=torch.tensor([4.0, 4.0])).item()
        0.5
    """

    pointwise = True

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        label = self.require("label", label, "MSE regresses the ratings in `label`.")
        return self.reduce((pos - label.to(pos.dtype)) ** 2)


class WRMFLoss(Loss):
    """Confidence-weighted squared error for implicit feedback (WRMF / iALS objective).

    For an observed pair with feedback strength ``r = label`` (a count or rating; ``r = 1``
    when ``label`` is not given) the preference is ``p = 1[r > 0]`` and the confidence
    ``c = 1 + alpha·r``: ``loss = c·(pos - p)^2``. Optional sampled negatives (``r = 0``, so
    ``p = 0``) add ``neg_weight · Σ_k neg_k^2`` (``c = 1`` for ``neg_weight = 1``, as in the paper).

    Paper: Hu, Koren & Volinsky, "Collaborative filtering for implicit feedback datasets",
    ICDM 2008.

    Args:
        alpha: confidence slope (the paper uses up to 40).
        neg_weight: weight of each negative's squared score.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = WRMFLoss(alpha=2.0)
        >>> loss(torch.tensor([0.5]), label=torch.tensor([1.0])).item()  # (1 + 2) * 0.25
        0.75
    """

    pointwise = True

    def __init__(self, alpha: float = 1.0, neg_weight: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.alpha = float(alpha)
        self.neg_weight = float(neg_weight)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        r = torch.ones_like(pos) if label is None else label.to(pos.dtype)
        conf = 1.0 + self.alpha * r
        loss = conf * (pos - (r > 0).to(pos.dtype)) ** 2
        if neg_score is not None:
            neg = self.negatives(pos, neg_score)
            sq = (neg ** 2).expand(*pos.shape, neg.shape[-1])
            loss = loss + self.neg_weight * self.neg_sum(sq, self.valid(neg, neg_is_pos))
        return self.reduce(loss)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, neg_weight={self.neg_weight}, " + super().extra_repr()

