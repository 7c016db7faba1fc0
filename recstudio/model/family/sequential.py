"""``SequentialRecommender``: the base of next-item models over a user's item sequence.

A sequential model encodes the user's latest items ``item_seq [B, L]`` (left-padded: the latest
item is in the last column, 0 = padding) into one vector per position ``[B, L, d]``; the output
at a position scores items with the item tower (``score_func`` against the *same* item embedding
table that embeds the input, as in SASRec / BERT4Rec / GRU4Rec). The base does everything else:

- **training at every position at once** from :class:`~recstudio.data.types.seq2seq.Seq2SeqDataset`
  (one row per user): ``seq_mode = 'causal'`` predicts the next item at each position (SASRec,
  GRU4Rec); ``seq_mode = 'cloze'`` masks a share ``mask_ratio`` of the positions with the mask token
  ``num_items`` and predicts the original items there (BERT4Rec);
- **any loss**: ``softmax`` (full softmax), ``sampled_softmax`` (logQ-corrected with any sampler:
  ``uniform``, ``popularity``, ``inbatch``, ``masked_uniform``), ``bpr``, ``bce``, ``gbce``
  (gSASRec's generalised BCE, calibrated by ``gbce_t`` and the sampling rate), ``infonce``, ...;
  sampled negatives that hit an item of the row's window are ignored by the loss
  (``masked_uniform`` never draws them);
- optional **item features**: the fields listed in ``item_feature_fields`` are embedded
  (:class:`~recstudio.model.module.features.FeatureEncoder`) and added to the item id embedding,
  for the input sequence and the scored items alike (the model then ``needs`` ``item_features``);
- **evaluation and ``recommend``** encode the user's latest ``max_seq_len`` known items and score
  with the output at the last position (cloze models append the mask token and read its output).

Hooks a model overrides: :meth:`_get_sequence_encoder` (required: a module mapping
``item_seq [B, L]`` to ``[B, L, d]``, zeros at padding, embedding its input with
``self.item_encoder``); optionally ``seq_mode`` (class attribute), ``_get_item_encoder``,
``_get_score_func``, ``_get_loss_func`` and ``_get_sampler`` as in any item-tower model.

Config keys every sequential model's YAML declares (help in :data:`SEQ_HELP`): ``embed_dim``,
``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``,
``item_feature_fields`` (+ ``mask_ratio`` for cloze models).

Example:
    >>> from recstudio.model.module.sequence import GRUSeqEncoder
    >>> class MyGRU(SequentialRecommender):                            # doctest: +SKIP
    ...     option_help = {**SEQ_HELP, "hidden_dim": "GRU state size"}
    ...     def _get_sequence_encoder(self):
    ...         return GRUSeqEncoder(self.num_tokens, self.cfg("embed_dim"), self.cfg("hidden_dim"),
    ...                              item_embedding=self.item_encoder)

(plus ``@register_model`` and a YAML; see ``docs/adding_a_model/sequential.md``).
"""
from typing import Dict, List, Optional

import torch
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, ItemTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import Option

ITEM_SEQ, TARGET_SEQ, TIME_SEQ = "item_seq", "target_seq", "time_seq"
SEQ_MODES = ("causal", "cloze")

#: help text of the keys sequential models declare in their YAML
SEQ_HELP = {
    **TOWER_HELP,
    "max_seq_len": "longest input sequence (the latest items are kept, in training and evaluation)",
    "num_neg": "negatives per position for negative-based losses",
    "sampler": "negative sampler for negative-based losses: masked_uniform (uniform over items outside the "
               "row's sequence window), uniform, popularity, inbatch (the other positions' targets), mixed "
               "(in-batch + uniform), shared_uniform (one set for the whole batch), or a model-based one "
               "(cluster_uni, cluster_pop, midx_uni, midx_pop, sir, dns, retriever)",
    "gbce_t": "calibration t of the gbce loss (gSASRec): beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha the "
              "sampling rate num_neg / (items - 1); t = 1 is BCE's full calibration, t = 0 plain BCE "
              "(used only with loss: gbce)",
    "item_feature_fields": "item feature fields whose embeddings are added to the item id embedding (inputs and "
                           "scored items); [] for ids only",
    "mask_ratio": "cloze training: share of the positions masked (at least one per sequence)",
}
TRAIN_EXAMPLES = ("sequence", "prefix")
#: keys every sequential model accepts without listing them in its YAML (``family_options``)
SEQ_OPTIONS = {
    "train_examples": Option(
        "sequence", (str,), "training rows: 'sequence' (one row per user: its latest max_seq_len + 1 train items, "
        "the next item predicted at every position) or 'prefix' (causal models: one row per train interaction after "
        "the user's first, predicted from the max_seq_len items before it: the prefix expansion of the session-based "
        "papers and RecBole; every train item is a target with a full-length history, at the cost of more rows per "
        "epoch)", choices=TRAIN_EXAMPLES),
}


class ItemWithFeatures(nn.Module):
    """Item id embedding plus the embedded item features of the id (zero for padding and the mask token).

    Args:
        id_embedding: the id table (``num_tokens`` rows).
        features: the model's item :class:`~recstudio.model.base.context.FeatureStore`.
        fields: field name -> :class:`~recstudio.model.base.context.FieldSpec` of the fields to add.
        num_items: ids ``>= num_items`` (the mask token) have no features.
    """

    def __init__(self, id_embedding: IdEmbedding, features: nn.Module, fields: Dict, num_items: int):
        super().__init__()
        from recstudio.model.module.features import FeatureEncoder
        self.embedding_table = id_embedding
        self.features = [features]  # a plain list: the store stays registered only on the model
        self.num_items = int(num_items)
        self.encoder = FeatureEncoder({n: (s.type, s.size) for n, s in fields.items()}, id_embedding.dim)
        self.dim = id_embedding.dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids > 0) & (ids < self.num_items)
        feats = self.features[0](ids.masked_fill(~real, 0))
        out = self.embedding_table(ids)
        return out + self.encoder(feats) * real.unsqueeze(-1).to(out.dtype)


class SequenceQuery(nn.Module):
    """Query encoder: the sequence encoder's output at the latest position of the left-padded ``item_seq``
    (cloze models: at a mask token appended after it, the oldest item dropped if the input is full).
    With ``uses_time`` the encoder also gets the items' timestamps (``time_seq``; the mask token takes the
    latest item's time)."""

    def __init__(self, encoder: nn.Module, mode: str, mask_token: int, max_len: int, uses_time: bool = False):
        super().__init__()
        self.encoder = encoder
        self.mode, self.mask_token, self.max_len = mode, int(mask_token), int(max_len)
        self.uses_time = bool(uses_time)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        seq = batch[ITEM_SEQ]
        times = batch.get(TIME_SEQ) if self.uses_time else None
        if self.uses_time and times is None:
            raise ConfigError("this model reads the items' timestamps, but the batch has no time_seq; build its "
                              "batches with the model's own datasets (with_time=True).")
        if self.mode == "cloze":
            mask = torch.full((seq.size(0), 1), self.mask_token, dtype=seq.dtype, device=seq.device)
            seq = torch.cat([seq, mask], 1)
            if times is not None:
                times = torch.cat([times, times[:, -1:]], 1)
        seq = seq[:, -self.max_len:]
        hidden = self.encoder(seq) if times is None else self.encoder(seq, times[:, -self.max_len:])
        return hidden[:, -1].masked_fill(~(seq != 0).any(-1, keepdim=True), 0.0)


class SequentialRecommender(ItemTowerRecommender):
    """Next-item models over the user's latest ``max_seq_len`` items (see the module docstring).

    Class attributes: ``seq_mode`` (``'causal'`` or ``'cloze'``); ``uses_time`` (default False): the encoder
    is called as ``encoder(item_seq, time_seq)`` with the items' timestamps (float64 ``[B, L]``, 0 at
    padding), which every training and evaluation batch then carries (the model ``needs`` ``history_times``
    so that ``recommend`` has them too; the dataset needs a time field).
    """

    base_name = "Sequential"
    dataset_type = "seq2seq"
    seq_mode = "causal"
    uses_time = False
    option_help = dict(SEQ_HELP)
    family_options = dict(SEQ_OPTIONS)

    # ---- what the model needs ----------------------------------------------------------------
    @property
    def needs(self) -> frozenset:
        """``item_features`` when ``item_feature_fields`` lists fields; ``history_times`` for ``uses_time``."""
        return frozenset({"item_features"} if self.feature_fields() else set()) | frozenset(
            {"history_times"} if self.uses_time else set())

    def feature_fields(self) -> List[str]:
        return list(self.cfg("item_feature_fields") or [])

    @property
    def num_tokens(self) -> int:
        """Rows of the item embedding: ``num_items`` (+1 for the cloze mask token ``num_items``)."""
        return self.meta.num_items + (1 if self.seq_mode == "cloze" else 0)

    @property
    def mask_token(self) -> int:
        return self.meta.num_items

    # ---- hooks -------------------------------------------------------------------------------
    def _get_sequence_encoder(self) -> nn.Module:
        """The module ``item_seq [B, L] -> [B, L, d]`` (zeros at padding), embedding items with
        ``self.item_encoder``."""
        raise ConfigError(f"{type(self).__name__} must define _get_sequence_encoder().")

    def _get_item_encoder(self) -> nn.Module:
        table = IdEmbedding(self.num_tokens, self.cfg("embed_dim"), init="xavier", sparse=self.sparse_embeddings)
        names = self.feature_fields()
        if not names:
            return table
        available = self.meta.item_fields
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ConfigError(f"item_feature_fields {unknown} are not item feature fields of this dataset; "
                              f"its item fields are {sorted(available) or 'none'}.")
        return ItemWithFeatures(table, self.item_feats, {n: available[n] for n in names}, self.meta.num_items)

    def _get_query_encoder(self) -> nn.Module:
        return SequenceQuery(self._get_sequence_encoder(), self.seq_mode, self.mask_token, self.cfg("max_seq_len"),
                             uses_time=self.uses_time)

    def _get_loss_func(self):
        from recstudio.model.loss import LOSSES, build_loss
        from recstudio.model.loss.gbce import GBCELoss
        spec = self.cfg("loss")
        if spec is None:
            return None
        kwargs = {}
        if isinstance(spec, str) and spec in LOSSES and LOSSES.get(spec) is GBCELoss:
            kwargs["t"] = self.cfg("gbce_t", 0.75)
        return build_loss(spec, context=self._block_context(), **kwargs)

    def _train_examples(self) -> str:
        return self.cfg("train_examples", "sequence")

    def _get_dataset_class(self):
        """``seq2seq`` (one row per user), or ``seq`` with ``target_seq`` for ``train_examples: prefix``."""
        from recstudio.data.types import DATASET_TYPES
        return DATASET_TYPES["seq" if self._train_examples() == "prefix" else self.dataset_type]

    def _dataset_kwargs(self):
        if self._train_examples() == "prefix":
            return {"max_seq_len": self.cfg("max_seq_len"), "padding": "left", "target_seq": True,
                    "with_time": self.uses_time}
        kwargs = {"max_seq_len": self.cfg("max_seq_len"), "mode": self.seq_mode, "padding": "left",
                  "with_time": self.uses_time}
        if self.seq_mode == "cloze":
            kwargs.update(mask_ratio=self.cfg("mask_ratio"), mask_token=self.mask_token)
        return kwargs

    def _eval_seq_len(self):
        # cloze: the appended mask token takes the last of the max_seq_len input positions
        return self.cfg("max_seq_len") - (1 if self.seq_mode == "cloze" else 0)

    def build_blocks(self) -> None:
        if self.seq_mode not in SEQ_MODES:
            raise ConfigError(f"{type(self).__name__}.seq_mode must be one of {SEQ_MODES}, got {self.seq_mode!r}.")
        if self._train_examples() == "prefix" and self.seq_mode != "causal":
            raise ConfigError(f"train_examples='prefix' trains next-item prediction; {type(self).__name__} is a "
                              f"{self.seq_mode} model. Use train_examples='sequence'.")
        if self.seq_mode == "cloze" and self.cfg("max_seq_len") < 2:
            raise ConfigError("cloze models need max_seq_len >= 2 (one position holds the mask token at evaluation).")
        super().build_blocks()
        name = self.model_name
        if self.loss_fn is None:
            raise ConfigError(f"{name} needs a loss: set loss (e.g. softmax, sampled_softmax, bce, gbce, bpr).")
        if self.loss_fn.pointwise:
            raise ConfigError(f"{name} trains on next / masked items without labels; loss {self.cfg('loss')!r} is "
                              "pointwise. Use softmax, sampled_softmax, bce, gbce or bpr.")
        if self.loss_fn.needs_negatives and self.sampler is None:
            raise ConfigError(f"loss {self.cfg('loss')!r} needs negatives: set sampler (masked_uniform, uniform, "
                              "popularity, inbatch, mixed, shared_uniform or a model-based one such as midx_uni).")

    # ---- training ----------------------------------------------------------------------------
    def sequence_output(self, item_seq: torch.Tensor, time_seq: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The encoder's output ``[B, L, d]`` at every position of ``item_seq`` (with the items' timestamps
        ``time_seq`` for a ``uses_time`` model)."""
        if self.uses_time:
            if time_seq is None:
                raise ConfigError(f"{self.model_name} reads the items' timestamps: pass time_seq with item_seq.")
            return self.query_encoder.encoder(item_seq, time_seq)
        return self.query_encoder.encoder(item_seq)

    def position_output(self, item_seq: torch.Tensor, positions: torch.Tensor,
                        time_seq: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[P, d]``: the encoder's output at the True positions of ``positions [B, L]`` (row-major order).
        A model whose encoder cannot serve every position in one pass overrides it to compute only these."""
        if time_seq is None:
            return self.sequence_output(item_seq)[positions]
        return self.sequence_output(item_seq, time_seq)[positions]

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss at every position with a target (``target_seq > 0``: the next item (causal) or the
        masked item (cloze)), averaged over those positions."""
        seq, target = batch[ITEM_SEQ], batch[TARGET_SEQ]
        has_target = target > 0
        if self.uses_time:
            query = self.position_output(seq, has_target, batch[TIME_SEQ])  # [P, d]
        else:
            query = self.position_output(seq, has_target)
        pos_ids = target[has_target]  # [P]
        loss = self.loss_fn
        inputs = {"pos_score": self.score_func(query, self.encode_items(pos_ids))}
        # chunked_softmax needs the vectors, not the [P, N] scores; softmax takes them when they decompose
        by_vectors = getattr(loss, "needs_vectors", False) or (
            getattr(loss, "accepts_vectors", False) and getattr(self.score_func, "metric", None) in ("ip", "cosine"))
        if by_vectors:
            from recstudio.model.loss.chunked import decomposed_vectors
            q, v = decomposed_vectors(self.score_func, query, self.item_vectors())
            inputs.update(query=q, item_vectors=v, pos_index=pos_ids)
        elif loss.needs_all_scores:
            all_score = self.score_func.score_all(query, self.item_vectors())
            all_score[:, 0] = float("-inf")
            inputs.update(all_score=all_score, pos_index=pos_ids)
        if loss.needs_negatives:
            from recstudio.model.sampler import InBatchSampler, accidental_hits, is_shared
            k = self.cfg("num_neg")
            if isinstance(self.sampler, InBatchSampler):  # the other positions' targets
                log_pos, neg_ids, log_neg = self.sampler(query, k, pos_ids)
                neg_is_pos = neg_ids == pos_ids[:, None]
            elif getattr(self.sampler, "needs_query", False):  # model-based: one query per position
                window = seq.masked_fill(seq >= self.meta.num_items, 0)
                log_pos, neg_ids, log_neg = self.sampler(query, k, pos_ids)
                rows = torch.nonzero(has_target)[:, 0]
                neg_is_pos = accidental_hits(neg_ids, pos_ids, window[rows])
            else:  # per row: the targets [B, L] as positives, the row's (unmasked) inputs as history
                window = seq.masked_fill(seq >= self.meta.num_items, 0)
                log_pos, neg_ids, log_neg = self.sampler(None, k, target, window)
                if is_shared(neg_ids):  # one set of K items for every position: one [P, K] product
                    shared = neg_ids.reshape(-1, neg_ids.shape[-1])[0]
                    neg_ids = shared.expand(len(pos_ids), -1)
                    log_neg = log_neg.reshape(-1, len(shared))[:1].expand(len(pos_ids), -1)
                    neg_is_pos = shared[None, :] == pos_ids[:, None]
                    log_pos = log_pos[has_target]
                else:
                    neg_is_pos = accidental_hits(neg_ids, target, window)[has_target]
                    neg_ids, log_pos, log_neg = neg_ids[has_target], log_pos[has_target], log_neg[has_target]
            if is_shared(neg_ids):
                inputs["neg_score"] = self.score_func.score_all(query, self.encode_items(neg_ids[0]))
            else:
                inputs["neg_score"] = self.score_func(query, self.encode_items(neg_ids))
            inputs["neg_is_pos"] = neg_is_pos
            if loss.uses_logq:
                inputs.update(log_pos_prob=log_pos.to(query.dtype), log_neg_prob=log_neg.to(query.dtype))
        return loss(**inputs)
