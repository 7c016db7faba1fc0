"""The FEATURE family: context-aware click-through-rate (CTR) models over one embedding per field.

A :class:`FeatureRecommender` turns every row ``(user, item, context)`` into field vectors
``[*, F, d]`` (:class:`~recstudio.model.module.FieldEmbedding`: a table per token field, pooled
token_seq fields, ``value * v`` for floats) plus a first-order term ``b + sum_f w_f``, and predicts a
click logit. Its models override one hook:

``interaction(emb)``
    ``[*, F, d] -> [*]``: what the model adds to the first-order term (FM: the pairwise term;
    DeepFM: pairwise + an MLP over the concatenated fields). ``build_interaction()`` creates its blocks
    (``self.num_fields``, ``self.embed_dim`` are known by then).

Fields. The user id, the item id, the user / item feature fields (``.user`` / ``.item`` tables, used
when the data has them: the model then builds its context with ``user_features`` / ``item_features``
and gathers them from :class:`~recstudio.model.base.context.FeatureStore` buffers by id, on its own
device) and the context fields: the interaction columns other than user, item, rating, time and the
label. ``feature_fields`` selects some of them (default: all). A token_seq field ``x`` with a float_seq
field ``x_weight`` of the same width is pooled with those weights (``sum_j w_j e_j``), else averaged.

Batches carry exactly the used fields: the training and evaluation rows come from a
:class:`FieldRowsDataset` (a :class:`~recstudio.data.types.TripletDataset` that joins no feature
table and keeps only the id, label and used context columns).

Task (``eval_task = 'ctr'``): the label of a row is ``label_field`` (a 0/1 column), else
``rating >= label_threshold``, else the interactions' ``label`` column; training minimises pointwise
BCE (``loss: pointwise_bce``); validation / test report ``auc``, ``gauc`` (per-user AUC) and
``logloss`` on the phase's rows, early stopping on valid ``auc`` (higher is better).

Training options every feature model takes (``FEATURE_OPTIONS``, validated when the model is created; a
model whose training cannot honour one refuses it): ``pos_weight`` (weight of the positive rows' BCE term),
``neg_sample_rate`` (keep each negative training row with probability ``r``, a fixed draw of the seed, and
predict calibrated probabilities ``p = q / (q + (1 - q) / r)``, He et al. 2014), ``embed_dim`` (an int, a
dict ``field -> dim``, or ``auto``: :func:`~recstudio.model.module.field_embedding.auto_dim`), ``embed_l2``
(per-field L2 on the embedding rows the batch reads) and ``embed_reg`` (L2 on the whole tables). Gradient
clipping is the training key ``gradient_clip`` (Lightning's ``gradient_clip_val``, by norm).

Top-k. The same model ranks every item for a user (``score_all_candidates``: the user's fields,
every item's fields and the batch's context fields, or padding when the batch has none), so
``recommend()`` works as for any model.

Example:
    >>> from recstudio.model.family.feature import FeatureRecommender
    >>> class LR(FeatureRecommender):          # logistic regression: first-order term only
    ...     def interaction(self, emb):
    ...         return emb.new_zeros(emb.shape[:-2])
"""
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.context import FeatureStore, ModelContext, check_needs
from recstudio.model.base.recommender import Recommender
from recstudio.model.family.feature_options import (  # noqa: F401 (re-exported)
    DEFAULT_ENTRY, FEATURE_HELP, FEATURE_OPTIONS, LOSS_OPTIONS, _applied_loss_options, _is_set, calibrate,
    check_feature_options)
from recstudio.model.family.feature_rows import HISTORY_POS, FieldRowsDataset  # noqa: F401
from recstudio.model.family.feature_table import TableMixin  # [ctr-pipeline hook] fit_table / update
from recstudio.model.module.field_embedding import FieldEmbedding, auto_dim
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

#: the interaction column taken as the label when neither label_field nor label_threshold is set
DEFAULT_LABEL = "label"
#: suffix of a float_seq field holding the pooling weights of the token_seq field it is named after
WEIGHT_SUFFIX = "_weight"


class _Field:
    """A used field: batch / embedding key, owner (user, item, context), source column, type, size."""

    def __init__(self, key: str, owner: str, source: str, ftype: str, size: int):
        self.key, self.owner, self.source, self.type, self.size = key, owner, source, ftype, int(size)

    def __repr__(self) -> str:
        return f"{self.key}({self.owner}:{self.type}[{self.size}])"


class FeatureRecommender(TableMixin, Recommender):
    """Base of the CTR models: field embeddings, first-order term, pointwise training, auc / gauc /
    logloss evaluation, and full ranking for top-k (see the module docstring).

    Subclasses implement :meth:`interaction` (and create blocks in :meth:`build_interaction`).
    """

    base_name = "Feature"
    dataset_type = "triplet"
    eval_task = "ctr"
    option_help = dict(FEATURE_HELP)
    #: keys every feature model takes (the config layer adds them to each model's own keys)
    family_options = dict(FEATURE_OPTIONS)
    #: a model overriding ``training_loss`` without calling ``super().training_loss`` lists here the
    #: :data:`LOSS_OPTIONS` its loss applies (with :meth:`ctr_loss`, :meth:`embedding_row_penalty`); the others
    #: are refused when set. Not declared: inferred (all when the loss calls ``super().training_loss``, else none)
    applied_loss_options: Tuple[str, ...] = tuple(LOSS_OPTIONS)
    #: rows x items x fields x dim scored at once when ranking every item
    score_chunk_elements = 1 << 22
    #: add the first-order term ``sum_f w_f`` to the logit (False: no first-order weights are built, the
    #: logit is ``bias + interaction(emb)``, for models whose paper has no linear part, e.g. DCN, AutoInt)
    use_first_order = True

    def __init__(self, config: Optional[Mapping[str, Any]] = None, dataset_config: Optional[Mapping] = None,
                 **overrides):
        super().__init__(config, dataset_config, **overrides)
        self._check_feature_options()

    def _check_feature_options(self) -> None:
        """The values of the training options, and that this model's training applies the ones set."""
        check_feature_options(self.config)
        applied = _applied_loss_options(type(self), FeatureRecommender)
        set_keys = [k for k, neutral in LOSS_OPTIONS.items()
                    if _is_set(k, self.config.get(k, neutral)) and k not in applied]
        if set_keys:
            owner = next(c for c in type(self).__mro__ if "training_loss" in c.__dict__)
            raise ConfigError(f"{self.model_name} trains with its own loss ({owner.__name__}.training_loss), which "
                              f"does not apply {set_keys}; remove them (leave them at "
                              f"{ {k: LOSS_OPTIONS[k] for k in set_keys} }).")
        if not isinstance(self.config.get("embed_dim"), int) \
                and type(self).embedding_width is not FeatureRecommender.embedding_width:
            raise ConfigError(f"{self.model_name} packs several vectors into each field's row (embedding_width), "
                              f"so it needs one size for every field: set embed_dim to an int, got "
                              f"{self.config.get('embed_dim')!r}.")

    # ---- hooks for the models ----------------------------------------------------------------
    def build_interaction(self) -> None:
        """Create the blocks :meth:`interaction` uses (``self.num_fields``, ``self.embed_dim`` are set)."""

    def embedding_width(self) -> int:
        """Width ``d`` of every field's vector (``self.num_fields`` is known): ``embed_dim`` by default (with
        sizes per field, the largest); a model that packs several vectors into one row (one per interaction
        order, one per other field) returns a multiple of it and splits ``emb`` in :meth:`interaction` (it
        then needs an int ``embed_dim``)."""
        dims = getattr(self, "field_dims", None)
        return max(dims.values()) if dims else int(self.cfg("embed_dim"))

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        """``emb [*, F, d] -> [*]``, added to the first-order term to give the logit."""
        raise ConfigError(f"{type(self).__name__} is a FeatureRecommender and must define interaction(emb).")

    # ---- the label ---------------------------------------------------------------------------
    def _label_column(self, columns, rating: Optional[str]) -> Tuple[str, str]:
        """``(kind, column)``: ``('field', name)`` or ``('threshold', rating)`` for rows with ``columns``."""
        field, threshold = self.cfg("label_field"), self.cfg("label_threshold")
        if field is not None and threshold is not None:
            raise ConfigError(f"set one of label_field ({field!r}) and label_threshold ({threshold}), not both.")
        if field is not None:
            if field not in columns:
                raise ConfigError(f"label_field {field!r} is not an interaction column; columns are "
                                  f"{sorted(columns)}." + did_you_mean(field, list(columns)))
            return "field", field
        if threshold is not None:
            if rating is None or rating not in columns:
                raise ConfigError(f"label_threshold {threshold} needs a rating field, and the rows have none "
                                  f"(columns {sorted(columns)}); set label_field to a 0/1 column instead.")
            return "threshold", rating
        if DEFAULT_LABEL in columns:
            return "field", DEFAULT_LABEL
        raise ConfigError(f"{self.model_name} needs a label: set label_field (a 0/1 interaction column) or "
                          f"label_threshold (rating >= t is a click); the rows have columns {sorted(columns)} and "
                          f"no {DEFAULT_LABEL!r} column.")

    def ctr_labels(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """0/1 float labels ``[B]`` of a batch's rows."""
        kind, col = self._label_column(batch, self.meta.rating_field)
        if kind == "field":
            return batch[col].float()
        return (batch[col] >= float(self.cfg("label_threshold"))).float()

    # ---- the data ----------------------------------------------------------------------------
    def context_from(self, split) -> ModelContext:
        """The context with the user / item feature tables the data has and its context fields (the
        interaction columns other than user, item, rating, time and the label: ``context_features``, kept in
        checkpoints with their vocabularies), the training labels checked."""
        ds = split.dataset
        needs = set(self.needs) | {"context_features"}
        for owner, table, key in (("user", ds.user_feat, ds.uid_field), ("item", ds.item_feat, ds.iid_field)):
            if table is not None and any(n != key for n in table.names):
                needs.add(f"{owner}_features")
        ctx = ModelContext.from_split(split, check_needs(needs, type(self).__name__),
                                      content_field=self.cfg("content_field"))
        kind, label_col = self._label_column(ds.inter.names, ds.rating_field)
        ctx.context_fields.pop(label_col, None)
        self._check_train_labels(split, kind, label_col)
        return ctx

    def _check_train_labels(self, split, kind: str, col: str) -> None:
        values = np.asarray(split.dataset.inter[col][split.train], dtype=np.float64)
        if kind == "threshold":
            values = (values >= float(self.cfg("label_threshold"))).astype(np.float64)
        if len(values) and (values.min() < 0 or values.max() > 1):
            raise DataError(f"label column {col!r} must hold 0/1 labels (or soft labels in [0, 1]); its train values "
                            f"lie in [{values.min()}, {values.max()}]. Use label_threshold for ratings.")
        if len(values) == 0 or values.min() == values.max():
            what = f"rating >= {self.cfg('label_threshold')}" if kind == "threshold" else f"column {col!r}"
            raise DataError(f"every training label ({what}) is {values[:1].tolist()}: a click model needs both "
                            "clicks and non-clicks (implicit data with only positives needs sampled negatives, "
                            "as the frappe converter adds; a binarized rating is all 1: set binarize false).")

    def _register_data_buffers(self, meta: ModelContext) -> None:
        """Feature stores of the tables the context holds (the data decides, see :meth:`context_from`)."""
        if "user_features" in meta.needs:
            self.user_feats = FeatureStore(meta.user_fields, meta.user_features)
        if "item_features" in meta.needs:
            self.item_feats = FeatureStore(meta.item_fields, meta.item_features)
        if "history_seq" in meta.needs:
            self.register_buffer("history_indptr", meta.history_indptr.long(), persistent=False)
            self.register_buffer("history_items", meta.history_indices.long(), persistent=False)

    def history_before(self, batch: Dict[str, torch.Tensor], length: int,
                       padding: str = "left") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(items [B, length], seq_len [B])``: the last ``length`` items the row's user interacted with
        before the row (time order, ``padding`` as in ``gather_windows``: left puts the latest last), for a model declaring
        ``history_seq``; a batch without ``HISTORY_POS`` (``recommend``) gets the user's whole known history."""
        from recstudio.data.types.base import gather_windows
        self.meta.require("history_seq", type(self).__name__)
        users = batch[self.meta.uid_field]
        lo = self.history_indptr[users]
        hi = lo + batch[HISTORY_POS] if HISTORY_POS in batch else self.history_indptr[users + 1]
        return gather_windows(self.history_items, lo, hi, int(length), padding)

    def _get_dataset_class(self):
        return FieldRowsDataset

    def _batch_columns(self) -> List[str]:
        """Interaction columns the batches carry besides the ids: the label source and context fields."""
        cols = [f.source for f in self.fields if f.owner == "context"]
        cols += [self.weight_source[k] for k in self.weight_source if self.field_by_key[k].owner == "context"]
        label_field, threshold = self.cfg("label_field"), self.cfg("label_threshold")
        if label_field is not None:
            cols.append(label_field)
        elif threshold is not None:
            cols.append(self.meta.rating_field)
        else:
            cols.append(DEFAULT_LABEL)
        return list(dict.fromkeys(cols))

    def _dataset_kwargs(self) -> Dict[str, Any]:
        kwargs = {"join_features": False, "num_neg": 0, "keep_fields": self._batch_columns(),
                  **({"history_position": True} if "history_seq" in self.needs else {})}
        rate = float(self.cfg("neg_sample_rate", 1.0))
        if rate != 1.0:  # negative down-sampling of the training rows (evaluation keeps every row)
            kind, col = self._label_column(self._batch_columns(), self.meta.rating_field)
            kwargs.update(neg_sample_rate=rate,
                          label=(col, float(self.cfg("label_threshold")) if kind == "threshold" else None))
        return kwargs

    def _eval_dataset(self, split, phase: str):
        return FieldRowsDataset(split, phase, num_neg=0, keep_fields=self._batch_columns(),
                                history_position="history_seq" in self.needs)

    # ---- building ------------------------------------------------------------------------------
    def _all_fields(self) -> List[_Field]:
        m = self.meta
        out = [_Field(m.uid_field, "user", m.uid_field, "token", m.num_users)]
        out += [_Field(n, "user", n, s.type, self._width(s, "user")) for n, s in m.user_fields.items()
                if "user_features" in m.needs]
        for name, spec in m.context_fields.items():
            out.append(_Field(name, "context", name, spec.type, spec.size))
        out.append(_Field(m.iid_field, "item", m.iid_field, "token", m.num_items))
        out += [_Field(n, "item", n, s.type, self._width(s, "item")) for n, s in m.item_fields.items()
                if "item_features" in m.needs]
        taken = {}
        for f in out:
            if f.key in taken:
                f.key = f"{f.owner}_{f.source}"
                if f.key in taken:
                    raise ConfigError(f"field names clash: {f.source!r} of the {f.owner}s and {f.key!r}.")
            taken[f.key] = f
        return out

    def _width(self, spec, owner: str) -> int:
        """Embedding size argument: vocabulary (token types), width (float_seq) or 1 (float)."""
        if spec.type == "float_seq":
            tensors = self.meta.user_features if owner == "user" else self.meta.item_features
            return int(tensors[spec.name].shape[1])
        return spec.size

    def build_blocks(self) -> None:
        loss = self.loss_fn
        if loss is None or not getattr(loss, "pointwise", False) or getattr(loss, "needs_negatives", False):
            raise ConfigError(f"{self.model_name} trains on labelled rows: set loss to a pointwise loss "
                              f"(pointwise_bce), got {self.cfg('loss')!r}.")
        every = self._all_fields()
        by_key = {f.key: f for f in every}
        weights = {}  # token_seq key -> its float_seq weight key
        for f in every:
            w = by_key.get(f.key + WEIGHT_SUFFIX)
            if f.type == "token_seq" and w is not None and w.type == "float_seq" and w.owner == f.owner:
                weights[f.key] = w.key
        chosen = self.cfg("feature_fields")
        weight_keys = set(weights.values())
        if chosen is None:
            keys = [f.key for f in every if f.key not in weight_keys]
        else:
            usable = [f.key for f in every if f.key not in weight_keys]
            for k in chosen:
                if k in weight_keys:
                    owner = next(s for s, w in weights.items() if w == k)
                    raise ConfigError(f"feature_fields: {k!r} holds the pooling weights of {owner!r}; select "
                                      f"{owner!r} (its weights come with it).")
                if k not in usable:
                    raise ConfigError(f"feature_fields: unknown field {k!r}; the fields are {usable}."
                                      + did_you_mean(k, usable))
            if not chosen:
                raise ConfigError("feature_fields is empty; list some fields or set it to null (all).")
            keys = [k for k in usable if k in chosen]
        self.fields = [by_key[k] for k in keys]
        self.field_by_key = {f.key: f for f in self.fields}
        self.weight_source = {k: by_key[weights[k]].source for k in keys if k in weights}
        self._weight_fields = {weights[k]: by_key[weights[k]] for k in keys if k in weights}
        self.field_by_key.update(self._weight_fields)
        specs = {f.key: (f.type, f.size) for f in self.fields}
        specs.update({k: (f.type, f.size) for k, f in self._weight_fields.items()})
        self.query_keys = [f.key for f in self.fields if f.owner != "item"]
        self.item_keys = [f.key for f in self.fields if f.owner == "item"]
        self.num_fields = len(self.fields)
        self.field_dims = self._field_dims()
        self.embed_dim = int(self.embedding_width())
        self.embedding = FieldEmbedding(specs, self.embed_dim, linear=bool(self.use_first_order),
                                        seq_weights={k: weights[k] for k in keys if k in weights},
                                        field_dims=self.field_dims)
        self.embed_l2 = self._per_field("embed_l2", 0.0, float)
        self.bias = nn.Parameter(torch.zeros(1))
        self._check_loss_options()
        self.build_interaction()

    def _per_field(self, key: str, neutral: Any, cast) -> Dict[str, Any]:
        """A per-field option (a value, or a dict field -> value with an optional ``default`` entry) as
        ``field key -> value`` over the used fields; an unknown field name is an error."""
        value = self.cfg(key, neutral)
        keys = [f.key for f in self.fields]
        if not isinstance(value, dict):
            return {k: cast(value) for k in keys}
        unknown = [k for k in value if k not in keys and k != DEFAULT_ENTRY]
        if unknown:
            raise ConfigError(f"{key} names {unknown}, which {self.model_name} does not embed; its fields are {keys} "
                              f"(and '{DEFAULT_ENTRY}' sets the fields not named)."
                              + did_you_mean(str(unknown[0]), keys + [DEFAULT_ENTRY]))
        fallback = value.get(DEFAULT_ENTRY, neutral)
        return {k: cast(value.get(k, fallback)) for k in keys}

    def _field_dims(self) -> Optional[Dict[str, int]]:
        """Table width of each field for ``embed_dim`` a dict or ``auto`` (``None`` for an int: one width)."""
        spec = self.cfg("embed_dim")
        if isinstance(spec, int):
            return None
        if isinstance(spec, dict):
            missing = [f.key for f in self.fields if f.key not in spec] if DEFAULT_ENTRY not in spec else []
            if missing:
                raise ConfigError(f"embed_dim gives no size for the fields {missing}: name every field of "
                                  f"{[f.key for f in self.fields]}, or add a '{DEFAULT_ENTRY}' entry.")
        per = self._per_field("embed_dim", None, lambda v: v)
        return {f.key: auto_dim(f.type, f.size) if per[f.key] == "auto" else int(per[f.key]) for f in self.fields}

    def _check_loss_options(self) -> None:
        """``pos_weight`` and ``neg_sample_rate`` act on the BCE of logits: other losses refuse them."""
        from recstudio.model.loss.pointwise import BCELoss
        set_keys = [k for k in ("pos_weight", "neg_sample_rate") if float(self.cfg(k, 1.0)) != 1.0]
        if set_keys and not isinstance(self.loss_fn, BCELoss):
            raise ConfigError(f"{set_keys} weight / correct a binary cross-entropy on logits; loss "
                              f"{self.cfg('loss')!r} is not one: use loss pointwise_bce or remove them.")

    @property
    def used_fields(self) -> List[str]:
        """Keys of the fields the model embeds, in order (query fields, then item fields)."""
        return self.query_keys + self.item_keys

    # ---- field values ----------------------------------------------------------------------------
    def _owner_values(self, owner: str, ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        store = getattr(self, f"{owner}_feats", None)
        id_field = self.meta.uid_field if owner == "user" else self.meta.iid_field
        out = {}
        for key, f in self.field_by_key.items():
            if f.owner != owner:
                continue
            out[key] = ids if f.source == id_field else store[f.source][ids]
        return out

    def _context_values(self, batch: Dict[str, torch.Tensor], rows: int, device) -> Dict[str, torch.Tensor]:
        """The batch's context columns; a column the batch lacks is padding (id 0, value 0): absent."""
        out = {}
        for key, f in self.field_by_key.items():
            if f.owner != "context":
                continue
            if f.source in batch:
                out[key] = batch[f.source]
            elif f.type == "token":
                out[key] = torch.zeros(rows, dtype=torch.long, device=device)
            elif f.type == "token_seq":
                out[key] = torch.zeros(rows, 1, dtype=torch.long, device=device)
            elif f.type == "float":
                out[key] = torch.zeros(rows, device=device)
            else:
                width = f.size if key not in self._weight_fields else 1
                out[key] = torch.zeros(rows, width, device=device)
        return out

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(emb [B, Fq, d], first-order [B])`` of the user and context fields of the batch's rows."""
        users = batch[self.meta.uid_field]
        values = {**self._owner_values("user", users), **self._context_values(batch, len(users), users.device)}
        if not self.query_keys:
            return users.new_zeros((len(users), 0, self.embed_dim), dtype=self.bias.dtype), \
                users.new_zeros(len(users), dtype=self.bias.dtype)
        return self.embedding(values, self.query_keys), self._first_order(values, self.query_keys, users.shape)

    def _item_part(self, items: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        values = self._owner_values("item", items)
        if not self.item_keys:
            return items.new_zeros((*items.shape, 0, self.embed_dim), dtype=self.bias.dtype), \
                items.new_zeros(items.shape, dtype=self.bias.dtype)
        return self.embedding(values, self.item_keys), self._first_order(values, self.item_keys, items.shape)

    def _first_order(self, values: Dict[str, torch.Tensor], keys: List[str], shape) -> torch.Tensor:
        """``[*shape]``: the first-order term of ``keys``, zeros when ``use_first_order`` is False."""
        if self.use_first_order:
            return self.embedding.first_order(values, keys)
        return self.bias.new_zeros(shape)

    def _logits(self, q_emb, q_lin, i_emb, i_lin) -> torch.Tensor:
        """Broadcast query ``[B, 1.., Fq, d]`` and item ``[.., Fi, d]`` parts, then score ``[B, ..]``."""
        shape = torch.broadcast_shapes(q_emb.shape[:-2], i_emb.shape[:-2])
        d = self.embed_dim
        emb = torch.cat([q_emb.expand(*shape, q_emb.shape[-2], d), i_emb.expand(*shape, i_emb.shape[-2], d)], -2)
        return self.bias + q_lin + i_lin + self.interaction(emb)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Click logits ``[B]`` of a batch's rows (their user, item and context fields)."""
        return self.score_candidates(batch, self.prepare_scoring(batch), batch[self.meta.iid_field])

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        q_emb, q_lin = self.prepare_scoring(batch) if state is None else state
        i_emb, i_lin = self._item_part(items)
        if items.dim() == 2:  # [B, K]
            q_emb, q_lin = q_emb[:, None], q_lin[:, None]
        return self._logits(q_emb, q_lin, i_emb, i_lin)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        q_emb, q_lin = self.prepare_scoring(batch) if state is None else state
        rows, n = q_emb.shape[0], self.meta.num_items
        chunk = max(1, self.score_chunk_elements // max(1, rows * self.num_fields * self.embed_dim))
        out = torch.empty(rows, n, device=q_emb.device, dtype=q_emb.dtype)
        for lo in range(0, n, chunk):
            items = torch.arange(lo, min(lo + chunk, n), device=q_emb.device)
            i_emb, i_lin = self._item_part(items)
            out[:, lo:lo + len(items)] = self._logits(q_emb[:, None], q_lin[:, None], i_emb[None], i_lin[None])
        return out

    # ---- training ------------------------------------------------------------------------------
    @property
    def logit_offset(self) -> float:
        """``-log(neg_sample_rate)``: what the training loss adds to the model's (calibrated) logit, so that
        the model learns ``logit(q) = logit(p) - log(r)`` on the down-sampled rows and predicts ``p`` itself
        (He et al. 2014's ``p = q / (q + (1 - q) / r)``, see :func:`calibrate`); 0 without down-sampling."""
        return -math.log(float(self.cfg("neg_sample_rate", 1.0)))

    def ctr_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The pointwise loss of calibrated ``logits`` against ``labels`` on the training rows: shifted by
        :attr:`logit_offset` under negative down-sampling, the positive term weighted by ``pos_weight``."""
        offset, w = self.logit_offset, float(self.cfg("pos_weight", 1.0))
        if offset:
            logits = logits + offset
        if w != 1.0:
            per_row = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none",
                                                         pos_weight=logits.new_tensor(w))
            return self.loss_fn.reduce(per_row)
        return self.loss_fn(pos_score=logits, label=labels)

    def embedding_row_penalty(self, rows: Mapping[str, torch.Tensor], batch_rows: int) -> torch.Tensor:
        """``sum_f embed_l2[f] / 2 * rows[f] / batch_rows``: ``rows`` from :meth:`FieldEmbedding.record_rows`
        (per field, the squared norms of the rows the batch read)."""
        terms = [self.embed_l2[k] / 2 * v for k, v in rows.items() if self.embed_l2.get(k, 0.0)]
        return sum(terms) / max(1, batch_rows) if terms else self.bias.new_zeros(())

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Pointwise loss of the rows' logits against their labels (:meth:`ctr_loss`, :meth:`ctr_labels`),
        plus the ``embed_l2`` penalty of the rows the batch read and the ``embed_reg`` penalty."""
        if any(self.embed_l2.values()):
            with self.embedding.record_rows() as rows:
                logits = self.forward(batch)
            loss = self.ctr_loss(logits, self.ctr_labels(batch))
            loss = loss + self.embedding_row_penalty(rows, self._batch_size(batch))
        else:
            loss = self.ctr_loss(self.forward(batch), self.ctr_labels(batch))
        reg = float(self.cfg("embed_reg", 0.0))
        if reg:
            loss = loss + reg / 2 * sum(p.pow(2).sum() for p in self.embedding.table_parameters())
        return loss
