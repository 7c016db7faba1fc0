"""Pairwise ranking losses over a positive and K sampled negatives: BPR, hinge, WARP."""
import torch
import torch.nn.functional as F

from recstudio.model.loss.base import Loss
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor
EULER_GAMMA = 0.5772156649015329


class BPRLoss(Loss):
    """Bayesian personalised ranking: ``-log σ(pos - neg_k)``, averaged over the K negatives.

    Paper: Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian personalized
    ranking from implicit feedback", UAI 2009.

    Args:
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` over the positives.

    Example:
        >>> loss = BPRLoss()
        >>> round(loss(torch.tensor([1.0]), torch.tensor([[1.0, 0.0]])).item(), 4)
        0.5032
    """

    needs_negatives = True

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        neg = self.negatives(pos, neg_score)
        loss = -F.logsigmoid(pos.unsqueeze(-1) - neg)
        return self.reduce(self.neg_mean(loss, self.valid(neg, neg_is_pos)))


class HingeLoss(Loss):
    """Margin ranking loss: ``max(0, margin - pos + neg_k)``, averaged over the K negatives.

    Args:
        margin: the required gap between the positive's and a negative's score.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = HingeLoss(margin=1.0)
        >>> loss(torch.tensor([1.0]), torch.tensor([[0.5, -1.0]])).item()
        0.25
    """

    needs_negatives = True

    def __init__(self, margin: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = float(margin)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        neg = self.negatives(pos, neg_score)
        loss = torch.relu(self.margin - pos.unsqueeze(-1) + neg)
        return self.reduce(self.neg_mean(loss, self.valid(neg, neg_is_pos)))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, " + super().extra_repr()


def harmonic(n: Tensor) -> Tensor:
    """``H(n) = sum_{i=1..n} 1/i`` for integer tensors (``H(0) = 0``), via the digamma function."""
    return torch.special.digamma(n.double() + 1.0) + EULER_GAMMA


class WARPLoss(Loss):
    """Weighted approximate-rank pairwise loss.

    The K sampled negatives are the *trials*, in order. For each positive the first negative
    ``k*`` that violates the margin (``margin - pos + neg > 0``) is found; the positive's rank
    is estimated as ``r = floor((Y - 1) / (k* + 1))`` where ``Y = num_items - 1`` is the number
    of real items (``num_items`` counts the padding id 0, as everywhere in RecStudio), and the
    loss is ``L(r) * (margin - pos + neg_k*)`` with ``L(r) = sum_{i=1..r} 1/i`` (a constant, no
    gradient). A positive with no violating negative contributes 0. Accidental hits
    (``neg_is_pos``) are never chosen as the violating negative.

    Paper: Weston, Bengio & Usunier, "WSABIE: Scaling up to large vocabulary image
    annotation", IJCAI 2011.

    Args:
        num_items: catalogue size including padding (``dataset.num_items``).
        margin: the hinge margin (1 in the paper).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = WARPLoss(num_items=11)  # 10 real items
        >>> # first violation at trial 2: r = floor(9 / 2) = 4, L(4) = 25/12
        >>> round(loss(torch.tensor([1.0]), torch.tensor([[-1.0, 0.5, 2.0]])).item(), 4)
        1.0417
    """

    needs_negatives = True

    def __init__(self, num_items: int, margin: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        if num_items is None or int(num_items) < 3:
            raise ConfigError(f"WARPLoss needs num_items >= 3 (the catalogue size including padding 0), got {num_items!r}.")
        self.num_items = int(num_items)
        self.margin = float(margin)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos = self.require("pos_score", pos_score)
        neg = self.negatives(pos, neg_score)
        hinge = self.margin - pos.unsqueeze(-1) + neg  # [S, K]
        violated = hinge.detach() > 0
        keep = self.valid(neg, neg_is_pos)
        if keep is not None:
            violated = violated & (keep.expand_as(violated) > 0)
        found = violated.any(-1)
        first = violated.to(torch.uint8).argmax(-1)  # index of the first violation (first max)
        trials = first + 1
        rank = torch.div(self.num_items - 2, trials, rounding_mode="floor")
        weight = harmonic(rank).to(hinge.dtype)
        chosen = hinge.gather(-1, first.unsqueeze(-1)).squeeze(-1)
        loss = torch.where(found, weight * chosen, torch.zeros_like(chosen))
        return self.reduce(loss)

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, margin={self.margin}, " + super().extra_repr()

