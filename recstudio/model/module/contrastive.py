"""Contrastive (InfoNCE) terms shared by the self-supervised graph models (SGL, SimGCL, XSimGCL, NCL, LightGCL).

All of them contrast two views of the same node: the positive pair is a node's vector in view 1 and its
vector in view 2, the negatives are other nodes' view-2 vectors (the batch's, or every node's). The loss is
:class:`recstudio.model.loss.InfoNCELoss` on the ``[B, M]`` similarity matrix, so the softmax arithmetic
lives in one place (``logsumexp`` form: stable at small temperatures).

Example:
    >>> import torch
    >>> z = torch.eye(3)
    >>> round(view_infonce(z, z, temperature=1.0).item(), 4)        # each row's positive scores 1, others 0
    0.5514
    >>> view_infonce(z, z, temperature=0.1, candidates=torch.eye(3)[:2], pos_index=torch.tensor([0, 1, 1])).shape
    torch.Size([])
"""
from typing import Optional

import torch
import torch.nn.functional as F

from recstudio.model.loss import InfoNCELoss


def view_infonce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
                 candidates: Optional[torch.Tensor] = None, pos_index: Optional[torch.Tensor] = None,
                 normalize: bool = True, reduction: str = "mean", pos_clamp: Optional[float] = None
                 ) -> torch.Tensor:
    """InfoNCE of ``anchor`` ``[B, d]`` against its ``positive`` ``[B, d]`` (row b with row b).

    Args:
        anchor, positive: the two views of the same B nodes.
        temperature: τ.
        candidates: ``[M, d]`` vectors the anchors are contrasted with (e.g. every node's view-2 vector, SGL);
            ``None`` = in-batch: the B positives themselves (SimGCL / XSimGCL).
        pos_index: ``[B]`` row of ``candidates`` holding each anchor's positive; with ``candidates`` given and
            ``pos_index`` None, the positive score ``anchor . positive`` is placed in front of the candidates
            (the candidates then hold negatives only).
        normalize: L2-normalise every vector first (cosine similarity); LightGCL contrasts raw vectors.
        reduction: ``mean`` | ``sum`` | ``none`` over the B anchors.
        pos_clamp: if given (with ``candidates`` and ``pos_index``), the positive's logit in the numerator is
            clamped to ``[-pos_clamp, pos_clamp]`` (LightGCL's code; the denominator keeps it unclamped).
    """
    if normalize:
        anchor, positive = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1)
        if candidates is not None:
            candidates = F.normalize(candidates, dim=-1)
    loss = InfoNCELoss(temperature=temperature, reduction=reduction)
    if candidates is None:
        return loss(all_score=anchor @ positive.T)
    if pos_clamp is not None:
        if pos_index is None:
            raise ValueError("pos_clamp needs candidates and pos_index")
        logits = anchor @ candidates.T / temperature
        target = (anchor * positive).sum(-1) / temperature
        return loss.reduce(torch.logsumexp(logits, -1) - target.clamp(-pos_clamp, pos_clamp))
    if pos_index is None:
        pos = (anchor * positive).sum(-1, keepdim=True)
        scores = torch.cat([pos, anchor @ candidates.T], 1)
        return loss(all_score=scores, pos_index=torch.zeros(anchor.shape[0], dtype=torch.long,
                                                             device=anchor.device))
    return loss(all_score=anchor @ candidates.T, pos_index=pos_index)
