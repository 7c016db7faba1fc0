"""The loss contract shared by every RecStudio loss, and the helpers the losses use.

Every loss is an ``nn.Module`` whose ``forward`` takes the same keywords::

    loss(pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
         all_score=None, label=None, pos_index=None, neg_is_pos=None) -> tensor

and four class attributes tell the framework what to compute before calling it:

=================== =========================================================================
``needs_all_scores`` scores over the whole catalogue (``all_score`` [B, N]; full softmax)
``needs_negatives``  scores of sampled negatives (``neg_score`` [B, K]) from a sampler
``pointwise``        targets in ``label`` (ratings for MSE, 0/1 for BCE)
``uses_logq``        the sampler's proposal log-probabilities (``log_pos_prob``, ``log_neg_prob``)
=================== =========================================================================

A constructor option may change them on the instance (``SampledSoftmaxLoss(logq=False)`` sets
``uses_logq = False``), so read them from the instance, not the class.

Shapes: ``pos_score`` is [B] (or [B, P] for several positives per row); ``neg_score`` is
``pos_score.shape + [K]``, or [B, K] shared by all P positives of a row; ``log_*_prob`` have the
shapes of the scores they belong to; ``neg_is_pos`` (optional, bool, shaped like ``neg_score``)
marks accidental hits, i.e. sampled negatives that are in fact positives, which every
negative-based loss then ignores. The per-positive loss has the shape of ``pos_score`` and is
reduced by ``reduction``: ``'mean'`` (default) and ``'sum'`` give a scalar, ``'none'`` the
per-positive tensor.
"""
from typing import Optional

import torch
from torch import nn

from recstudio.utils.errors import ConfigError

REDUCTIONS = ("mean", "sum", "none")


class Loss(nn.Module):
    """Base class of the losses: the flags, the reduction and input checks.

    Args:
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` over the per-positive losses.
    """

    needs_all_scores: bool = False
    needs_negatives: bool = False
    pointwise: bool = False
    uses_logq: bool = False

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        self.reduction = reduction

    def forward(self, pos_score: Optional[torch.Tensor] = None, neg_score: Optional[torch.Tensor] = None,
                log_pos_prob: Optional[torch.Tensor] = None, log_neg_prob: Optional[torch.Tensor] = None,
                all_score: Optional[torch.Tensor] = None, label: Optional[torch.Tensor] = None,
                pos_index: Optional[torch.Tensor] = None, neg_is_pos: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must implement forward() of its base class.")

    # ------------------------------------------------------------------ helpers
    def reduce(self, loss: torch.Tensor) -> torch.Tensor:
        """Apply ``self.reduction`` to a per-positive loss tensor."""
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def require(self, name: str, value: Optional[torch.Tensor], hint: str = "") -> torch.Tensor:
        """``value``, or a ConfigError saying which input this loss needs and how to get it."""
        if value is None:
            raise ConfigError(f"{type(self).__name__} needs `{name}` but it was not given." + (f" {hint}" if hint else ""))
        return value

    def negatives(self, pos: torch.Tensor, neg: Optional[torch.Tensor], what: str = "neg_score") -> torch.Tensor:
        """``neg`` checked and made broadcastable against ``pos.unsqueeze(-1)``.

        ``neg`` may be ``pos.shape + [K]``, or [B, K] when ``pos`` is [B, P] (shared negatives).
        """
        neg = self.require(what, neg, "Give the model a sampler (num_neg > 0), or choose a loss that does not need one.")
        if neg.dim() == pos.dim() + 1 and neg.shape[:-1] == pos.shape:
            return neg
        if pos.dim() == 2 and neg.dim() == 2 and neg.shape[0] == pos.shape[0]:
            return neg.unsqueeze(1)  # [B, 1, K]: the same negatives for all P positives
        raise ConfigError(f"{type(self).__name__}: {what} has shape {tuple(neg.shape)}; expected "
                          f"{tuple(pos.shape)} + [K] (or [B, K] shared by the positives).")

    @staticmethod
    def valid(neg: torch.Tensor, neg_is_pos: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Float mask of the negatives to keep (``None`` when all are kept)."""
        if neg_is_pos is None:
            return None
        keep = ~neg_is_pos.bool()
        if keep.dim() == 2 and neg.dim() == 3:
            keep = keep.unsqueeze(1)
        return keep.to(neg.dtype)

    @staticmethod
    def neg_mean(x: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """Mean over the last (negatives) axis, ignoring dropped negatives (0 if all dropped)."""
        if keep is None:
            return x.mean(-1)
        keep = keep.expand_as(x)
        return (x * keep).sum(-1) / keep.sum(-1).clamp(min=1.0)

    @staticmethod
    def neg_sum(x: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """Sum over the last (negatives) axis, ignoring dropped negatives."""
        return x.sum(-1) if keep is None else (x * keep.expand_as(x)).sum(-1)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
