"""Exact WARP: negatives drawn one by one through any sampler until one violates the margin."""
from typing import Callable, Optional

import torch

from recstudio.model.loss.pairwise import WARPLoss, harmonic
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


class ExactWARPLoss(WARPLoss):
    """WARP by rejection sampling (Weston, Bengio & Usunier, IJCAI 2011), the original procedure.

    For each positive, negatives are drawn from the model's sampler one at a time until one violates
    the margin (``margin - pos + neg > 0``) or ``max_trials`` draws are spent; with ``T`` the number of
    draws made, the rank is estimated as ``r = floor((Y - 1) / T)`` (``Y = num_items - 1`` real items)
    and the loss is ``L(r) · (margin - pos + neg_T)`` with ``L(r) = Σ_{i ≤ r} 1/i`` (no gradient through
    the weight); a positive without a violation contributes 0. The draws are made in rounds of
    ``chunk`` negatives for the rows still searching (scored without gradient), so a well-ranked
    positive costs up to ``max_trials`` scorings and a badly ranked one a single round; only the
    chosen negative is rescored with gradient. Draws equal to the positive are never violations.

    Unlike ``warp`` (the K sampled negatives as the trials, all scored), the number of trials is not
    bounded by ``num_neg``. The rank estimate is Weston's, unbiased for a uniform sampler; with another
    proposal it estimates the rank under that proposal. The framework calls :meth:`draw_and_score`
    (``draws_negatives``) with the model's sampler: ``uniform`` when the sampler key is
    ``masked_uniform`` or null (triplet models), any registered sampler otherwise (model-based ones
    get the batch's query vectors). Called like any negative loss (``neg_score`` [B, K] and no
    ``trials``, e.g. by a sequential model's training loss), it is ``warp``: the K negatives are the
    trials, in order.

    Args:
        num_items: catalogue size including padding (``dataset.num_items``).
        margin: the hinge margin (1 in the paper).
        max_trials: N, draws before giving up (``warp_max_trials`` key).
        chunk: draws per round.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> from recstudio.model.sampler import UniformSampler
        >>> loss = ExactWARPLoss(num_items=11, max_trials=5)
        >>> score = lambda ids: (ids == 3).float() * 5.0           # item 3 outscores the positive
        >>> out = loss.draw_and_score(UniformSampler(11, seed=0), None, torch.tensor([1]), torch.tensor([0.0]), score)
        >>> float(out) >= 0
        True
    """

    draws_negatives = True
    needs_negatives = True  # called with K given negatives (no trials), it is ``warp`` over them

    def __init__(self, num_items: int, margin: float = 1.0, max_trials: int = 100, chunk: int = 16,
                 reduction: str = "mean"):
        super().__init__(num_items, margin, reduction)
        if int(max_trials) < 1 or int(chunk) < 1:
            raise ConfigError(f"ExactWARPLoss: max_trials and chunk must be >= 1, got {max_trials}, {chunk}.")
        self.num_items, self.margin = int(num_items), float(margin)
        self.max_trials, self.chunk = int(max_trials), int(chunk)
        self._uniform = None

    def sampler_for(self, sampler):
        if sampler is not None:
            return sampler
        if self._uniform is None:
            from recstudio.model.sampler import UniformSampler
            self._uniform = UniformSampler(self.num_items)  # torch's global RNG, seeded by fit
        return self._uniform

    def draw(self, sampler, query: Optional[Tensor], pos_ids: Tensor, pos_score: Tensor,
             score_fn: Callable[[Tensor], Tensor]):
        """``(neg_ids [B], trials [B], found [B])``: the first violating draw of each row and its number."""
        sampler = self.sampler_for(sampler)
        b, dev = pos_ids.shape[0], pos_ids.device
        neg = torch.zeros(b, dtype=torch.long, device=dev)
        trials = torch.zeros(b, dtype=torch.long, device=dev)
        found = torch.zeros(b, dtype=torch.bool, device=dev)
        pos_s = pos_score.detach()
        with torch.no_grad():
            while True:
                todo = torch.nonzero(~found & (trials < self.max_trials)).flatten()
                if todo.numel() == 0:
                    break
                c = min(self.chunk, self.max_trials - int(trials[todo].min()))
                q = None if query is None else query[todo]
                _, ids, _ = sampler(q, c, pos_ids[todo], None)
                s = score_fn_rows(score_fn, todo, ids, b)
                viol = (self.margin - pos_s[todo, None] + s > 0) & (ids != pos_ids[todo, None])
                # a row may only use the draws it has left
                left = (self.max_trials - trials[todo]).clamp(max=c)
                viol &= torch.arange(c, device=dev)[None, :] < left[:, None]
                hit = viol.any(1)
                first = viol.to(torch.uint8).argmax(1)
                trials[todo] += torch.where(hit, first + 1, left)
                neg[todo[hit]] = ids[hit, first[hit]]
                found[todo[hit]] = True
        return neg, trials, found

    def draw_and_score(self, sampler, query, pos_ids, pos_score, score_fn) -> Tensor:
        neg, trials, found = self.draw(sampler, query, pos_ids, pos_score, score_fn)
        neg_score = score_fn(torch.where(found, neg, pos_ids).unsqueeze(1)).reshape(-1)
        return self(pos_score=pos_score, neg_score=neg_score.unsqueeze(1), trials=trials, found=found)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None, all_score=None,
                label=None, pos_index=None, neg_is_pos=None, trials=None, found=None) -> Tensor:
        if trials is None:  # K given negatives as the trials: the fixed-budget WARP
            return super().forward(pos_score, neg_score, neg_is_pos=neg_is_pos)
        pos = self.require("pos_score", pos_score)
        neg = self.require("neg_score", neg_score, "ExactWARPLoss scores the violating negative of each row.")
        t = trials
        hinge = self.margin - pos + neg.reshape(pos.shape)
        rank = torch.div(self.num_items - 2, t.clamp(min=1), rounding_mode="floor")
        weight = harmonic(rank).to(hinge.dtype)
        ok = found if found is not None else hinge.detach() > 0
        return self.reduce(torch.where(ok, weight * hinge, torch.zeros_like(hinge)))

    def extra_repr(self) -> str:
        return (f"num_items={self.num_items}, margin={self.margin}, max_trials={self.max_trials}, "
                f"chunk={self.chunk}, " + super().extra_repr())


def score_fn_rows(score_fn: Callable[[Tensor], Tensor], rows: Tensor, ids: Tensor, b: int) -> Tensor:
    """Scores [R, c] of ``ids`` for batch rows ``rows``: ``score_fn`` scores [B, c] ids of every row, so
    the other rows of the B get a placeholder (id 1) whose scores are discarded."""
    full = torch.ones(b, ids.shape[1], dtype=ids.dtype, device=ids.device)
    full[rows] = ids
    return score_fn(full)[rows]


__all__ = ["ExactWARPLoss"]
