"""CL4SRec: SASRec plus a contrastive loss between two augmented views (crop / mask / reorder) of a sequence."""
from typing import Dict

import torch

from recstudio.model.family.sequential import ITEM_SEQ
from recstudio.model.module.seq_blocks import nt_xent
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.sasrec import SASRec
from recstudio.utils.errors import ConfigError


def augment(seq: torch.Tensor, mask_token: int, crop: float, mask: float, reorder: float) -> torch.Tensor:
    """One random augmentation per row of the left-padded ``seq [B, L]``, chosen uniformly among
    **crop** (a random contiguous run of ``max(1, floor(crop * n))`` of the ``n`` items), **mask** (each item
    replaced by ``mask_token`` with probability ``mask``) and **reorder** (a random contiguous run of
    ``floor(reorder * n)`` items shuffled); the result is left-padded again."""
    B, L = seq.shape
    dev = seq.device
    cols = torch.arange(L, device=dev).expand(B, L)
    n = (seq != 0).sum(1)
    first = L - n  # column of the first real item
    # crop
    c = torch.clamp((crop * n).floor().long(), min=1)
    start = first + (torch.rand(B, device=dev) * (n - c + 1).float()).floor().long()
    src = start[:, None] + cols - (L - c)[:, None]
    cropped = seq.gather(1, src.clamp(0, L - 1)).masked_fill(cols < (L - c)[:, None], 0)
    # mask
    masked = seq.masked_fill((torch.rand(B, L, device=dev) < mask) & (seq != 0), mask_token)
    # reorder
    r = (reorder * n).floor().long()
    rstart = first + (torch.rand(B, device=dev) * (n - r + 1).float()).floor().long()
    inside = (cols >= rstart[:, None]) & (cols < (rstart + r)[:, None])
    key = torch.where(inside, rstart[:, None].float() + torch.rand(B, L, device=dev) * r[:, None].float(),
                      cols.float())
    reordered = seq.gather(1, key.argsort(1))
    choice = torch.randint(0, 3, (B, 1), device=dev)
    return torch.where(choice == 0, cropped, torch.where(choice == 1, masked, reordered))


@register_model("CL4SRec", category="seq",
                paper="X. Xie, F. Sun, Z. Liu, S. Wu, J. Gao, J. Zhang, B. Ding, B. Cui. Contrastive Learning for "
                      "Sequential Recommendation. ICDE 2022.")
class CL4SRec(SASRec):
    """CL4SRec (Xie et al., ICDE 2022): SASRec's encoder and next-item loss plus a contrastive term.

    Each training sequence gets two views, each by an augmentation drawn uniformly from **crop** (keep a random
    contiguous ``crop_ratio`` of the items), **mask** (replace each item by a mask token with probability
    ``mask_ratio``; the token is an extra embedding row, id ``num_items``, never scored) and **reorder**
    (shuffle a random contiguous ``reorder_ratio`` of the items) (:func:`augment`). The encoder's outputs at
    the last position of the two views, ``z1, z2``, are contrasted by NT-Xent with in-batch negatives and
    dot-product similarity / ``cl_temperature`` (:func:`~recstudio.model.module.seq_blocks.nt_xent`):

    ``L = L_next_item + cl_weight * L_cl``.

    The next-item loss is SASRec's (every position, ``loss`` key; default full softmax), evaluation too.

    Defaults: SASRec's encoder settings (2 pre-norm blocks, 1 head, d = 64, Adam 1e-3 with betas
    (0.9, 0.98), batch 128) with the paper's ``max_seq_len`` 50, ``cl_weight`` (lambda) 0.1, temperature 1,
    crop / mask / reorder ratios 0.6 / 0.3 / 0.6, dropout 0.2.

    Departures from the paper: the next-item loss is the full softmax (the paper: a sampled softmax); the two
    augmentations of a view pair are drawn independently per sequence (possibly the same operator); SASRec's
    pre-norm layout.

    Args (config keys): SASRec's and ``cl_weight``, ``cl_temperature``, ``crop_ratio``, ``mask_ratio``,
    ``reorder_ratio``; defaults in ``cl4srec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="CL4SRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SASRec.option_help,
        "cl_weight": "weight lambda of the contrastive loss",
        "cl_temperature": "temperature of the NT-Xent contrastive loss (> 0)",
        "crop_ratio": "crop augmentation: share of the items kept (a contiguous run)",
        "mask_ratio": "mask augmentation: probability of masking each item",
        "reorder_ratio": "reorder augmentation: share of the items (a contiguous run) shuffled",
    }

    @property
    def num_tokens(self) -> int:
        """``num_items + 1``: the mask token ``num_items`` of the mask augmentation has its own row."""
        return self.meta.num_items + 1

    def build_blocks(self) -> None:
        for key in ("crop_ratio", "mask_ratio", "reorder_ratio"):
            if not 0.0 <= self.cfg(key) <= 1.0:
                raise ConfigError(f"CL4SRec {key} must be in [0, 1], got {self.cfg(key)}.")
        if self.cfg("cl_temperature") <= 0:
            raise ConfigError(f"CL4SRec cl_temperature must be > 0, got {self.cfg('cl_temperature')}.")
        super().build_blocks()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        w = self.cfg("cl_weight")
        if w == 0:
            return loss
        seq = batch[ITEM_SEQ]
        c = self.config
        views = [augment(seq, self.mask_token, c["crop_ratio"], c["mask_ratio"], c["reorder_ratio"])
                 for _ in range(2)]
        z1, z2 = (self.sequence_output(v)[:, -1] for v in views)
        return loss + w * nt_xent(z1, z2, c["cl_temperature"])
