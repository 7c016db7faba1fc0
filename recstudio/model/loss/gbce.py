"""gBCE: generalised binary cross-entropy for models trained with sampled negatives (gSASRec)."""
import torch
import torch.nn.functional as F

from recstudio.model.loss.base import Loss
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


class GBCELoss(Loss):
    """Generalised BCE of Petrov & Macdonald, "gSASRec: Reducing Overconfidence in Sequential
    Recommendation Trained with Negative Sampling", RecSys 2023.

    With ``K`` negatives sampled from the ``N - 1`` items that are not the positive (``N`` real items,
    i.e. ``num_items - 1`` with padding), the sampling rate is ``alpha = K / (N - 1)`` and

    ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)``  (``t = 0``: ``beta = 1``, plain BCE; ``t = 1``: ``beta = alpha``)

    and the loss of one positive is (the paper's Eq. 9, normalised by the ``K + 1`` terms)::

        loss = -(1 / (K + 1)) * (beta * log σ(pos) + Σ_k log(1 - σ(neg_k)))

    i.e. BCE with the positive's probability raised to the power ``beta``, which counteracts the
    overconfidence that negative sampling induces (the model's σ then estimates the full-catalogue
    probability better). ``K`` is the number of negatives actually given (``neg_score.shape[-1]``);
    negatives marked in ``neg_is_pos`` are dropped from the sum and from ``K + 1``.

    Args:
        num_items: catalogue size including the padding id 0 (from the dataset).
        t: calibration parameter in ``[0, 1]`` (the paper's best values are 0.75 -- 1; default 0.75).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = GBCELoss(num_items=102, t=1.0)      # alpha = 1/100 = beta
        >>> pos, neg = torch.tensor([0.0]), torch.tensor([[0.0]])
        >>> round(loss(pos, neg).item(), 4)            # (0.01 log 2 + log 2) / 2
        0.35
    """

    needs_negatives = True

    def __init__(self, num_items: int, t: float = 0.75, reduction: str = "mean"):
        super().__init__(reduction)
        if int(num_items) < 3:
            raise ConfigError(f"GBCELoss: num_items (with padding) must be >= 3, got {num_items}.")
        if not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"GBCELoss: t must be in [0, 1], got {t}.")
        self.num_items, self.t = int(num_items), float(t)

    def beta(self, num_neg: int) -> float:
        """``beta`` for ``num_neg`` negatives per positive."""
        alpha = min(1.0, num_neg / (self.num_items - 2))  # N - 1 candidates, N = num_items - 1
        return alpha * (self.t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        neg = self.negatives(pos, neg_score)
        beta = self.beta(neg.shape[-1])
        keep = self.valid(neg, neg_is_pos)
        neg_term = self.neg_sum(F.softplus(neg).expand(*pos.shape, neg.shape[-1]), keep)
        terms = 1.0 + (neg.shape[-1] if keep is None else keep.expand(*pos.shape, neg.shape[-1]).sum(-1))
        return self.reduce((beta * F.softplus(-pos) + neg_term) / terms)

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, t={self.t}, " + super().extra_repr()
