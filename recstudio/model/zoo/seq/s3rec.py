"""S3-Rec: self-supervised pre-training (AAP, MIP, MAP, SP) of a bidirectional transformer, then causal fine-tuning."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import ITEM_SEQ, SEQ_HELP, TARGET_SEQ, SequentialRecommender
from recstudio.model.module.seq_blocks import RecBoleTransformerEncoder
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import Option


def segment_views(seq: torch.Tensor, mask_token: int, generator: Optional[torch.Generator] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S3-Rec's segment-prediction inputs for left-padded rows ``seq [B, L]`` (0 = padding).

    For a row with ``n >= 2`` items: a length ``s ~ U{1..n // 2}``, a start ``a ~ U{0..n - s}`` (in item
    order); ``masked`` is the row with items ``a..a+s-1`` replaced by ``mask_token``; ``pos`` keeps only that
    segment (the row's other items become ``mask_token``); ``neg`` is ``pos`` with the segment replaced by ``s``
    consecutive items of the batch's concatenated rows from a random start (the reference code's negative).
    Rows with fewer than 2 items are returned unchanged in all three. Padding stays 0.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> m, p, n = segment_views(torch.tensor([[0, 5, 6, 7, 8]]), 9, g)
        >>> ((m == 9) == (p != 9)).logical_or(m == 0).all().item()   # the segment is masked in m, kept in p
        True
    """
    B, L = seq.shape
    dev = seq.device

    def uniform() -> torch.Tensor:
        return torch.rand(B, generator=generator).to(dev) if generator is not None else torch.rand(B, device=dev)

    real = seq != 0
    n = real.sum(1)  # [B]
    ok = n >= 2
    half = torch.clamp(n // 2, min=1)
    s = 1 + torch.minimum(torch.floor(uniform() * half).long(), half - 1)  # U{1..n // 2}
    span = (n - s).clamp(min=0)
    a = torch.minimum(torch.floor(uniform() * (span + 1)).long(), span)  # U{0..n - s}
    col = torch.arange(L, device=dev)
    first = L - n  # column of the row's first item
    in_seg = (col[None, :] >= (first + a)[:, None]) & (col[None, :] < (first + a + s)[:, None]) & ok[:, None]
    other = real & ~in_seg & ok[:, None]
    masked = seq.masked_fill(in_seg, mask_token)
    pos = seq.masked_fill(other, mask_token)
    flat = seq[real]  # every row's items, concatenated in row order
    total = flat.numel()
    room = (total - s).clamp(min=0)
    neg_start = torch.minimum(torch.floor(uniform() * (room + 1)).long(), room)
    src = (neg_start - (first + a))[:, None] + col[None, :]  # segment column -> index into flat
    neg = torch.where(in_seg, flat[src.clamp(0, max(total - 1, 0))], pos)
    return masked, pos, neg


@register_model("S3Rec", category="seq",
                paper="K. Zhou, H. Wang, W. X. Zhao, Y. Zhu, S. Wang, F. Zhang, Z. Wang, J.-R. Wen. S3-Rec: "
                      "Self-Supervised Learning for Sequential Recommendation with Mutual Information "
                      "Maximization. CIKM 2020.")
class S3Rec(SequentialRecommender):
    """S3-Rec (Zhou et al., CIKM 2020): a transformer pre-trained with four self-supervised objectives, then
    fine-tuned for next-item prediction -- both stages inside one ``fit``.

    **Stage 1, pre-training** (``pretrain_epochs`` epochs over the training rows, its own Adam with the
    training ``learning_rate`` / ``weight_decay``, run from Lightning's ``on_train_start`` before the first
    fine-tuning epoch; a ``pretrained`` buffer in the checkpoint keeps a resumed run from repeating it). The
    encoder is bidirectional; each item of a row is replaced by the mask token with probability
    ``mask_ratio``, giving ``H = enc(masked row)``; with ``A`` the attribute embeddings of ``item_attribute``
    (a token or token_seq item field, multi-hot per item):

    - AAP (associated attribute prediction): ``BCE(W_aap H_t . A, attrs(item_t))`` at unmasked items;
    - MIP (masked item prediction): ``BCE(sigma(W_mip H_t . e_pos) - sigma(W_mip H_t . e_neg), 1)`` at masked
      items, ``neg`` a uniform item outside the row;
    - MAP (masked attribute prediction): ``BCE(W_map H_t . A, attrs(item_t))`` at masked items;
    - SP (segment prediction, :func:`segment_views`): a random segment of the row is masked; the context
      ``c = enc(masked)`` at the last position should match ``enc(segment)`` better than ``enc(other segment)``:
      ``BCE(sigma(W_sp c . p) - sigma(W_sp c . n), 1)``;

    ``L_pre = aap_weight AAP + mip_weight MIP + map_weight MAP + sp_weight SP`` (sums over positions / rows, as
    the reference code).

    **Stage 2, fine-tuning**: the same encoder and item table, causal, trained at every position with the
    base's next-item loss (default full softmax, RecBole's ``CE``) and early-stopped on validation as any
    sequential model. ``pretrain_epochs: 0`` skips stage 1 (a plain bidirectional-pretrained-free transformer).

    Departures: pre-training reads one row per user (the latest ``max_seq_len + 1`` train items) instead of
    every prefix of every history; vectorised masking and segment sampling (same distributions, except that
    the negative item of MIP is redrawn up to 8 times instead of until it is outside the row); the attribute
    table has no zero row (the reference code's ``padding_idx=0`` freezes its first attribute at zero);
    the item table is Xavier-initialised (the base's) and the transformer layers keep PyTorch's init instead
    of N(0, 0.02); one ``dropout`` for hidden and attention dropout (both 0.5 in RecBole).

    Defaults: RecBole 1.2.1's S3Rec (2 layers, 2 heads, d 64, inner 256, dropout 0.5, GELU, mask ratio 0.2,
    weights 0.2 / 1 / 1 / 0.5, ``item_attribute`` ``class`` = the genres on ml-100k), ``max_seq_len`` 50,
    ``pretrain_epochs`` 100 (RecBole: 500 over its prefix-expanded data).

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``ffn_dim``, ``dropout``, ``activation``,
    ``item_attribute``, ``mask_ratio``, ``aap_weight``, ``mip_weight``, ``map_weight``, ``sp_weight``,
    ``pretrain_epochs`` and the base's keys; defaults in ``s3rec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="S3Rec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "n_layers": "number of transformer layers",
        "n_heads": "attention heads (embed_dim must be divisible by it)",
        "ffn_dim": "inner width of the feed-forward layers",
        "dropout": "dropout on the embeddings and inside the layers (hidden and attention)",
        "activation": "feed-forward activation: gelu or relu",
        "item_attribute": "item feature field (token or token_seq) predicted by AAP and MAP; null: none (then "
                          "aap_weight and map_weight must be 0)",
        "mask_ratio": "pre-training: probability that an item of a row is replaced by the mask token (MIP / MAP)",
        "aap_weight": "weight of the associated-attribute-prediction loss",
        "mip_weight": "weight of the masked-item-prediction loss",
        "map_weight": "weight of the masked-attribute-prediction loss",
        "sp_weight": "weight of the segment-prediction loss",
        "pretrain_epochs": "epochs of self-supervised pre-training before fine-tuning (0: none)",
    }

    #: ``item_attribute`` may be null (no attribute objectives)
    family_options = {**dict(getattr(SequentialRecommender, "family_options", {}) or {}),
                      "item_attribute": Option("class", (str,), "item feature field (token or token_seq) predicted "
                                               "by AAP and MAP; null: none (then aap_weight and map_weight must be 0)",
                                               nullable=True)}

    # ---- structure ---------------------------------------------------------------------------
    @property
    def needs(self) -> frozenset:
        base = set(super().needs)
        if self.config.get("item_attribute"):
            base.add("item_features")
        return frozenset(base)

    @property
    def num_tokens(self) -> int:
        """``num_items`` + the mask token (pre-training masks items in a causal model)."""
        return self.meta.num_items + 1

    def build_blocks(self) -> None:
        c = self.config
        if not 0 < c["mask_ratio"] < 1:
            raise ConfigError(f"S3Rec mask_ratio must be in (0, 1), got {c['mask_ratio']}.")
        if c["pretrain_epochs"] < 0:
            raise ConfigError(f"S3Rec pretrain_epochs must be >= 0, got {c['pretrain_epochs']}.")
        for k in ("aap_weight", "mip_weight", "map_weight", "sp_weight"):
            if c[k] < 0:
                raise ConfigError(f"S3Rec {k} must be >= 0, got {c[k]}.")
        attr = c["item_attribute"]
        if not attr and (c["aap_weight"] or c["map_weight"]):
            raise ConfigError("S3Rec: aap_weight and map_weight need an item_attribute (an item feature field); "
                              f"set item_attribute (this dataset's item fields: {sorted(self.meta.item_fields) or 'none'}) "
                              "or set both weights to 0.")
        if attr:
            spec = self.meta.item_fields.get(attr)
            if spec is None:
                raise ConfigError(f"S3Rec item_attribute {attr!r} is not an item feature field of this dataset; its "
                                  f"item fields are {sorted(self.meta.item_fields) or 'none'}.")
            if spec.type not in ("token", "token_seq"):
                raise ConfigError(f"S3Rec item_attribute {attr!r} must be a token or token_seq field, not {spec.type}.")
            if spec.size < 2:
                raise ConfigError(f"S3Rec item_attribute {attr!r} has no attribute value.")
        super().build_blocks()
        d = c["embed_dim"]
        self.n_attributes = (self.meta.item_fields[attr].size - 1) if attr else 0
        self.attribute_embedding = nn.Embedding(max(self.n_attributes, 1), d)
        nn.init.normal_(self.attribute_embedding.weight, std=0.02)
        self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("pretrained", torch.zeros((), dtype=torch.bool))
        self.pretrain_history: List[float] = []
        self._set_heads_trainable()

    def _set_heads_trainable(self) -> None:
        """The pre-training heads train only while pre-training is pending, each only if its objective is on
        (fine-tuning never reads them)."""
        c = self.config
        pending = c["pretrain_epochs"] > 0 and not bool(self.pretrained)
        attr = bool(c["item_attribute"]) and pending
        heads = [(self.attribute_embedding, attr and bool(c["aap_weight"] or c["map_weight"])),
                 (self.aap_norm, attr and bool(c["aap_weight"])), (self.map_norm, attr and bool(c["map_weight"])),
                 (self.mip_norm, pending and bool(c["mip_weight"])), (self.sp_norm, pending and bool(c["sp_weight"]))]
        for module, on in heads:
            for p in module.parameters():
                p.requires_grad_(on)

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["activation"] not in ("gelu", "relu"):
            raise ConfigError(f"S3Rec activation must be 'gelu' or 'relu', got {c['activation']!r}.")
        return RecBoleTransformerEncoder(self.num_tokens, c["embed_dim"], c["max_seq_len"], c["n_layers"],
                                         c["n_heads"], c["ffn_dim"], c["dropout"], self.item_encoder, causal=True,
                                         activation=c["activation"])

    # ---- stage 1: pre-training -----------------------------------------------------------------
    def _attributes(self, items: torch.Tensor) -> torch.Tensor:
        """Multi-hot attributes ``[*, n_attributes]`` (float) of item ids ``[*]`` (zeros for padding / mask)."""
        attr = self.config["item_attribute"]
        real = (items > 0) & (items < self.meta.num_items)
        vals = self.item_feats(items.masked_fill(~real, 0))[attr]
        if vals.dim() == items.dim():
            vals = vals.unsqueeze(-1)
        hot = torch.zeros(*items.shape, self.n_attributes + 1, device=items.device)
        hot.scatter_(-1, vals.long(), 1.0)
        return hot[..., 1:] * real.unsqueeze(-1)

    def _bidirectional(self, seq: torch.Tensor) -> torch.Tensor:
        enc = self.query_encoder.encoder
        enc.causal = False
        try:
            return enc(seq)
        finally:
            enc.causal = True

    def _negative_items(self, seq: torch.Tensor, rounds: int = 8) -> torch.Tensor:
        """One uniform item per position, redrawn (up to ``rounds`` times) while it is in the row."""
        n = self.meta.num_items
        neg = torch.randint(1, n, seq.shape, device=seq.device)
        for _ in range(rounds):
            hit = (neg.unsqueeze(-1) == seq.unsqueeze(1)).any(-1)
            if not bool(hit.any()):
                break
            neg = torch.where(hit, torch.randint(1, n, seq.shape, device=seq.device), neg)
        return neg

    def pretrain_loss(self, seq: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The four pre-training losses (and ``total``) of left-padded item rows ``seq [B, L]``."""
        c = self.config
        real = seq != 0
        masked = real & (torch.rand(seq.shape, device=seq.device) < c["mask_ratio"])
        masked_seq = seq.masked_fill(masked, self.mask_token)
        h = self._bidirectional(masked_seq)  # [B, L, d]
        zero = h.sum() * 0.0
        out = {"aap": zero, "mip": zero, "map": zero, "sp": zero}
        if c["item_attribute"] and (c["aap_weight"] or c["map_weight"]):
            attrs = self._attributes(seq)  # [B, L, A]
            table = self.attribute_embedding.weight
            if c["aap_weight"]:
                keep = real & ~masked
                s = self.aap_norm(h[keep]) @ table.t()
                out["aap"] = F.binary_cross_entropy_with_logits(s, attrs[keep], reduction="sum")
            if c["map_weight"]:
                s = self.map_norm(h[masked]) @ table.t()
                out["map"] = F.binary_cross_entropy_with_logits(s, attrs[masked], reduction="sum")
        if c["mip_weight"] and bool(masked.any()):
            q = self.mip_norm(h[masked])
            pos = torch.sigmoid((q * self.encode_items(seq[masked])).sum(-1))
            neg = torch.sigmoid((q * self.encode_items(self._negative_items(seq)[masked])).sum(-1))
            out["mip"] = F.binary_cross_entropy_with_logits(pos - neg, torch.ones_like(pos), reduction="sum")
        if c["sp_weight"]:
            m, p, n = segment_views(seq, self.mask_token)
            ctx = self.sp_norm(self._bidirectional(m)[:, -1])
            ps = torch.sigmoid((ctx * self._bidirectional(p)[:, -1]).sum(-1))
            ns = torch.sigmoid((ctx * self._bidirectional(n)[:, -1]).sum(-1))
            out["sp"] = F.binary_cross_entropy_with_logits(ps - ns, torch.ones_like(ps), reduction="sum")
        out["total"] = (c["aap_weight"] * out["aap"] + c["mip_weight"] * out["mip"] + c["map_weight"] * out["map"]
                        + c["sp_weight"] * out["sp"])
        return out

    def pretrain(self, batches) -> List[float]:
        """Stage 1 on training batches (``item_seq`` / ``target_seq`` rows of the causal dataset): each row's
        whole window (inputs + its last target) for ``pretrain_epochs`` passes; returns the mean loss per epoch
        (also in ``pretrain_history``) and sets ``pretrained``."""
        c = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=c["learning_rate"], weight_decay=c["weight_decay"])
        L = c["max_seq_len"]
        was = self.training
        self.train()
        with torch.enable_grad():
            for epoch in range(c["pretrain_epochs"]):
                if hasattr(batches, "set_epoch"):
                    batches.set_epoch(epoch)
                total, count = 0.0, 0
                for batch in batches:
                    seq, tgt = batch[ITEM_SEQ].to(self.device), batch[TARGET_SEQ].to(self.device)
                    window = torch.cat([seq, tgt[:, -1:]], 1)[:, -L:]
                    loss = self.pretrain_loss(window)["total"]
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total, count = total + float(loss.detach()), count + 1
                self.pretrain_history.append(total / max(count, 1))
                if not c.get("quiet"):
                    print(f"S3Rec pre-training epoch {epoch + 1}/{c['pretrain_epochs']}: loss {self.pretrain_history[-1]:.4f}")
        self.train(was)
        self.pretrained.fill_(True)
        self._set_heads_trainable()
        return self.pretrain_history

    def fused_epoch_blockers(self):
        # pre-training iterates the training loader itself, which fused epochs hand over as one batch
        return super().fused_epoch_blockers() + ["it reads the training loader's batches to pre-train"]

    def on_train_start(self):
        super().on_train_start()
        if self.config["pretrain_epochs"] > 0 and not bool(self.pretrained):
            self.pretrain(self.trainer.train_dataloader)
        self._set_heads_trainable()  # also after a resume: the checkpoint's buffer says pre-training is done
