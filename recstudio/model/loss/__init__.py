"""Loss functions sharing one keyword contract (see ``base.py`` and ``docs/losses_samplers.md``).

Every loss is registered in ``LOSSES`` under a short name and can be built by name::

    >>> from recstudio.model.loss import build_loss
    >>> build_loss("BPR")
    BPRLoss(reduction='mean')
    >>> build_loss("warp", context={"num_items": 101}, margin=0.5).num_items
    101
"""
from typing import Any, Dict, Optional, Union

from torch import nn

from recstudio.model.loss.base import REDUCTIONS, Loss
from recstudio.model.loss.ccl import CCLLoss
from recstudio.model.loss.chunked import ChunkedSoftmaxLoss
from recstudio.model.loss.gbce import GBCELoss
from recstudio.model.loss.pairwise import BPRLoss, HingeLoss, WARPLoss
from recstudio.model.loss.pointwise import BCELoss, MSELoss, PointwiseBCELoss, WRMFLoss
from recstudio.model.loss.softmax import InfoNCELoss, SampledSoftmaxLoss, SoftmaxLoss
from recstudio.model.loss.warp_exact import ExactWARPLoss
from recstudio.utils.registry import Registry

LOSSES: Registry = Registry("loss")

_ENTRIES = [
    ("softmax", SoftmaxLoss, "all_score", "full softmax cross-entropy over all items", ""),
    ("chunked_softmax", ChunkedSoftmaxLoss, "query and item vectors",
     "full softmax over item blocks: the [B, N] logits never held (bounded memory)", ""),
    ("sampled_softmax", SampledSoftmaxLoss, "negatives, logQ", "sampled softmax with logQ correction",
     "Bengio & Senécal, IEEE TNN 2008; Yi et al., RecSys 2019"),
    ("infonce", InfoNCELoss, "negatives (e.g. in-batch)", "InfoNCE with temperature",
     "van den Oord et al., arXiv 2018"),
    ("bpr", BPRLoss, "negatives", "-log sigmoid(pos - neg)", "Rendle et al., UAI 2009"),
    ("hinge", HingeLoss, "negatives", "max(0, margin - pos + neg)", ""),
    ("warp", WARPLoss, "negatives, num_items", "weighted approximate-rank pairwise",
     "Weston et al., IJCAI 2011"),
    ("warp_exact", ExactWARPLoss, "a sampler, num_items", "WARP by rejection sampling: draws until a violation "
     "or warp_max_trials", "Weston et al., IJCAI 2011"),
    ("bce", BCELoss, "negatives (or label)", "binary cross-entropy, negatives labelled 0", ""),
    ("pointwise_bce", PointwiseBCELoss, "label", "binary cross-entropy on 0/1 labels", ""),
    ("ccl", CCLLoss, "negatives", "cosine contrastive loss", "Mao et al., SimpleX, CIKM 2021"),
    ("gbce", GBCELoss, "negatives, num_items", "generalised BCE, positive term weighted by beta(t, sampling rate)",
     "Petrov & Macdonald, gSASRec, RecSys 2023"),
    ("mse", MSELoss, "label", "squared error on ratings", ""),
    ("wrmf", WRMFLoss, "label", "confidence-weighted squared error, c = 1 + alpha r",
     "Hu, Koren & Volinsky, ICDM 2008"),
]
for _name, _cls, _needs, _summary, _paper in _ENTRIES:
    LOSSES.register(_name, needs=_needs, summary=_summary, paper=_paper)(_cls)
LOSSES.register("weighted_mse", needs="label", summary="alias of 'wrmf'", paper="Hu et al., ICDM 2008")(WRMFLoss)


def build_loss(spec: Union[str, type, nn.Module], context: Optional[Dict[str, Any]] = None, **kwargs) -> Loss:
    """A loss from a registered name (any case), a class or an instance.

    Args:
        spec: e.g. ``"bpr"``, ``SampledSoftmaxLoss`` or ``SampledSoftmaxLoss(temperature=0.1)``.
        context: values offered to the constructor if it takes them (``{"num_items": n}``).
        **kwargs: constructor options; an unknown one raises ``ConfigError``.
    """
    return LOSSES.build(spec, Loss, context, **kwargs)


__all__ = ["LOSSES", "REDUCTIONS", "Loss", "build_loss", "SoftmaxLoss", "SampledSoftmaxLoss", "InfoNCELoss",
           "BPRLoss", "HingeLoss", "WARPLoss", "BCELoss", "PointwiseBCELoss", "CCLLoss", "MSELoss", "WRMFLoss",
           "GBCELoss", "ChunkedSoftmaxLoss"]
