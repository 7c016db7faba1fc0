"""Categorical features: a growing vocabulary with an out-of-vocabulary bucket, or the hashing trick.

Ids: ``0`` = padding / missing value (its embedding row is zero), ``1`` = out of vocabulary (a value
seen fewer than ``min_freq`` times, or never), ``2..`` = the vocabulary in order of admission. A value
keeps its id forever: :meth:`Vocabulary.partial_fit` on later data only appends values, so an
embedding table grown with :func:`grow_embedding` keeps every trained row.
"""
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from recstudio.data.features.base import Feature, coerce_values, to_python, value_kind
from recstudio.utils.errors import ConfigError, DataError

PAD, OOV = 0, 1
HASH_KEY = "recstudio-hash01"          # 16 bytes: pandas' siphash key, fixed so hashes never change


class Vocabulary:
    """Value -> id map that grows when new frequent values arrive.

    Counts of values not admitted yet are kept across :meth:`partial_fit` calls, so a value admitted at
    ``min_freq=3`` may reach its count over several chunks. Values admitted together are ordered by count
    (descending), then by value, so the ids do not depend on row order within a call.

    Args:
        min_freq: a value needs this many occurrences (over all data fed so far) to get its own id.
        max_size: at most this many values (ids ``2 .. max_size + 1``); later values go to OOV.
        field: the field name (for messages).
    """

    def __init__(self, min_freq: int = 1, max_size: Optional[int] = None, field: str = "?"):
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(f"field {field!r}: min_freq must be an integer >= 1, got {min_freq!r}.")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise ConfigError(f"field {field!r}: max_size must be a positive integer or None, got {max_size!r}.")
        self.min_freq, self.max_size, self.field = min_freq, max_size, field
        self.reset()

    def reset(self) -> None:
        self.kind: Optional[str] = None
        self.values = np.array([], dtype=object)
        self.pending = pd.Series([], dtype=np.int64)
        self._index = pd.Index([])

    @property
    def _dtype(self):
        return np.int64 if self.kind == "int" else object

    @property
    def size(self) -> int:
        """Rows of the embedding table: padding + OOV + the vocabulary."""
        return len(self.values) + 2

    def _coerce(self, col: pd.Series) -> pd.Series:
        if self.kind is None:
            self.kind = value_kind(col, self.field)
        return coerce_values(col, self.kind, self.field)

    def partial_fit(self, col: pd.Series) -> "Vocabulary":
        """Count the values of ``col`` and admit those that reach ``min_freq``; returns self."""
        vals = self._coerce(col).dropna()
        if not len(vals):
            return self
        counts = vals.value_counts(sort=False)
        counts.index = pd.Index(np.asarray(counts.index, dtype=self._dtype))
        known = self._index.get_indexer(counts.index) >= 0 if len(self._index) else np.zeros(len(counts), bool)
        counts = counts[~known]
        pending = counts if not len(self.pending) else self.pending.add(counts, fill_value=0).astype(np.int64)
        ready = pending[pending >= self.min_freq]
        if len(ready):
            ready = ready.sort_index(kind="stable")
            ready = ready.iloc[np.argsort(-ready.to_numpy(), kind="stable")]
            room = None if self.max_size is None else max(self.max_size - len(self.values), 0)
            admit = ready.index[:room] if room is not None else ready.index
            if len(admit):
                new = np.asarray(admit, dtype=np.int64 if self.kind == "int" else object)
                self.values = np.concatenate([self.values.astype(new.dtype), new])
                self._index = pd.Index(self.values)
                pending = pending.drop(admit)
        self.pending = pending
        return self

    def lookup(self, col: pd.Series) -> np.ndarray:
        """Ids ``int64 [N]``: 0 for missing, 1 for out-of-vocabulary values."""
        vals = self._coerce(col)
        codes, uniques = pd.factorize(vals)               # the distinct values once; missing -> code -1
        if len(self.values):
            per_value = self._index.get_indexer(np.asarray(uniques, dtype=self._dtype)).astype(np.int64) + 2
        else:
            per_value = np.full(len(uniques), OOV, dtype=np.int64)   # get_indexer's -1 (+2) is OOV
        return np.append(per_value, PAD)[codes]

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Ids -> values (``None`` for padding and OOV)."""
        ids = np.asarray(ids, dtype=np.int64)
        table = np.concatenate([np.array([None, None], dtype=object), self.values.astype(object)])
        return table[ids]

    def state(self) -> dict:
        return {"kind": self.kind, "values": to_python(self.values),
                "pending_values": to_python(np.asarray(self.pending.index, dtype=object)),
                "pending_counts": to_python(self.pending.to_numpy(np.int64))}

    def load(self, state: dict) -> None:
        self.kind = state["kind"]
        dtype = np.int64 if self.kind == "int" else object
        self.values = np.asarray(state["values"], dtype=dtype)
        self._index = pd.Index(self.values) if len(self.values) else pd.Index([])
        self.pending = pd.Series(np.asarray(state["pending_counts"], dtype=np.int64),
                                 index=pd.Index(np.asarray(state["pending_values"], dtype=dtype)))


class Hasher:
    """The hashing trick: ``id = 1 + siphash(value) mod buckets`` (pandas' ``hash_array`` with a fixed key,
    so ids are the same in every process and run, unlike Python's salted ``hash``). Missing -> 0.

    Integers and strings hash differently; the value kind is fixed at the first fit (or by ``kind``), and
    later values are cast to it (``7`` and ``'7'`` get one id).
    """

    def __init__(self, buckets: int, kind: Optional[str] = None, field: str = "?"):
        if not isinstance(buckets, int) or buckets < 1:
            raise ConfigError(f"field {field!r}: buckets must be a positive integer, got {buckets!r}.")
        if kind not in (None, "int", "str"):
            raise ConfigError(f"field {field!r}: kind must be 'int', 'str' or None, got {kind!r}.")
        self.buckets, self.kind, self.field = buckets, kind, field

    @property
    def size(self) -> int:
        return self.buckets + 1

    def partial_fit(self, col: pd.Series) -> "Hasher":
        if self.kind is None and col.notna().any():
            self.kind = value_kind(col.dropna(), self.field)
        return self

    def lookup(self, col: pd.Series) -> np.ndarray:
        if self.kind is None:
            self.partial_fit(col)
        kind = self.kind or "str"
        vals = coerce_values(col, kind, self.field)
        codes, uniques = pd.factorize(vals)               # hash the distinct values once
        h = pd.util.hash_array(np.asarray(uniques, dtype=np.int64 if kind == "int" else object),
                               hash_key=HASH_KEY, categorize=False)
        per_value = (h % np.uint64(self.buckets)).astype(np.int64) + 1
        return np.append(per_value, PAD)[codes]


class Categorical(Feature):
    """A token field through a :class:`Vocabulary` (``min_freq``, OOV bucket, growth by ``partial_fit``).

    Output: ``int64 [N]``, size ``len(vocabulary) + 2``.

    Example:
        >>> f = Categorical("city", min_freq=2).partial_fit(pd.Series(["a", "a", "b"]))
        >>> f.transform(pd.Series(["a", "b", None]))["city"].tolist()
        [2, 1, 0]
    """

    kind_name = "categorical"

    def __init__(self, name: str, min_freq: int = 1, max_size: Optional[int] = None, output: str = None):
        super().__init__(name, output)
        self.vocab = Vocabulary(min_freq, max_size, field=name)

    def reset(self) -> None:
        super().reset()
        self.vocab.reset()

    @property
    def size(self) -> int:
        return self.vocab.size

    def _partial_fit(self, col):
        self.vocab.partial_fit(col)

    def _transform(self, col):
        return {self.output: self.vocab.lookup(col)}

    def config(self):
        return {**super().config(), "min_freq": self.vocab.min_freq, "max_size": self.vocab.max_size}

    def _state(self):
        return self.vocab.state()

    def _load(self, state):
        self.vocab.load(state)


class Hashed(Feature):
    """A high-cardinality token field hashed into ``buckets`` ids (no vocabulary kept).

    Output: ``int64 [N]`` in ``1..buckets`` (0 = missing), size ``buckets + 1``.
    """

    kind_name = "hashed"

    def __init__(self, name: str, buckets: int, kind: Optional[str] = None, output: str = None):
        super().__init__(name, output)
        self.hasher = Hasher(buckets, kind, field=name)
        self._given_kind = kind

    def reset(self) -> None:
        super().reset()
        self.hasher.kind = self._given_kind

    @property
    def size(self) -> int:
        return self.hasher.size

    def _partial_fit(self, col):
        self.hasher.partial_fit(col)

    def _transform(self, col):
        return {self.output: self.hasher.lookup(col)}

    def config(self):
        return {**super().config(), "buckets": self.hasher.buckets, "kind": self._given_kind}

    def _state(self):
        return {"kind": self.hasher.kind}

    def _load(self, state):
        self.hasher.kind = state["kind"]


def grow_embedding(embedding: nn.Embedding, num_embeddings: int, init_std: float = 1e-4) -> nn.Embedding:
    """A new ``nn.Embedding`` of ``num_embeddings`` rows whose first rows are ``embedding``'s (same device,
    dtype, ``padding_idx``); the new rows are ``N(0, init_std^2)``. Rebuild the optimizer afterwards (its
    state refers to the old parameter).

    Raises:
        ConfigError: ``num_embeddings`` is smaller than the current table (ids would be lost).

    Example:
        >>> old = nn.Embedding(4, 2, padding_idx=0)
        >>> new = grow_embedding(old, 6)
        >>> bool((new.weight[:4] == old.weight).all()), new.num_embeddings
        (True, 6)
    """
    old_n = embedding.num_embeddings
    if num_embeddings < old_n:
        raise ConfigError(f"grow_embedding: cannot shrink a table of {old_n} rows to {num_embeddings}; "
                          f"vocabulary ids are never removed.")
    if num_embeddings == old_n:
        return embedding
    w = embedding.weight
    new = nn.Embedding(num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx,
                       max_norm=embedding.max_norm, sparse=embedding.sparse, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.normal_(std=init_std)
        new.weight[:old_n] = w
        if embedding.padding_idx is not None:
            new.weight[embedding.padding_idx].zero_()
    new.weight.requires_grad_(w.requires_grad)
    return new


def grow_field_embedding(module: nn.Module, sizes: dict, init_std: float = 1e-4) -> list:
    """Grow, in place, the token tables of a
    :class:`~recstudio.model.module.field_embedding.FieldEmbedding` (its ``embed`` and first-order
    ``weights``) to ``sizes`` (``key -> rows``, e.g. ``FeaturePipeline.sizes()``). Returns the keys that grew.

    Raises:
        DataError: a key of ``sizes`` is not a token field of the module.
    """
    grown = []
    for key, rows in sizes.items():
        for part in (module.embed, module.weights):
            if part is None:
                continue
            if key not in part:
                raise DataError(f"grow_field_embedding: {key!r} is not a field of the module "
                                f"(fields: {sorted(part.keys())}).")
            enc = part[key]
            if getattr(enc, "table", None) is None:
                continue
            if rows > enc.table.num_embeddings:
                enc.table = grow_embedding(enc.table, int(rows), init_std)
                if key not in grown:
                    grown.append(key)
    return grown
