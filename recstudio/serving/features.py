"""Raw feature values -> the tensors a feature (CTR) model was trained on, for ``POST /score`` and ``POST /rank``.

A :class:`RawFeatureEncoder` maps each request value exactly as the data layer's preprocessing mapped the
training data, from what the checkpoint saved (``ModelContext.context_encoding``, plus the user and item id maps):

==============  ======================================================================================
field           raw value -> model input
==============  ======================================================================================
user / item id  the id's inner id; an unknown id -> 0 (``/score``; ``/rank`` refuses unknown items)
token           a JSON string or integer -> the field's vocabulary id; unknown -> 0; ``null`` -> 0
token_seq       a list of tokens, or one string joined by the dataset's ``seq_separator`` -> ids (unknown
                tokens -> 0, which pooling skips); ``null`` or ``[]`` -> no token
float           a finite number, then the training ``float_scaling`` (``log``: log1p, ``standard``: the
                training mean / std, ``minmax``: the training min / max)
discretized     a finite number -> its training quantile bin (``discretize``), below the first edge -> the
                first bin, above the last -> the last bin; the bin's vocabulary id
float_seq       a list of numbers (or a ``seq_separator`` string), zero-padded to the training width
==============  ======================================================================================

Id 0 is the data layer's padding / missing id (the zero vector, no first-order weight): it is the
out-of-vocabulary bucket, and the responses list, per row, the fields that fell into it.

User and item feature fields are NOT sent: the model reads them from the user / item id, as in training.
Errors (:class:`FeatureInputError`, HTTP 422) name the row and the field: a missing or unknown field, a value of
the wrong type, a non-finite number.

Example:
    >>> enc = RawFeatureEncoder(recstudio.load("deepfm.ckpt"))                      # doctest: +SKIP
    >>> batch, oov = enc.encode_rows([{"user_id": "u1", "item_id": "i3", "daytime": "morning"}])
"""
import bisect
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

#: how many offending ids / rows an error message quotes
MAX_QUOTED = 10


class FeatureInputError(DataError):
    """A request row the encoder cannot map (HTTP 422): its message names the row and the field."""


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "object"}.get(type(value), type(value).__name__)


class _Vocab:
    """Original token -> id (1..n) as the data layer's IdMap matches them: exact value, else its text
    (``"196"`` finds the integer token 196 and ``7`` the text token ``"7"``); unknown -> 0."""

    def __init__(self, tokens: Sequence):
        tokens = list(tokens.tolist() if isinstance(tokens, np.ndarray) else tokens)
        self.exact = {}
        self.text = {}
        for i, tok in enumerate(tokens, 1):
            self.exact.setdefault(tok, i)
            self.text.setdefault(str(tok), i)
        self.floats = any(isinstance(t, float) for t in tokens)
        self.size = len(tokens)

    def __call__(self, value) -> int:
        if isinstance(value, bool):
            return self.text.get(str(value), 0)
        got = self.exact.get(value)
        return got if got is not None else self.text.get(str(value), 0)


class _FieldCodec:
    """One context field's raw value -> model value (see the module docstring)."""

    def __init__(self, name: str, spec, encoding: Optional[Dict[str, Any]], separator: Optional[str]):
        self.name, self.type, self.size = name, spec.type, int(spec.size)
        self.separator = separator if separator else " "
        self.vocab = None
        self.transform = None
        self.edges = None
        self.labels = None
        self.unavailable = None  # why this field cannot be served, or None
        self.is_weight = False   # the pooling weights of a token_seq field (its width follows the tokens)
        if encoding is None:
            self.unavailable = (f"the checkpoint does not hold the vocabulary / scaling of context field {name!r} "
                                f"(it was written before they were saved); retrain the model to serve raw features")
            return
        if spec.is_token:
            self.vocab = _Vocab(encoding.get("tokens", []))
        if "transform" in encoding:
            t = encoding["transform"]
            if t is None:
                self.unavailable = (f"context field {name!r} was scaled or discretized by the data layer, and the "
                                    f"dataset did not record its statistics (a processed-data cache written before "
                                    f"they were recorded); clear the dataset cache and retrain to serve it")
            elif "discretize" in t:
                self.edges = np.asarray(t["discretize"], dtype=np.float64)
                self.labels = [f"[{self.edges[k]:.6g}, {self.edges[k + 1]:.6g}]" for k in range(len(self.edges) - 1)]
                self.edge_list = self.edges.tolist()
                self.bin_ids = [self.vocab(label) for label in self.labels]  # the data layer's id of each bin
            else:
                self.transform = dict(t)

    @property
    def discretized(self) -> bool:
        return self.edges is not None

    def describe(self) -> Dict[str, Any]:
        """What a client sends for this field (``GET /fields``)."""
        if self.discretized:
            return {"type": "float", "encoding": "discretize", "bins": len(self.labels)}
        out: Dict[str, Any] = {"type": self.type}
        if self.vocab is not None:
            out["vocabulary_size"] = self.vocab.size
        if self.transform is not None:
            out["scaling"] = self.transform.get("scaling")
        if self.type == "float_seq":
            out["width"] = self.size
        return out

    # ---- one value ------------------------------------------------------------------------------
    def _number(self, value, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FeatureInputError(f"{where}: field {self.name!r} must be a number, got {_kind(value)} "
                                    f"{_quote(value)}.")
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise FeatureInputError(f"{where}: field {self.name!r} must be a finite number, got {_quote(value)}.")
        return x

    def _token(self, value, where: str) -> Tuple[int, bool]:
        """(id, unknown) of a token value."""
        if value is None:
            return 0, False  # missing, as in training
        ok = isinstance(value, (str, int)) and not isinstance(value, bool)
        if not ok and not (self.vocab.floats and isinstance(value, float)):
            raise FeatureInputError(f"{where}: field {self.name!r} is categorical and takes a string or an integer, "
                                    f"got {_kind(value)} {_quote(value)}.")
        i = self.vocab(value)
        return i, i == 0

    def _list(self, value, where: str) -> list:
        if value is None:
            return []
        if isinstance(value, str):
            return [t for t in value.split(self.separator) if t != ""]
        if isinstance(value, list):
            return value
        raise FeatureInputError(f"{where}: field {self.name!r} is a {self.type} field and takes a list (or one "
                                f"string joined by {self.separator!r}), got {_kind(value)} {_quote(value)}.")

    def encode(self, value, where: str) -> Tuple[Any, bool]:
        """(model value, whether it fell into the out-of-vocabulary bucket)."""
        if self.discretized:
            x = self._number(value, where)  # pd.qcut's bins (e_k, e_k+1], the first one closed; clamped
            k = min(max(bisect.bisect_left(self.edge_list, x) - 1, 0), len(self.labels) - 1)
            i = self.bin_ids[k]
            return i, i == 0
        if self.type == "token":
            return self._token(value, where)
        if self.type == "token_seq":
            ids, unknown = [], False
            for j, tok in enumerate(self._list(value, where)):
                i, miss = self._token(tok, f"{where}, position {j}")
                ids.append(i)
                unknown |= miss
            return ids, unknown
        if self.type == "float":
            return self._scaled(self._number(value, where), where), False
        values = [self._number(v, f"{where}, position {j}") for j, v in enumerate(self._list(value, where))]
        if not self.is_weight and len(values) > self.size:
            raise FeatureInputError(f"{where}: field {self.name!r} holds at most {self.size} numbers (its training "
                                    f"width), got {len(values)}.")
        return values, False

    def _scaled(self, x: float, where: str) -> float:
        t = self.transform
        if t is None:
            return x
        how = t.get("scaling")
        if how == "log":
            if x <= -1:
                raise FeatureInputError(f"{where}: field {self.name!r} was log-scaled (log1p) in training and needs "
                                        f"a value > -1, got {x}.")
            return math.log1p(x)
        if how == "standard":
            std = t["std"]
            return (x - t["mean"]) / (std if std > 0 else 1.0)
        if how == "minmax":
            lo, hi = t["min"], t["max"]
            return (x - lo) / (hi - lo if hi > lo else 1.0)
        raise ConfigError(f"context field {self.name!r} has an unknown saved scaling {how!r}.")

    # ---- a column ---------------------------------------------------------------------------------
    def column(self, values: List[Any], width: Optional[int] = None) -> torch.Tensor:
        """The batch tensor of encoded values (sequences zero-padded to ``width`` or their longest)."""
        if self.type == "token" or self.discretized:
            return torch.tensor(values, dtype=torch.long)
        if self.type == "float":
            return torch.tensor(values, dtype=torch.float32)
        longest = max([len(v) for v in values] + [1])
        if self.type != "token_seq" and width is not None:
            longest = width
        pad = 0 if self.type == "token_seq" else 0.0
        dtype = torch.long if self.type == "token_seq" else torch.float32
        return torch.tensor([v + [pad] * (longest - len(v)) for v in values], dtype=dtype).reshape(len(values), longest)


class RawFeatureEncoder:
    """Raw request rows -> a feature model's batch (see the module docstring).

    Args:
        model: a fitted or loaded :class:`~recstudio.model.family.feature.FeatureRecommender`.

    Raises:
        ConfigError: ``model`` is not a feature (CTR) model.
    """

    def __init__(self, model):
        from recstudio.model.family.feature import FeatureRecommender
        if not isinstance(model, FeatureRecommender):
            raise ConfigError(f"{model.model_name} is a {model.base_name} model, not a feature (CTR) model: "
                              f"POST /score and /rank serve FeatureRecommender models (FM, DeepFM, DCN, ...); "
                              f"use POST /recommend for top-k lists.")
        # [ctr-pipeline hook] a model trained through a FeaturePipeline (fit_table) encodes rows with it
        self.table = None
        if model.feature_pipeline is not None:
            from recstudio.serving.table_features import PipelineRowEncoder
            self.table = PipelineRowEncoder(model)
            self.fields, self.unavailable = self.table.fields, None
            return
        meta = model.meta
        self.uid, self.iid = meta.uid_field, meta.iid_field
        self.users, self.items = _Vocab(meta.user_tokens), _Vocab(meta.item_tokens)
        self.item_tokens = meta.item_tokens
        enc = getattr(meta, "context_encoding", None) or {}
        saved, sep = enc.get("fields", {}), enc.get("seq_separator")
        self.codecs: Dict[str, _FieldCodec] = {}  # batch key (the interaction column) -> codec
        self.weight_of: Dict[str, str] = {}        # weight column -> its token_seq column
        for key, f in model.field_by_key.items():
            if f.owner != "context":
                continue
            spec = meta.context_fields[f.source]
            self.codecs[f.source] = _FieldCodec(f.source, spec, saved.get(f.source), sep)
        for key, wsource in getattr(model, "weight_source", {}).items():
            f = model.field_by_key[key]
            if f.owner == "context":
                self.weight_of[wsource] = f.source
                self.codecs[wsource].is_weight = True
        self.from_ids = {f.source: f.owner for f in model.field_by_key.values()
                         if f.owner in ("user", "item") and f.source not in (self.uid, self.iid)}
        self.fields = [self.uid, self.iid] + list(self.codecs)
        self.allowed = frozenset(self.fields)
        reasons = [c.unavailable for c in self.codecs.values() if c.unavailable]
        self.unavailable = "; ".join(reasons) or None

    def describe(self) -> Dict[str, Any]:
        """The raw fields a request sends (``GET /fields``)."""
        if self.table is not None:  # [ctr-pipeline hook]
            return self.table.describe()
        fields = {self.uid: {"type": "token", "role": "user id", "vocabulary_size": self.users.size},
                  self.iid: {"type": "token", "role": "item id", "vocabulary_size": self.items.size}}
        for name, codec in self.codecs.items():
            fields[name] = {**codec.describe(), "role": "context"}
            if name in self.weight_of:
                fields[name]["weights_of"] = self.weight_of[name]
        return {"fields": fields, "from_ids": self.from_ids, "servable": self.unavailable is None,
                "unavailable": self.unavailable}

    def _require(self) -> None:
        if self.unavailable:
            raise ConfigError(f"this model cannot score raw features: {self.unavailable}.")

    def _check_keys(self, row: Dict[str, Any], where: str, required: Sequence[str]) -> None:
        for name in row:
            if name in self.allowed:
                continue
            if name in self.from_ids:
                owner = self.from_ids[name]
                id_field = self.uid if owner == "user" else self.iid
                raise FeatureInputError(f"{where}: field {name!r} is {'an' if owner == 'item' else 'a'} {owner} "
                                        f"feature, which the model reads from the {owner} id ({id_field!r}); leave "
                                        f"it out.")
            raise FeatureInputError(f"{where}: unknown field {_quote(name)}; the model's fields are {self.fields}."
                                    + did_you_mean(str(name), self.fields))
        missing = [n for n in required if n not in row]
        if missing:
            raise FeatureInputError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {missing}; every row "
                                    f"needs {list(required)}.")

    def _id(self, vocab: _Vocab, value, name: str, where: str) -> Tuple[int, bool]:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise FeatureInputError(f"{where}: field {name!r} is an id and takes a string or an integer, got "
                                    f"{_kind(value)} {_quote(value)}.")
        i = vocab(value)
        return i, i == 0

    def _context_columns(self, rows: List[Dict[str, Any]], wheres: List[str], oov: List[List[str]],
                         optional: bool) -> Dict[str, torch.Tensor]:
        out = {}
        for name, codec in self.codecs.items():
            if name in self.weight_of:
                continue  # encoded with its token_seq below
            values = []
            for r, row in enumerate(rows):
                if optional and name not in row:
                    values.append(_absent(codec))
                    continue
                value, unknown = codec.encode(row[name], wheres[r])
                if unknown:
                    oov[r].append(name)
                values.append(value)
            out[name] = codec.column(values, codec.size if codec.type == "float_seq" else None)
        for wname, sname in self.weight_of.items():
            codec, width = self.codecs[wname], out[sname].shape[1]
            values = []
            for r, row in enumerate(rows):
                n_tokens = len(self.codecs[sname]._list(row.get(sname), wheres[r]))
                if optional and wname not in row:
                    if n_tokens:
                        raise FeatureInputError(f"{wheres[r]}: field {sname!r} is pooled with the weights in "
                                                f"{wname!r}; send {wname!r} too (one weight per token).")
                    values.append([])
                    continue
                value, _ = codec.encode(row[wname], wheres[r])
                if len(value) != n_tokens:
                    raise FeatureInputError(f"{wheres[r]}: field {wname!r} holds the pooling weights of {sname!r} and "
                                            f"must have one weight per token ({n_tokens}), got {len(value)}.")
                values.append(value)
            out[wname] = codec.column(values, width)
        return out

    def encode_rows(self, rows: List[Dict[str, Any]]) -> Tuple[Dict[str, torch.Tensor], List[List[str]]]:
        """``(batch, oov)`` of ``POST /score`` rows: every field required; ``oov[r]`` lists the fields of row
        ``r`` that fell into the out-of-vocabulary bucket (unknown ids or tokens)."""
        if self.table is not None:  # [ctr-pipeline hook]
            return self.table.encode_rows(rows)
        self._require()
        wheres = [f"row {r}" for r in range(len(rows))]
        oov: List[List[str]] = [[] for _ in rows]
        users, items = [], []
        for r, row in enumerate(rows):
            if not isinstance(row, dict):
                raise FeatureInputError(f"row {r} must be an object of field -> value, got {_kind(row)}.")
            self._check_keys(row, wheres[r], self.fields)
            u, unknown_u = self._id(self.users, row[self.uid], self.uid, wheres[r])
            i, unknown_i = self._id(self.items, row[self.iid], self.iid, wheres[r])
            users.append(u)
            items.append(i)
            if unknown_u:
                oov[r].append(self.uid)
            if unknown_i:
                oov[r].append(self.iid)
        batch = {self.uid: torch.tensor(users, dtype=torch.long), self.iid: torch.tensor(items, dtype=torch.long)}
        batch.update(self._context_columns(rows, wheres, oov, optional=False))
        return batch, oov

    def encode_candidates(self, user, context: Dict[str, Any], items: Sequence
                          ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """``(batch, oov)`` of ``POST /rank``: one row per candidate item, the user's and the context's fields
        repeated; context fields left out are absent (id 0 / value 0, as ``recommend`` scores them). Unknown
        items are an :class:`~recstudio.model.base.inference.UnknownIdsError`; an unknown user falls into the
        out-of-vocabulary bucket (listed in ``oov``)."""
        from recstudio.model.base.inference import UnknownIdsError
        if self.table is not None:  # [ctr-pipeline hook]
            return self.table.encode_candidates(user, context, items)
        self._require()
        for name in (self.uid, self.iid):
            if name in context:
                raise FeatureInputError(f"context: field {name!r} is given by {'user' if name == self.uid else 'items'}"
                                        f", not in context.")
        self._check_keys(context, "context", ())
        u, unknown_u = self._id(self.users, user, "user", "user")
        ids = []
        for j, item in enumerate(items):
            ids.append(self._id(self.items, item, "items", f"items[{j}]")[0])
        ids_t = torch.tensor(ids, dtype=torch.long)
        seen: Dict[int, int] = {}
        for j, i in enumerate(ids):
            if i and i in seen:
                raise FeatureInputError(f"items[{j}]: item {_quote(items[j])} is already a candidate "
                                        f"(items[{seen[i]}]); list each candidate once.")
            seen[i] = j
        if (ids_t == 0).any():
            bad = [items[j] for j in np.flatnonzero(ids_t.numpy() == 0)]
            more = f" and {len(bad) - MAX_QUOTED} more" if len(bad) > MAX_QUOTED else ""
            raise UnknownIdsError(f"unknown item ids {bad[:MAX_QUOTED]}{more}: they are not among the "
                                  f"{self.items.size} items the model was trained on, and /rank ranks known items "
                                  f"only (score a new item with POST /score, where it is out of vocabulary).",
                                  bad[:MAX_QUOTED], len(bad))
        oov: List[List[str]] = [[]]
        one = self._context_columns([context], ["context"], oov, optional=True)
        n = len(ids)
        batch = {self.uid: torch.full((n,), u, dtype=torch.long), self.iid: ids_t}
        for name, col in one.items():
            batch[name] = col.expand(n, *col.shape[1:]) if col.dim() > 1 else col.expand(n)
        return batch, ([self.uid] if unknown_u else []) + oov[0]


def _absent(codec: _FieldCodec):
    """The value of a context field a /rank request leaves out: the padding id / 0, as in ``recommend``."""
    if codec.type == "token" or codec.discretized:
        return 0
    if codec.type == "float":
        return 0.0
    return []


__all__ = ["RawFeatureEncoder", "FeatureInputError"]
