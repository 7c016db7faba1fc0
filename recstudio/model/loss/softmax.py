"""Softmax-family losses: full softmax, sampled softmax with logQ correction, InfoNCE."""
from typing import Optional

import torch

from recstudio.model.loss.base import Loss

Tensor = torch.Tensor


class SoftmaxLoss(Loss):
    """Full softmax (cross-entropy over the whole catalogue).

    ``loss = logsumexp_j(all_score[j] / τ) - all_score[pos_index] / τ``.

    The caller must make the padding item unselectable, either by setting its column of
    ``all_score`` to ``-inf`` or by constructing the loss with ``padding_idx=0`` (the loss then
    masks that column itself). The positive is ``all_score[b, pos_index[b]]``; when
    ``pos_index`` is not given, ``pos_score`` is used as the positive's logit (it must then be
    one of the columns of ``all_score``, otherwise the result is not a cross-entropy).

    Instead of the scores, a model may pass the decomposed ``query`` [P, d] and ``item_vectors``
    [N, d] (scores ``query @ item_vectors.T``, row 0 the padding item, never a candidate) with
    ``pos_index`` (``accepts_vectors``): the same value and gradients from one ``[P, N]`` buffer
    turned into the softmax and then the logits' gradient in place
    (:func:`~recstudio.model.loss.chunked.softmax_from_vectors`), about half the passes over the
    logits of the score-tensor path. The sequential family does so for inner-product and cosine scores.

    Args:
        temperature: τ, the scores are divided by it.
        padding_idx: a column of ``all_score`` to mask with ``-inf`` (e.g. ``0``); ``None`` = none.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = SoftmaxLoss(padding_idx=0)
        >>> all_score = torch.tensor([[9.0, 1.0, 0.0, 0.0]])
        >>> round(loss(all_score=all_score, pos_index=torch.tensor([1])).item(), 4)
        0.5514
    """

    needs_all_scores = True
    accepts_vectors = True

    def __init__(self, temperature: float = 1.0, padding_idx: Optional[int] = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.temperature = float(temperature)
        self.padding_idx = padding_idx

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None, query: Optional[Tensor] = None,
                item_vectors: Optional[Tensor] = None) -> Tensor:
        if all_score is None and query is not None and item_vectors is not None:
            from recstudio.model.loss.chunked import softmax_from_vectors
            pos = self.require("pos_index", pos_index, "Give pos_index with the vectors.").long()
            per_row = softmax_from_vectors(query.reshape(-1, query.shape[-1]), item_vectors, pos.reshape(-1),
                                           self.temperature)
            return self.reduce(per_row.reshape(pos.shape))
        all_score = self.require("all_score", all_score, "Full softmax scores every item: [B, N].")
        if self.padding_idx is not None:
            col = torch.arange(all_score.shape[-1], device=all_score.device) == self.padding_idx
            all_score = all_score.masked_fill(col, float("-inf"))
        logits = all_score / self.temperature
        if pos_index is not None:
            idx = pos_index.long()
            flat = idx if idx.dim() == 2 else idx.unsqueeze(-1)  # [B, P]
            target = logits.gather(-1, flat)
            target = target if idx.dim() == 2 else target.squeeze(-1)
        else:
            target = self.require("pos_index", pos_score, "Give pos_index ([B] column of the positive).")
            target = target / self.temperature
        lse = torch.logsumexp(logits, dim=-1)
        if target.dim() == 2:
            lse = lse.unsqueeze(-1)
        return self.reduce(lse - target)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, padding_idx={self.padding_idx}, " + super().extra_repr()


class SampledSoftmaxLoss(Loss):
    """Sampled softmax with logQ correction (importance-sampled softmax).

    Logits are ``[pos/τ - log_pos_prob, neg_1/τ - log_neg_prob_1, ...]`` and the loss is the
    cross-entropy with the positive as target::

        loss = logsumexp([pos/τ - log q(pos), neg_k/τ - log q(neg_k)]) - (pos/τ - log q(pos))

    A log-probability that is not given is not corrected (``0``), so without proposal
    probabilities this is the plain sampled softmax. Negatives marked in ``neg_is_pos``
    (accidental hits) are dropped (logit ``-inf``). With a uniform proposal the correction
    shifts every logit by the same constant and the loss is unchanged; with *all* other items
    as negatives (no correction) it equals the full softmax.

    Papers: Bengio & Senécal, "Adaptive importance sampling to accelerate training of a neural
    probabilistic language model", IEEE TNN 2008; Yi et al., "Sampling-bias-corrected neural
    modeling for large corpus item recommendations", RecSys 2019.

    Args:
        temperature: τ, scores are divided by it before the correction.
        logq: apply the logQ correction when probabilities are given (sets ``uses_logq``).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = SampledSoftmaxLoss()
        >>> pos, neg = torch.tensor([2.0]), torch.tensor([[1.0, 0.0]])
        >>> lq = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(loss(pos, neg, torch.log(torch.tensor([0.5])), lq).item(), 4)
        0.4076
    """

    needs_negatives = True
    uses_logq = True

    def __init__(self, temperature: float = 1.0, logq: bool = True, reduction: str = "mean"):
        super().__init__(reduction)
        self.temperature = float(temperature)
        self.logq = bool(logq)
        self.uses_logq = self.logq

    def logits(self, pos_score, neg_score, log_pos_prob=None, log_neg_prob=None, neg_is_pos=None):
        """The corrected (pos [S], neg [S, K]) logits."""
        pos = self.require("pos_score", pos_score) / self.temperature
        neg = self.negatives(pos_score, neg_score) / self.temperature
        if self.logq and log_pos_prob is not None:
            pos = pos - log_pos_prob
        if self.logq and log_neg_prob is not None:
            neg = neg - self.negatives(pos_score, log_neg_prob, "log_neg_prob")
        if neg_is_pos is not None:
            keep = self.valid(neg, neg_is_pos)
            neg = neg.masked_fill(keep.expand_as(neg) == 0, float("-inf"))
        return pos, neg

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        pos, neg = self.logits(pos_score, neg_score, log_pos_prob, log_neg_prob, neg_is_pos)
        neg = neg.expand(*pos.shape, neg.shape[-1])
        lse = torch.logsumexp(torch.cat([pos.unsqueeze(-1), neg], dim=-1), dim=-1)
        return self.reduce(lse - pos)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, logq={self.logq}, " + super().extra_repr()


class InfoNCELoss(SampledSoftmaxLoss):
    """InfoNCE: softmax cross-entropy of the positive against negatives, with temperature τ.

    Two input forms:

    * ``pos_score`` [B] and ``neg_score`` [B, K]: e.g. the in-batch sampler's [B, B-1]
      negatives (the positives of the other rows). Same as ``SampledSoftmaxLoss`` with
      temperature τ and, by default, no logQ correction (``logq=True`` turns it on).
    * ``all_score`` [B, M] (when ``neg_score`` is not given): a matrix of the batch's queries
      against M candidates whose positive is column ``pos_index`` (default: the diagonal,
      ``pos_index = arange(B)``, i.e. query b against the B positives of the batch), so
      ``loss_b = logsumexp_j(all_score[b, j]/τ) - all_score[b, pos_index[b]]/τ``.

    Paper: van den Oord, Li & Vinyals, "Representation learning with contrastive predictive
    coding", arXiv:1807.03748, 2018.

    Args:
        temperature: τ (default 0.1).
        logq: apply logQ correction to ``neg_score`` inputs when probabilities are given.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> loss = InfoNCELoss(temperature=1.0)
        >>> batch = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # query x in-batch positives
        >>> round(loss(all_score=batch).item(), 4)
        0.1269
    """

    uses_logq = False  # default; logq=True turns it on for the instance

    def __init__(self, temperature: float = 0.1, logq: bool = False, reduction: str = "mean"):
        super().__init__(temperature=temperature, logq=logq, reduction=reduction)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None) -> Tensor:
        if neg_score is None and all_score is not None:
            if pos_index is None:
                pos_index = torch.arange(all_score.shape[0], device=all_score.device)
            logits = all_score / self.temperature
            target = logits.gather(-1, pos_index.long().unsqueeze(-1)).squeeze(-1)
            return self.reduce(torch.logsumexp(logits, dim=-1) - target)
        return super().forward(pos_score, neg_score, log_pos_prob, log_neg_prob, neg_is_pos=neg_is_pos)
