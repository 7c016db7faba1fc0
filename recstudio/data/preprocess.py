"""Preprocessing: atomic tables -> a :class:`~recstudio.data.dataset.RecDataset`.

Steps, in order (each configurable, see :mod:`recstudio.data.config`):

1. drop interactions whose user or item is missing;
2. ``rating_threshold`` (keep rating >= threshold), then ``binarize`` (rating := 1);
3. ``dedup`` of repeated (user, item) pairs: keep ``first`` / ``last`` by time (file order
   when there is no time field) or ``all``;
4. iterative k-core: ``min_user_inter`` / ``min_item_inter`` until both hold;
5. id remapping to ``1..n`` with 0 reserved for padding; users and items are those left in
   the interactions (feature rows of other ids are dropped);
6. features: token fields remapped per field, ``token_seq`` split on ``seq_separator`` into
   padded id matrices, floats scaled (``float_scaling``) or binned (``discretize``);
7. interactions sorted by user, then time.

A step that leaves no interaction raises :class:`DataError` naming the step and the counts.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from recstudio.data.atomic import AtomicTable
from recstudio.data.dataset import RecDataset
from recstudio.data.fields import FieldType
from recstudio.data.table import FeatureTable, IdMap, portable_tokens
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean


# ---- column helpers ---------------------------------------------------------------------
def token_codes(col: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = missing) and the categories of a token column."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    return col.cat.codes.to_numpy().astype(np.int64), col.cat.categories.to_numpy()


def float_values(col: pd.Series, field: str, where: str) -> np.ndarray:
    """A float column as float64, with a clear error for non-numeric values."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{where}: field {field!r} must be numeric but row {row} holds {col.iloc[row]!r}; "
                        "fix the value or declare the field as a token.")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def time_seconds(col: pd.Series, field: str, time_format: Optional[str], where: str) -> np.ndarray:
    """Parse a time column into float64 Unix seconds.

    Numbers are taken as seconds; datetimes converted; text parsed with ``time_format``
    (strptime) or as ISO-8601 when the format is ``None``.
    """
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        dt = col
    elif pd.api.types.is_numeric_dtype(col.dtype) and time_format is None:
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = col.astype(str)
        try:
            dt = pd.to_datetime(text, format=time_format if time_format else "ISO8601", utc=True)
        except (ValueError, TypeError) as e:
            raise DataError(f"{where}: cannot parse time field {field!r} (first value {text.iloc[0]!r}) with "
                            f"format {time_format or 'ISO-8601'}: {e}. Set time_format to a strptime "
                            "format such as '%Y-%m-%d %H:%M:%S'.") from e
    if getattr(dt.dt, "tz", None) is None:
        dt = dt.dt.tz_localize("UTC")
    return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64,
                                                                                 na_value=np.nan)


def split_sequences(values, sep: str, numeric: bool) -> Tuple[np.ndarray, np.ndarray, object]:
    """Split sequence cells (strings joined by ``sep``, or lists) into (row, position, value) arrays."""
    s = pd.Series(list(values), dtype=object)
    lists = s.map(lambda v: [] if v is None or (isinstance(v, float) and np.isnan(v))
                  else (list(v) if isinstance(v, (list, tuple, np.ndarray)) else
                        [t for t in str(v).split(sep) if t != ""]))
    lengths = lists.map(len).to_numpy(dtype=np.int64)
    rows = np.repeat(np.arange(len(s)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = np.arange(len(rows)) - starts
    flat = [v for lst in lists for v in lst]
    if numeric:
        flat = pd.to_numeric(pd.Series(flat, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(flat).any():
            raise DataError("a float_seq cell holds a non-numeric value; check seq_separator.")
    return rows, pos, flat


def _check_not_empty(n_after: int, n_before: int, step: str, hint: str) -> None:
    if n_after == 0:
        raise DataError(f"the {step} removed every interaction ({n_before} before, 0 after). {hint}")


def kcore_rows(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Indices of the interactions kept by the iterative k-core filter.

    Args:
        users, items: non-negative integer codes of each interaction.
        min_user, min_item: minimum interactions per user / item.

    Example:
        >>> kcore_rows(np.array([0, 0, 1]), np.array([0, 1, 0]), 2, 1)
        array([0, 1])
    """
    idx = np.arange(len(users))
    if min_user <= 1 and min_item <= 1:
        return idx
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    while len(idx):
        ok = (np.bincount(users, minlength=nu)[users] >= min_user) & \
             (np.bincount(items, minlength=ni)[items] >= min_item)
        if ok.all():
            break
        users, items, idx = users[ok], items[ok], idx[ok]
    return idx


def dedup_rows(key: np.ndarray, order_key: Optional[np.ndarray], keep: str) -> np.ndarray:
    """Boolean mask of rows kept when repeated ``key`` values are deduplicated.

    ``keep`` is ``'first'``/``'last'`` by ``order_key`` (file order when ``None``), or ``'all'``.
    """
    if keep == "all":
        return np.ones(len(key), dtype=bool)
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if not dup.any():
        return np.ones(len(key), dtype=bool)
    sub = np.flatnonzero(dup)
    secondary = order_key[sub] if order_key is not None else sub
    order = sub[np.lexsort((sub, secondary, key[sub]))]
    k = key[order]
    pick = np.r_[True, k[1:] != k[:-1]] if keep == "first" else np.r_[k[1:] != k[:-1], True]
    mask = ~dup
    mask[order[pick]] = True
    return mask


# ---- the pipeline ---------------------------------------------------------------------
class _Vocabs:
    """Collects id maps and which vocabulary each token field uses."""

    def __init__(self):
        self.maps: Dict[str, IdMap] = {}
        self.field_vocab: Dict[str, str] = {}

    def add(self, vocab: str, tokens, fields: List[str]):
        self.maps[vocab] = IdMap(portable_tokens(tokens), vocab)
        for f in fields:
            if f in self.field_vocab and self.field_vocab[f] != vocab:
                raise DataError(f"field name {f!r} is used in two tables with different meanings; rename one.")
            self.field_vocab[f] = vocab


def _remap_codes(codes: np.ndarray, categories: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Codes (-1 missing) -> inner ids 1..n over the categories that occur (0 = missing)."""
    valid = codes >= 0
    present = np.bincount(codes[valid], minlength=len(categories)) > 0
    mapping = np.cumsum(present).astype(np.int64)
    inner = np.where(valid, mapping[np.where(valid, codes, 0)], 0)
    return inner, categories[present]


class Preprocessor:
    """Turns atomic tables into a :class:`RecDataset` following a resolved data config.

    Args:
        config: a config from :func:`recstudio.data.config.resolve_data_config`.
        name: the dataset name.

    Example:
        >>> ds = Preprocessor(resolve_data_config(), "toy").run(tables)      # doctest: +SKIP
    """

    def __init__(self, config: dict, name: str):
        self.config = config
        self.name = name
        self.vocabs = _Vocabs()
        # [ranker-serving hook] interaction float field -> how it was scaled / binned (RecDataset.float_transforms)
        self.float_transforms: Dict[str, dict] = {}

    # -- interactions ------------------------------------------------------------------
    def run(self, tables: Dict[str, AtomicTable]) -> RecDataset:
        if "inter" not in tables:
            raise DataError(f"dataset {self.name!r} has no interaction table (.inter).")
        self._check_config_fields(tables)
        inter = self._interactions(tables["inter"])
        user_feat = self._features(tables.get("user"), "user", self.config["user_field"])
        item_feat = self._features(tables.get("item"), "item", self.config["item_field"])
        extra = self._extras(tables)
        ds = RecDataset(self.name, self.config, inter, self.vocabs.maps, self.vocabs.field_vocab,
                        user_feat, item_feat, extra)
        ds.float_transforms = self.float_transforms  # [ranker-serving hook]
        return ds

    def _check_config_fields(self, tables):
        cfg = self.config
        inter = tables["inter"]
        names = list(inter.types)
        for key in ("user_field", "item_field"):
            if cfg[key] not in inter.types:
                if key == "user_field" and cfg.get("session_field") is not None:  # [session-data] name the key
                    key = "session_field"
                raise DataError(f"{self.name}.inter has no field {cfg[key]!r} ({key}); its fields are {names}."
                                + did_you_mean(cfg[key], names) + f" Set {key}.")
        for key in ("rating_field", "time_field"):
            if cfg[key] is not None and cfg[key] not in inter.types:
                needs = {"rating_field": ("rating_threshold", "binarize"), "time_field": ()}[key]
                used = [k for k in needs if cfg[k] not in (None, False)]
                if used or cfg["split_order"] == "time" and key == "time_field" or \
                        cfg["split_mode"] == "loo" and key == "time_field":
                    raise DataError(f"{self.name}.inter has no field {cfg[key]!r} ({key}), which "
                                    f"{used or ['a temporal split']} needs; its fields are {names}."
                                    + did_you_mean(cfg[key], names))
                cfg[key] = None
        all_fields = {f: (s, t) for s, tab in tables.items() for f, t in tab.types.items()}
        for key in ("float_scaling", "discretize"):
            for f in cfg[key]:
                if f not in all_fields:
                    raise ConfigError(f"{key} names field {f!r}, which no table has."
                                      + did_you_mean(f, all_fields))
                if all_fields[f][1] != FieldType.FLOAT:
                    raise ConfigError(f"{key} names field {f!r}, which is a {all_fields[f][1].value} field; "
                                      "only float fields can be scaled or discretised.")

    def _interactions(self, table: AtomicTable) -> FeatureTable:
        cfg, frame, where = self.config, table.frame, f"{self.name}.inter"
        uf, itf, rf, tf = cfg["user_field"], cfg["item_field"], cfg["rating_field"], cfg["time_field"]
        ucodes, ucats = token_codes(frame[uf])
        icodes, icats = token_codes(frame[itf])
        rating = float_values(frame[rf], rf, where) if rf else None
        time = time_seconds(frame[tf], tf, cfg["time_format"], where) if tf else None
        rows = np.flatnonzero((ucodes >= 0) & (icodes >= 0))
        _check_not_empty(len(rows), len(frame), "removal of rows without a user or item id",
                         "Check user_field / item_field.")
        if cfg["rating_threshold"] is not None:
            before = len(rows)
            rows = rows[rating[rows] >= cfg["rating_threshold"]]
            _check_not_empty(len(rows), before, f"rating_threshold={cfg['rating_threshold']}",
                             f"Ratings range from {np.nanmin(rating)} to {np.nanmax(rating)}; lower the threshold.")
        if cfg["binarize"]:
            if rating is None:
                raise DataError(f"{where}: binarize needs a rating field; set rating_field.")
            rating = np.ones_like(rating)
        if cfg["dedup"] != "all":
            key = ucodes[rows] * max(len(icats), 1) + icodes[rows]
            rows = rows[dedup_rows(key, time[rows] if time is not None else None, cfg["dedup"])]
        if cfg["min_user_inter"] > 1 or cfg["min_item_inter"] > 1:
            before = len(rows)
            rows = rows[kcore_rows(ucodes[rows], icodes[rows], cfg["min_user_inter"], cfg["min_item_inter"])]
            _check_not_empty(len(rows), before,
                             f"k-core filter (min_user_inter={cfg['min_user_inter']}, "
                             f"min_item_inter={cfg['min_item_inter']})", "Lower min_user_inter / min_item_inter.")
        users, utokens = _remap_codes(ucodes[rows], ucats)
        items, itokens = _remap_codes(icodes[rows], icats)
        self.vocabs.add("user", utokens, [uf])
        self.vocabs.add("item", itokens, [itf])
        if time is not None:
            t = time[rows]
            o1 = np.argsort(t, kind="stable")
            order = o1[np.argsort(users[o1], kind="stable")]
        else:
            order = np.argsort(users, kind="stable")
        rows = rows[order]
        columns = {uf: users[order], itf: items[order]}
        types = {uf: FieldType.TOKEN, itf: FieldType.TOKEN}
        if rating is not None:
            columns[rf], types[rf] = rating[rows].astype(np.float32), FieldType.FLOAT
        if time is not None:
            columns[tf], types[tf] = time[rows], FieldType.FLOAT
        sub = frame.iloc[rows] if len(table.types) > len(columns) else None
        for f, t in table.types.items():
            if f in columns:
                continue
            col, typ = self._feature_column(sub[f], f, t, where)
            columns[f], types[f] = col, typ
        return FeatureTable(columns, types)

    # -- features ----------------------------------------------------------------------
    def _feature_column(self, col: pd.Series, field: str, ftype: FieldType, where: str):
        cfg = self.config
        if ftype == FieldType.TOKEN:
            codes, cats = token_codes(col)
            inner, tokens = _remap_codes(codes, cats)
            self.vocabs.add(field, tokens, [field])
            return inner, FieldType.TOKEN
        if ftype == FieldType.FLOAT:
            x = float_values(col, field, where)
            inter = where == f"{self.name}.inter"  # [ranker-serving hook] record the transform for serving
            if field in cfg["discretize"]:
                return self._discretize(x, field, cfg["discretize"][field], record=inter), FieldType.TOKEN
            if field in cfg["float_scaling"]:
                if inter:
                    self.float_transforms[field] = scale_params(x, cfg["float_scaling"][field])
                x = scale(x, cfg["float_scaling"][field], field)
            return x.astype(np.float32), FieldType.FLOAT
        dense = _dense_vectors(col) if ftype == FieldType.FLOAT_SEQ else None
        if dense is not None:
            return dense, ftype
        rows, pos, flat = split_sequences(col.to_numpy(dtype=object), cfg["seq_separator"],
                                          ftype == FieldType.FLOAT_SEQ)
        width = int(pos.max()) + 1 if len(pos) else 1
        if ftype == FieldType.TOKEN_SEQ:
            codes, uniques = pd.factorize(pd.Series(flat, dtype=object))
            out = np.zeros((len(col), width), dtype=np.int64)
            out[rows, pos] = codes + 1
            self.vocabs.add(field, np.asarray(uniques), [field])
        else:
            out = np.zeros((len(col), width), dtype=np.float32)
            out[rows, pos] = flat
        return out, ftype

    def _discretize(self, x: np.ndarray, field: str, bins: int, record: bool = False) -> np.ndarray:
        codes, edges = pd.qcut(x, q=bins, labels=False, retbins=True, duplicates="drop")
        if record:  # [ranker-serving hook]
            self.float_transforms[field] = {"discretize": [float(e) for e in edges]}
        codes = np.where(np.isnan(codes), -1, codes).astype(np.int64)
        labels = np.array([f"[{edges[k]:.6g}, {edges[k + 1]:.6g}]" for k in range(len(edges) - 1)])
        inner, tokens = _remap_codes(codes, labels)
        self.vocabs.add(field, tokens, [field])
        return inner

    def _features(self, table: Optional[AtomicTable], kind: str, key: str) -> Optional[FeatureTable]:
        """One row per inner id (row 0 = padding; ids without a feature row get padding/0)."""
        if table is None:
            return None
        where = f"{self.name}.{kind}"
        if key not in table.types:
            raise DataError(f"{where} has no key field {key!r}; its fields are {list(table.types)}. "
                            f"It must share the {kind} field of the .inter file.")
        ids = self.vocabs.maps[kind].encode(table.frame[key].astype(str).to_numpy()
                                            if self.vocabs.maps[kind].tokens.dtype.kind in "US"
                                            else table.frame[key].to_numpy(), missing="zero")
        keep = np.flatnonzero(ids > 0)
        keep = keep[~pd.Series(ids[keep]).duplicated().to_numpy()]
        n = len(self.vocabs.maps[kind]) + 1
        sub = table.frame.iloc[keep]
        target = ids[keep]
        columns, types = {key: np.arange(n, dtype=np.int64)}, {key: FieldType.TOKEN}
        for f, t in table.types.items():
            if f == key:
                continue
            col, typ = self._feature_column(sub[f], f, t, where)
            full = np.zeros((n,) + col.shape[1:], dtype=col.dtype)
            full[target] = np.nan_to_num(col) if col.dtype.kind == "f" else col
            columns[f], types[f] = full, typ
        return FeatureTable(columns, types)

    def _extra_roles(self, suffix: str, table: AtomicTable) -> Dict[str, str]:
        """Which id space each token field of a ``.net`` / ``.link`` / ``.kg`` table uses."""
        tokens = [f for f, t in table.types.items() if t == FieldType.TOKEN]
        if suffix == "net":
            return {f: "user" for f in tokens}
        if suffix == "link":
            return {f: ("item" if f == self.config["item_field"] else "entity") for f in tokens}
        rel = [f for f in tokens if "relation" in f] or tokens[1:2]
        return {f: ("relation" if f in rel else "entity") for f in tokens}

    def _extras(self, tables: Dict[str, AtomicTable]) -> Dict[str, FeatureTable]:
        """Remap ``.link`` / ``.kg`` / ``.net``; rows naming unknown users/items are dropped.

        Entities of ``.link`` and ``.kg`` share one vocabulary (``entity``), relations have
        their own (``relation``).
        """
        present = {s: tables[s] for s in ("link", "kg", "net") if s in tables}
        roles = {s: self._extra_roles(s, t) for s, t in present.items()}
        for vocab in ("entity", "relation"):
            fields = [(s, f) for s in present for f, r in roles[s].items() if r == vocab]
            if fields:
                values = pd.concat([present[s].frame[f].astype(str) for s, f in fields], ignore_index=True)
                self.vocabs.add(vocab, pd.unique(values), [f for _, f in fields])
        out = {}
        for suffix, table in present.items():
            frame, types = table.frame, table.types
            keep = np.ones(len(frame), dtype=bool)
            columns = {}
            for f, role in roles[suffix].items():
                idmap = self.vocabs.maps[role]
                values = frame[f].astype(str).to_numpy() if idmap.tokens.dtype.kind in "US" else frame[f].to_numpy()
                columns[f] = idmap.encode(values, missing="zero")
                keep &= columns[f] > 0
            for f, t in types.items():
                if f not in columns and t == FieldType.FLOAT:
                    columns[f] = float_values(frame[f], f, f"{self.name}.{suffix}").astype(np.float32)
            if columns:
                out[suffix] = FeatureTable({f: v[keep] for f, v in columns.items()}, {f: types[f] for f in columns})
        return out


def _dense_vectors(col: pd.Series) -> Optional[np.ndarray]:
    """Fast path for equal-length vectors (e.g. item embeddings): a float32 matrix, or None."""
    values = col.to_numpy(dtype=object)
    if len(values) and all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        lengths = {len(v) for v in values}
        if len(lengths) == 1:
            return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in values]), dtype=np.float32)
    return None


def scale_params(x: np.ndarray, how: str) -> dict:
    """The statistics :func:`scale` uses on ``x``, as plain floats (saved with CTR models for serving).

    Example:
        >>> scale_params(np.array([0.0, 2.0]), "minmax")
        {'scaling': 'minmax', 'min': 0.0, 'max': 2.0}
    """
    if how == "standard":
        return {"scaling": how, "mean": float(np.nanmean(x)), "std": float(np.nanstd(x))}
    if how == "minmax":
        return {"scaling": how, "min": float(np.nanmin(x)), "max": float(np.nanmax(x))}
    return {"scaling": how}


def scale(x: np.ndarray, how: str, field: str) -> np.ndarray:
    """Scale a float column: ``standard`` (z-score), ``minmax`` (to [0, 1]) or ``log`` (log1p).

    Example:
        >>> scale(np.array([0.0, 2.0]), "minmax", "price")
        array([0., 1.])
    """
    if how == "standard":
        std = np.nanstd(x)
        return (x - np.nanmean(x)) / (std if std > 0 else 1.0)
    if how == "minmax":
        lo, hi = np.nanmin(x), np.nanmax(x)
        return (x - lo) / (hi - lo if hi > lo else 1.0)
    if np.nanmin(x) <= -1:
        raise DataError(f"log scaling of field {field!r} needs values > -1; its minimum is {np.nanmin(x)}.")
    return np.log1p(x)
