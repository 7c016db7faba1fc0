"""What a model sees of its data: the :class:`ModelContext`.

Built from the *training* split by :meth:`ModelContext.from_split` and saved inside every checkpoint, so a
model can be rebuilt, and can recommend in original ids, with no dataset present (``recstudio.load``).

Every model gets the sizes, id fields, train popularity, id maps and each user's known history (the
``recommend`` API masks and encodes from it). The rest is built **only when the model declares it needs it**
in its class attribute ``needs`` (so BPR's context and checkpoints stay lean):

===================  ======================================================================================
need                 what the context then holds
===================  ======================================================================================
``train_graph``      the training interactions as a user-major CSR (``train_indptr`` / ``train_indices``),
                     train split only (never a valid or test edge); :meth:`train_matrix` gives it as scipy.
``user_features``    user feature fields (:class:`FieldSpec`) and their per-user tensors (row 0 padding).
``item_features``    the same for items.
``context_features`` the fields of the interactions themselves other than user, item, rating and time
                     (``context_fields``, owner ``context``: e.g. daytime, device, a click label); their
                     values come with every batch of interactions.
``kg``               knowledge-graph triples ``kg_head / kg_relation / kg_tail`` in the entity / relation
                     vocabularies (id 0 = padding), ``num_entities``, ``num_relations`` and ``item_entity``
                     (the entity of each item id, 0 for an item without one: see :attr:`items_without_entity`).
``social``           the user -> user network ``social_src / social_dst / social_weight`` as in ``.net``
                     (directed; a family base symmetrises it by config).
``item_content``     ``item_content``: one float vector per item id (row 0 padding) from a float_seq item
                     field (the ``content_field`` key, or the only float_seq field) or given by the caller.
``history_seq``      nothing more in the context (``history_indptr`` / ``history_indices`` are always there):
                     a feature (CTR) model's batches then carry each row's position in its user's
                     time-ordered interactions, so the model reads the items before the row (DIN, DIEN, BST).
``history_times``    ``history_times``: the timestamp of every known interaction, aligned with
                     ``history_indices`` (float64), so ``recommend`` gives a time-aware sequential model
                     (TiSASRec) the times of the history it encodes; its batches carry ``time_seq``.
===================  ======================================================================================

The model registers the feature and content tensors as buffers (:class:`FeatureStore`), so they move with
``.to(device)``; the context itself keeps CPU copies for checkpoints.

Example:
    >>> ctx = ModelContext.from_split(split, needs={"train_graph"})       # doctest: +SKIP
    >>> ctx.train_matrix().nnz == len(split.train)                       # doctest: +SKIP
    True
"""
from dataclasses import dataclass, field, fields as dc_fields
from typing import Any, Dict, Iterable, Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recstudio.data.fields import FieldType
from recstudio.data.table import IdMap
from recstudio.utils.errors import ConfigError, DataError

#: what a model may declare in ``needs``
NEEDS = ("train_graph", "user_features", "item_features", "context_features", "kg", "social", "item_content",
         "history_seq", "history_times")


@dataclass(frozen=True)
class FieldSpec:
    """One feature field as a model sees it.

    Args:
        name: the field name (the batch key).
        type: ``token``, ``token_seq``, ``float`` or ``float_seq``.
        size: vocabulary size with padding row 0 (token types), width (float_seq) or 1 (float).
        owner: ``user``, ``item`` or ``context`` (a column of the interactions).
    """

    name: str
    type: str
    size: int
    owner: str

    @property
    def is_token(self) -> bool:
        return self.type in ("token", "token_seq")

    @property
    def is_sequence(self) -> bool:
        return self.type in ("token_seq", "float_seq")

    padding: int = 0


def check_needs(needs: Iterable[str], where: str) -> frozenset:
    """``needs`` as a frozenset, every entry one of :data:`NEEDS`."""
    from recstudio.utils.suggest import did_you_mean
    out = frozenset(needs)
    for n in out:
        if n not in NEEDS:
            raise ConfigError(f"{where} declares needs {n!r}, which is not one of {NEEDS}." + did_you_mean(n, NEEDS))
    return out


def _field_specs(table, key: str, owner: str) -> Dict[str, FieldSpec]:
    out = {}
    if table is None:
        return out
    for name, t in table.types.items():
        if name == key:
            continue
        col, ft = table[name], FieldType(t)
        size = int(col.max()) + 1 if ft.is_token else (col.shape[1] if col.ndim > 1 else 1)
        out[name] = FieldSpec(name, ft.value, size, owner)
    return out


def _csr(indptr, indices, shape) -> sp.csr_matrix:
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, np.asarray(indices), np.asarray(indptr)), shape=shape)


@dataclass
class ModelContext:
    """Data facts a model is built from (see the module docstring for what each ``need`` adds).

    Args:
        num_users, num_items: embedding rows, padding row 0 included.
        uid_field, iid_field: batch keys of user and item ids.
        item_counts: train interactions per item id (index 0 = padding, 0).
        user_tokens, item_tokens: original ids of inner ids 1..n.
        history_indptr, history_indices: every user's known interactions in time order
            (train + valid + test), used by ``recommend`` to mask seen items and build queries.
        rating_field, rating_mean: the rating field of batches (``None`` without) and its train mean.
        needs: what was built beyond the basics.
    """

    num_users: int
    num_items: int
    uid_field: str
    iid_field: str
    item_counts: torch.Tensor
    user_tokens: Optional[np.ndarray] = None
    item_tokens: Optional[np.ndarray] = None
    history_indptr: Optional[torch.Tensor] = None
    history_indices: Optional[torch.Tensor] = None
    rating_field: Optional[str] = None
    rating_mean: float = 0.0
    needs: frozenset = frozenset()
    # history_times
    history_times: Optional[torch.Tensor] = None
    # train_graph
    train_indptr: Optional[torch.Tensor] = None
    train_indices: Optional[torch.Tensor] = None
    # user_features / item_features
    user_fields: Dict[str, FieldSpec] = field(default_factory=dict)
    item_fields: Dict[str, FieldSpec] = field(default_factory=dict)
    user_features: Dict[str, torch.Tensor] = field(default_factory=dict)
    item_features: Dict[str, torch.Tensor] = field(default_factory=dict)
    # context_features
    context_fields: Dict[str, FieldSpec] = field(default_factory=dict)
    # kg
    num_entities: int = 0
    num_relations: int = 0
    kg_head: Optional[torch.Tensor] = None
    kg_relation: Optional[torch.Tensor] = None
    kg_tail: Optional[torch.Tensor] = None
    item_entity: Optional[torch.Tensor] = None
    # social
    social_src: Optional[torch.Tensor] = None
    social_dst: Optional[torch.Tensor] = None
    social_weight: Optional[torch.Tensor] = None
    # item_content
    item_content: Optional[torch.Tensor] = None
    # [ranker-serving hook] context_features: how the data layer encoded each raw context value (plain types),
    # so serving (recstudio.serving.features) maps raw values exactly as training did; see _context_encoding
    context_encoding: Dict[str, Any] = field(default_factory=dict)

    # ---- building ---------------------------------------------------------------------------
    @classmethod
    def from_split(cls, split, needs: Iterable[str] = (), content_field: Optional[str] = None) -> "ModelContext":
        """The context of ``split`` with what ``needs`` asks for (train-split data only).

        Raises:
            DataError: a need the dataset cannot serve (no ``.kg`` / ``.link`` for ``kg``, no ``.net`` for
                ``social``, no feature table for ``*_features``), naming the file to add.
            ConfigError: ``history_times`` on a dataset without a time field.
        """
        needs = check_needs(needs, "the model")
        ds = split.dataset
        counts = np.bincount(ds.items[split.train], minlength=ds.num_items).astype(np.float32)
        ctx = cls(num_users=ds.num_users, num_items=ds.num_items, uid_field=ds.uid_field, iid_field=ds.iid_field,
                  item_counts=torch.as_tensor(counts), user_tokens=ds.id_maps["user"].tokens,
                  item_tokens=ds.id_maps["item"].tokens, history_indptr=torch.as_tensor(ds.user_offsets),
                  history_indices=torch.as_tensor(ds.items), rating_field=ds.rating_field,
                  rating_mean=float(ds.inter[ds.rating_field][split.train].mean()) if ds.rating_field else 0.0,
                  needs=needs)
        name = getattr(ds, "name", "the dataset")
        if "history_times" in needs:
            from recstudio.data.types.seq import interaction_times
            ctx.history_times = torch.as_tensor(interaction_times(ds, np.arange(len(ds.items))))
        if "train_graph" in needs:
            m = split.matrix("train")
            m.sort_indices()
            ctx.train_indptr = torch.as_tensor(m.indptr.astype(np.int64))
            ctx.train_indices = torch.as_tensor(m.indices.astype(np.int64))
        for owner, table, key in (("user", ds.user_feat, ds.uid_field), ("item", ds.item_feat, ds.iid_field)):
            if f"{owner}_features" in needs or (owner == "item" and "item_content" in needs):
                if table is None and f"{owner}_features" in needs:
                    raise DataError(f"the model needs {owner} features, but {name} has no .{owner} table; add a "
                                    f"{name}.{owner} atomic file (or {owner} feature columns) or pick another model.")
                specs = _field_specs(table, key, owner)
                tensors = {n: torch.as_tensor(table[n]) for n in specs}
                if f"{owner}_features" in needs:
                    setattr(ctx, f"{owner}_fields", specs)
                    setattr(ctx, f"{owner}_features", tensors)
                if owner == "item" and "item_content" in needs:
                    ctx.item_content = _content_column(specs, tensors, content_field, name)
        if "context_features" in needs:
            skip = {ds.uid_field, ds.iid_field, ds.rating_field, ds.time_field}
            ctx.context_fields = {n: (FieldSpec(n, s.type, ds.vocab_size(n), "context") if s.is_token else s)
                                  for n, s in _field_specs(ds.inter, None, "context").items() if n not in skip}
            ctx.context_encoding = _context_encoding(ds, ctx.context_fields)  # [ranker-serving hook]
        if "kg" in needs:
            ctx._add_kg(ds, name)
        if "social" in needs:
            ctx._add_social(ds, name)
        return ctx

    def _add_kg(self, ds, name: str) -> None:
        kg, link = ds.extra.get("kg"), ds.extra.get("link")
        if kg is None or link is None:
            missing = [s for s, t in (("kg", kg), ("link", link)) if t is None]
            raise DataError(f"the model needs a knowledge graph, but {name} has no {' / '.join('.' + m for m in missing)} "
                            "file; add <name>.kg (head_id, relation_id, tail_id) and <name>.link (item_id, entity_id) "
                            "in RecBole's format, or pick a dataset with a knowledge graph (e.g. ml-100k-kg).")
        tokens = [f for f, t in kg.types.items() if FieldType(t).is_token]
        rel = [f for f in tokens if "relation" in f] or tokens[1:2]
        ent = [f for f in tokens if f not in rel]
        if len(ent) != 2 or len(rel) != 1:
            raise DataError(f"{name}.kg needs head, relation and tail token columns; it has {tokens}.")
        self.kg_head, self.kg_relation, self.kg_tail = (torch.as_tensor(kg[f]).long() for f in (ent[0], rel[0], ent[1]))
        vocab = ds.id_maps
        self.num_entities = len(vocab["entity"]) + 1 if "entity" in vocab else int(max(self.kg_head.max(), self.kg_tail.max())) + 1
        self.num_relations = len(vocab["relation"]) + 1 if "relation" in vocab else int(self.kg_relation.max()) + 1
        item_col = ds.iid_field if ds.iid_field in link.types else next(iter(link.types))
        ent_col = next(f for f in link.types if f != item_col)
        item_entity = np.zeros(ds.num_items, dtype=np.int64)
        item_entity[link[item_col]] = link[ent_col]
        self.item_entity = torch.as_tensor(item_entity)

    def _add_social(self, ds, name: str) -> None:
        net = ds.extra.get("net")
        if net is None:
            raise DataError(f"the model needs a social network, but {name} has no .net file; add <name>.net with "
                            "two user columns (and an optional float weight), or pick a dataset with a network "
                            "(e.g. lastfm-2k's friends, ciao, epinions).")
        tokens = [f for f, t in net.types.items() if FieldType(t).is_token]
        floats = [f for f, t in net.types.items() if not FieldType(t).is_token]
        if len(tokens) != 2:
            raise DataError(f"{name}.net needs two user token columns; it has {tokens}.")
        self.social_src, self.social_dst = (torch.as_tensor(net[f]).long() for f in tokens)
        self.social_weight = (torch.as_tensor(net[floats[0]]).float() if floats
                              else torch.ones(len(self.social_src)))

    # ---- views ------------------------------------------------------------------------------
    def require(self, need: str, model: str = "the model") -> None:
        """Raise a :class:`ConfigError` when ``need`` was not built (the model forgot to declare it)."""
        if need not in self.needs:
            raise ConfigError(f"{model} reads the context's {need!r}, but does not declare it: add {need!r} to the "
                              "class attribute `needs`.")

    def train_matrix(self) -> sp.csr_matrix:
        """``num_users x num_items`` binary CSR of the training interactions."""
        self.require("train_graph")
        return _csr(self.train_indptr.numpy(), self.train_indices.numpy(), (self.num_users, self.num_items))

    def social_matrix(self, symmetric: bool = False) -> sp.csr_matrix:
        """``num_users x num_users`` CSR of the network (weights summed over repeated links; ``symmetric``
        adds every reverse link, keeping the larger weight of a reciprocated pair)."""
        self.require("social")
        n = self.num_users
        m = sp.csr_matrix((self.social_weight.numpy(), (self.social_src.numpy(), self.social_dst.numpy())),
                          shape=(n, n))
        m.sum_duplicates()
        if symmetric:
            m = m.maximum(m.T).tocsr()
        m.setdiag(0)
        m.eliminate_zeros()
        return m

    @property
    def items_without_entity(self) -> int:
        """Real items that have no knowledge-graph entity."""
        self.require("kg")
        return int((self.item_entity[1:] == 0).sum())

    @property
    def user_map(self) -> IdMap:
        return IdMap(self.user_tokens, "user")

    @property
    def item_map(self) -> IdMap:
        return IdMap(self.item_tokens, "item")

    # ---- checkpoints ------------------------------------------------------------------------
    def to_state(self) -> Dict[str, Any]:
        """Plain types and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        out = {}
        for f in dc_fields(self):
            v = getattr(self, f.name)
            if f.name in ("user_tokens", "item_tokens"):
                v = v.tolist()
            elif f.name in ("user_fields", "item_fields", "context_fields"):
                v = {k: [s.type, s.size, s.owner] for k, s in v.items()}
            elif f.name == "needs":
                v = sorted(v)
            elif f.name == "item_content" and hasattr(v, "to_state"):  # [item-content hook] a ContentStore
                v = v.to_state()
            out[f.name] = v
        return out

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "ModelContext":
        s = dict(state)
        for key in ("user_fields", "item_fields", "context_fields"):
            s[key] = {k: FieldSpec(k, *_spec_args(v, key)) for k, v in s.get(key, {}).items()}
        s["user_tokens"] = np.asarray(s["user_tokens"])
        s["item_tokens"] = np.asarray(s["item_tokens"])
        s["needs"] = frozenset(s.get("needs", ()))
        if isinstance(s.get("item_content"), dict):  # [item-content hook] a saved ContentStore
            from recstudio.data.content import ContentStore
            s["item_content"] = ContentStore.from_state(s["item_content"])
        known = {f.name for f in dc_fields(cls)}
        return cls(**{k: v for k, v in s.items() if k in known})


def _context_encoding(ds, specs: Dict[str, FieldSpec]) -> Dict[str, Any]:
    """[ranker-serving hook] The data layer's encoding of each context field, in plain types: ``tokens`` (the
    original value of ids 1..n) of token / token_seq fields, the ``float_scaling`` statistics of scaled floats
    and the ``discretize`` bin edges of binned ones (``None`` when the dataset did not record them), and the
    ``seq_separator`` of token_seq text."""
    recorded = getattr(ds, "float_transforms", None)
    out: Dict[str, Any] = {}
    for name, spec in specs.items():
        enc: Dict[str, Any] = {"type": spec.type}
        if spec.is_token:
            enc["tokens"] = ds.id_maps[ds.field_vocab[name]].tokens.tolist()
        how = (ds.config.get("float_scaling") or {}).get(name)
        if name in (ds.config.get("discretize") or {}) or how is not None:
            enc["transform"] = None if recorded is None else recorded.get(name)
        out[name] = enc
    pipe = getattr(ds, "feature_pipeline", None)  # [ctr-pipeline hook] data encoded by a FeaturePipeline
    extra = {} if pipe is None else {"pipeline": pipe.state_dict()}  # its state, to encode raw rows (serving)
    return {"fields": out, "seq_separator": ds.config.get("seq_separator"), **extra}


def _spec_args(v, key):
    """(type, size, owner) of a saved field (older checkpoints saved (type, size))."""
    v = list(v)
    return (v[0], int(v[1]), v[2] if len(v) > 2 else key.split("_")[0])


def _content_column(specs, tensors, content_field, name) -> Optional[torch.Tensor]:
    vec = [n for n, s in specs.items() if s.type == "float_seq"]
    if content_field is None:
        if len(vec) != 1:
            return None  # supplied later by the caller (ModelContext.item_content), or an error at build
        content_field = vec[0]
    if content_field not in specs or specs[content_field].type != "float_seq":
        raise DataError(f"content_field {content_field!r} is not a float_seq item field of {name}; its float_seq "
                        f"item fields are {vec}.")
    return tensors[content_field].float()


class FeatureStore(nn.Module):
    """Per-id feature tensors as (non-persistent) buffers, so they move with the model; the context keeps
    the checkpointed copy.

    Args:
        specs: field name -> :class:`FieldSpec`.
        tensors: field name -> tensor with one row per id (row 0 padding).

    Example:
        >>> store = FeatureStore({"g": FieldSpec("g", "token", 3, "item")}, {"g": torch.tensor([0, 1, 2])})
        >>> store(torch.tensor([2, 1]))["g"]
        tensor([2, 1])
    """

    def __init__(self, specs: Dict[str, FieldSpec], tensors: Dict[str, torch.Tensor]):
        super().__init__()
        self.specs = dict(specs)
        for n in self.specs:
            self.register_buffer(_buffer_name(n), tensors[n], persistent=False)

    def forward(self, ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Each field's values for ``ids`` ``[*]``: ``[*]`` (token, float) or ``[*, S]`` (sequences)."""
        return {n: getattr(self, _buffer_name(n))[ids] for n in self.specs}

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, _buffer_name(name))


def _buffer_name(field_name: str) -> str:
    return "f_" + "".join(c if c.isalnum() or c == "_" else "_" for c in field_name)
