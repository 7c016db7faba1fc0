"""DuoRec: SASRec regularised by contrastive learning between dropout views of same-target sequences."""
from typing import Dict

import torch

from recstudio.model.family.sequential import ITEM_SEQ, TARGET_SEQ
from recstudio.model.module.seq_blocks import nt_xent
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.sasrec import SASRec
from recstudio.utils.errors import ConfigError


def same_target_partners(targets: torch.Tensor) -> torch.Tensor:
    """For ``targets [P]`` (item ids), a random *other* index with the same target for each index, ``-1`` where
    the target occurs once (groups are shuffled, then each index takes the next member of its group, cyclically).

    Example:
        >>> p = same_target_partners(torch.tensor([5, 7, 5, 9]))
        >>> p[0].item(), p[2].item(), p[1].item()
        (2, 0, -1)
    """
    P = targets.numel()
    order = torch.randperm(P, device=targets.device)
    order = order[torch.sort(targets[order], stable=True).indices]  # grouped by target, random within a group
    t = targets[order]
    new_group = torch.ones(P, dtype=torch.bool, device=targets.device)
    new_group[1:] = t[1:] != t[:-1]
    group_start = torch.cummax(torch.where(new_group, torch.arange(P, device=targets.device), 0), 0).values
    ends = torch.flip(torch.cummin(torch.flip(torch.where(
        torch.cat([new_group[1:], new_group.new_ones(1)]), torch.arange(P, device=targets.device), P), [0]), 0).values,
        [0])
    pos = torch.arange(P, device=targets.device)
    nxt = torch.where(pos == ends, group_start, pos + 1)
    partner_sorted = torch.where(ends > group_start, order[nxt], torch.full_like(order, -1))
    out = torch.empty_like(partner_sorted)
    out[order] = partner_sorted
    return out


@register_model("DuoRec", category="seq",
                paper="R. Qiu, Z. Huang, H. Yin, Z. Wang. Contrastive Learning for Representation Degeneration "
                      "Problem in Sequential Recommendation. WSDM 2022.")
class DuoRec(SASRec):
    """DuoRec (Qiu et al., WSDM 2022): SASRec's encoder and next-item loss plus contrastive regularisation
    against representation degeneration.

    **Model-level augmentation**: a sequence is encoded twice, the two outputs differing only by their dropout
    masks; **supervised positive sampling**: the positive of a sequence representation is the representation of
    *another* sequence with the *same next item*. The pairs are contrasted by NT-Xent with dot-product
    similarity / ``cl_temperature`` and in-batch negatives, pairs with the same target removed from the
    negatives (:func:`~recstudio.model.module.seq_blocks.nt_xent`); ``L = L_next_item + cl_weight * L_cl``
    (the paper's DuoRec objective, its ``us_x`` setting).

    Every position of a training row is a sequence here (its prefix, with the next item as target). Anchors
    are up to ``cl_anchors`` random positions of the batch whose target occurs at another position of the
    batch; the anchor's vector comes from the first (loss) pass, its partner's -- a random other position with
    the same target (:func:`same_target_partners`) -- from a second dropout pass.

    Departures: the positive is searched among the batch's positions instead of the whole training set (with
    every position trained, frequent targets recur in a batch); at most ``cl_anchors`` anchors per batch;
    SASRec's pre-norm encoder (RecBole-style post-norm via ``norm_first: false``).

    Defaults: SASRec's settings with the paper's ``max_seq_len`` 50, dropout 0.5, ``cl_weight`` 0.1,
    ``cl_temperature`` 1; full softmax.

    Args (config keys): SASRec's and ``cl_weight``, ``cl_temperature``, ``cl_anchors``; defaults in
    ``duorec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DuoRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SASRec.option_help,
        "cl_weight": "weight lambda of the supervised contrastive loss",
        "cl_temperature": "temperature of the NT-Xent contrastive loss (> 0)",
        "cl_anchors": "most anchor positions per batch in the contrastive loss",
    }

    def build_blocks(self) -> None:
        if self.cfg("cl_temperature") <= 0:
            raise ConfigError(f"DuoRec cl_temperature must be > 0, got {self.cfg('cl_temperature')}.")
        if self.cfg("cl_anchors") < 2:
            raise ConfigError(f"DuoRec cl_anchors must be >= 2, got {self.cfg('cl_anchors')}.")
        super().build_blocks()

    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:
        out = super().sequence_output(item_seq)
        if self.training:
            self._last_output = out  # the loss pass's outputs, reused as the anchors' view
        return out

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        w = self.cfg("cl_weight")
        if w == 0:
            return loss
        h1 = self._last_output
        seq, target = batch[ITEM_SEQ], batch[TARGET_SEQ]
        has = target > 0
        tgt = target[has]
        partner = same_target_partners(tgt)
        cand = (partner >= 0).nonzero().view(-1)
        if cand.numel() < 2:
            return loss
        anchors = cand[torch.randperm(cand.numel(), device=cand.device)[:self.cfg("cl_anchors")]]
        h2 = self.sequence_output(seq)[has]
        z1, z2 = h1[has][anchors], h2[partner[anchors]]
        same = tgt[anchors][:, None] == tgt[anchors][None, :]
        return loss + w * nt_xent(z1, z2, self.cfg("cl_temperature"), same=same)
