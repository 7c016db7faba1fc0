"""Variable-length token sequences (a user's recent items, tags); their pooling is
:class:`recstudio.model.module.pooling.SequencePooling`.

A cell holds a list of tokens, as a Python list / array or a string joined by ``sep``, optionally paired
with a weight column of the same lengths. The output is a fixed ``[N, max_len]`` id matrix ordered
latest-first, padded with 0 at the end and truncated to the ``max_len`` latest elements, plus a
``float32 [N, max_len]`` weight matrix (0 at padding) when a weight column is given. Everything is
vectorised: the cells are exploded once and scattered into the matrix.
"""
from typing import Optional, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recstudio.data.features.base import Feature
from recstudio.data.features.categorical import Hasher, Vocabulary
from recstudio.data.features.numeric import numeric_values
from recstudio.utils.errors import ConfigError, DataError


def explode_cells(col: pd.Series, sep: Optional[str], field: str) -> Tuple[pd.Series, np.ndarray]:
    """Cells -> (the flat elements in cell order, ``int64 [N]`` lengths). Missing / empty cells have length 0.

    A column of strings is split with pandas' vectorised ``str.split``; a column of lists is exploded.

    Raises:
        DataError: a cell that is neither a list nor (with ``sep``) a string.
    """
    col = col.reset_index(drop=True)
    inferred = pd.api.types.infer_dtype(col, skipna=True)
    if inferred == "string":
        if sep is None:
            raise DataError(f"field {field!r} is a token sequence but its cells are strings such as "
                            f"{col.dropna().iloc[0]!r}; set sep (e.g. sep='|') or pass lists.")
        arr = pa.array(col, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
        lists = pc.split_pattern(arr, pattern=sep)            # vectorised in Arrow
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return pd.Series(pc.list_flatten(lists).to_pandas()), lengths
    elif inferred != "empty":
        if sep is not None and inferred == "mixed":            # lists and strings mixed: split the strings
            col = col.map(lambda v: v.split(sep) if isinstance(v, str) else v, na_action="ignore")
        ok = col.map(lambda v: isinstance(v, (list, tuple, np.ndarray)), na_action="ignore")
        ok = ok.fillna(True).to_numpy(bool)
        if not ok.all():
            bad = col[~ok].iloc[0]
            hint = f"join them with sep={sep!r}" if sep is not None else "pass lists or set sep"
            raise DataError(f"field {field!r} is a token sequence; got {bad!r} ({type(bad).__name__}) in a cell "
                            f"({hint}).")
    lengths = col.map(len, na_action="ignore").fillna(0).to_numpy(np.int64) if len(col) else np.zeros(0, np.int64)
    flat = col[lengths > 0].explode()
    return flat.reset_index(drop=True), lengths


def scatter_latest_first(values: np.ndarray, lengths: np.ndarray, max_len: int, latest_last: bool,
                         fill=0) -> np.ndarray:
    """Flat per-row elements -> ``[N, max_len]``, latest element first, padded at the end, keeping the latest.

    ``latest_last=True``: each cell lists its elements oldest -> newest (a log in time order);
    ``False``: newest first already.
    """
    n = len(lengths)
    out = np.full((n, max_len), fill, dtype=values.dtype)
    if not values.size:
        return out
    row = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    k = np.arange(values.size) - np.repeat(starts, lengths)          # position within the cell
    pos = (np.repeat(lengths, lengths) - 1 - k) if latest_last else k
    keep = pos < max_len
    out[row[keep], pos[keep]] = values[keep]
    return out


class TokenSeq(Feature):
    """A token_seq field: ids ``int64 [N, max_len]`` (latest-first, 0-padded at the end) and, with
    ``weight``, weights ``float32 [N, max_len]`` under the key ``weight_output`` (default the weight column).

    The tokens map through an own :class:`Vocabulary` (``min_freq``, OOV = 1, growth), a :class:`Hasher`
    (``buckets``), or the vocabulary of another :class:`Categorical` feature (``vocab_of='item_id'``, the
    pipeline links it; that vocabulary is then fitted by its own field only, so history ids equal item ids).

    Args:
        name: the column.
        max_len: keep the ``max_len`` latest elements.
        sep: the separator of string cells (``None``: cells are lists).
        weight: a column of per-element weights, cells shaped like ``name``'s.
        order: ``'latest_last'`` (cells list oldest -> newest, as a time-ordered log) or ``'latest_first'``.
        min_freq, max_size: of the own vocabulary.
        buckets: hash the tokens into this many buckets instead.
        vocab_of: share the vocabulary of this Categorical feature (by its output key).
    """

    kind_name = "token_seq"
    type = "token_seq"

    def __init__(self, name: str, max_len: int, sep: Optional[str] = None, weight: Optional[str] = None,
                 order: str = "latest_last", min_freq: int = 1, max_size: Optional[int] = None,
                 buckets: Optional[int] = None, vocab_of: Optional[str] = None, weight_output: str = None,
                 output: str = None):
        super().__init__(name, output)
        if not isinstance(max_len, int) or max_len < 1:
            raise ConfigError(f"field {name!r}: max_len must be a positive integer, got {max_len!r}.")
        if order not in ("latest_last", "latest_first"):
            raise ConfigError(f"field {name!r}: order must be 'latest_last' or 'latest_first', got {order!r}.")
        if buckets is not None and vocab_of is not None:
            raise ConfigError(f"field {name!r}: give buckets or vocab_of, not both.")
        self.max_len, self.sep, self.weight, self.order = max_len, sep, weight, order
        self.min_freq, self.max_size, self.buckets, self.vocab_of = min_freq, max_size, buckets, vocab_of
        self.weight_output = (weight_output or weight) if weight else None
        self.lookup = Hasher(buckets, field=name) if buckets is not None else Vocabulary(min_freq, max_size, name)
        self.shared = False                                   # True once linked to another field's vocabulary

    def link(self, vocabulary: Vocabulary) -> None:
        self.lookup, self.shared = vocabulary, True

    def reset(self):
        super().reset()
        if not self.shared:
            if isinstance(self.lookup, Vocabulary):
                self.lookup.reset()
            else:
                self.lookup.kind = None

    @property
    def size(self) -> int:
        return self.lookup.size

    def specs(self):
        out = {self.output: ("token_seq", self.size)}
        if self.weight_output:
            out[self.weight_output] = ("float_seq", self.max_len)
        return out

    @property
    def columns(self):
        return [self.name] + ([self.weight] if self.weight else [])

    def _partial_fit(self, col):
        if not self.shared:
            flat, _ = explode_cells(col, self.sep, self.name)
            self.lookup.partial_fit(flat)

    def transform_columns(self, col: pd.Series, weight_col: Optional[pd.Series] = None):
        if not self.fitted:
            raise DataError(f"feature {self.name!r} is not fitted; call FeaturePipeline.fit(train_frame) first.")
        flat, lengths = explode_cells(col, self.sep, self.name)
        ids = self.lookup.lookup(flat) if len(flat) else np.empty(0, dtype=np.int64)
        latest_last = self.order == "latest_last"
        out = {self.output: scatter_latest_first(ids, lengths, self.max_len, latest_last)}
        if self.weight:
            if weight_col is None:
                raise DataError(f"field {self.name!r} is weighted by column {self.weight!r}, which is missing.")
            wflat, wlen = explode_cells(weight_col, self.sep, self.weight)
            if not np.array_equal(wlen, lengths):
                row = int(np.flatnonzero(wlen != lengths)[0])
                raise DataError(f"field {self.name!r}: row {row} has {lengths[row]} tokens but its weight column "
                                f"{self.weight!r} has {wlen[row]} weights; they must pair one to one.")
            w = numeric_values(wflat, self.weight) if len(wflat) else np.empty(0)
            w = np.where(np.isnan(w), 0.0, w).astype(np.float32)
            out[self.weight_output] = scatter_latest_first(w, lengths, self.max_len, latest_last, fill=0.0)
        return out

    def _transform(self, col):
        return self.transform_columns(col)

    def config(self):
        return {**super().config(), "max_len": self.max_len, "sep": self.sep, "weight": self.weight,
                "order": self.order, "min_freq": self.min_freq, "max_size": self.max_size,
                "buckets": self.buckets, "vocab_of": self.vocab_of, "weight_output": self.weight_output}

    def _state(self):
        if self.shared:
            return {}
        if isinstance(self.lookup, Vocabulary):
            return self.lookup.state()
        return {"kind": self.lookup.kind}

    def _load(self, state):
        if self.shared:
            return
        if isinstance(self.lookup, Vocabulary):
            self.lookup.load(state)
        else:
            self.lookup.kind = state["kind"]
