"""Frappe (Baltrunas et al., 2015): context-aware mobile app usage logs, as a CTR dataset.

Raw files (tab-separated, UTF-8, with a header line): ``frappe.csv`` (``user item cnt daytime weekday
isweekend homework cost weather country city``: one row per (user, app, context) with its usage count)
and ``meta.csv`` (``item package category downloads developer icon language description name price
rating short desc``).

The CTR protocol of the NFM / AFM papers and of BARS (Frappe_x1): every log row is a positive
(``label`` 1.0) and gets ``num_neg`` sampled negatives (``label`` 0.0) in the same context; the
negatives' apps are drawn uniformly, with replacement, from the apps the user never used (in any
context), seeded by ``seed``. With ``num_neg=2`` that is 96,203 x 3 = 288,609 rows. (BARS samples
random apps; excluding the user's own apps keeps every negative a true non-use.) ``cnt`` is dropped:
a negative has none, so it would give the label away.

Atomic output:

- ``.inter``: ``user:token item:token daytime:token weekday:token isweekend:token homework:token
  cost:token weather:token country:token city:token label:float``
- ``.item`` (only with ``item_features``): ``item:token`` and the chosen ``meta.csv`` columns as tokens
  (e.g. ``[category, language, price]``; a missing value is the token ``unknown``).
"""
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import (FLOAT, TOKEN, clean_text, find_file, frame, read_delimited,
                                               read_lines, table)
from recstudio.utils.errors import ConfigError, DataError

S = pa.string()
CONTEXT = ("daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
COLUMNS = ("user", "item", "cnt") + CONTEXT
META_COLUMNS = ("item", "package", "category", "downloads", "developer", "icon", "language", "description", "name",
                "price", "rating", "short desc")


def sample_negatives(users: np.ndarray, items: np.ndarray, num_neg: int, seed: int) -> np.ndarray:
    """``[len(users), num_neg]`` item codes, for each row drawn uniformly (with replacement) from the items
    its user never has in ``(users, items)``; ``users`` / ``items`` are integer codes.

    Raises:
        DataError: a user who has used every item (no negative exists).

    Example:
        >>> sample_negatives(np.array([0, 0, 1]), np.array([0, 1, 2]), 2, seed=0)[:2].tolist()
        [[2, 2], [2, 2]]
    """
    n_items = int(items.max()) + 1
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), num_neg), dtype=np.int64)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = order[lo:hi]
        free = np.setdiff1d(np.arange(n_items), items[rows])
        if len(free) == 0:
            raise DataError(f"frappe: user code {users[rows[0]]} used every app; no negative can be drawn.")
        out[rows] = free[rng.integers(0, len(free), size=(len(rows), num_neg))]
    return out


def _meta(path, columns: Sequence[str]) -> pd.DataFrame:
    lines = read_lines(path)
    header = lines[0].split("\t")
    if tuple(header) != META_COLUMNS:
        raise DataError(f"{path}: expected the header {list(META_COLUMNS)}, got {header}.")
    rows = [line.split("\t") for line in lines[1:]]
    bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise DataError(f"{path}: lines {bad[:5]} do not have {len(header)} tab-separated columns.")
    df = pd.DataFrame(rows, columns=header)[["item", *columns]]
    for c in columns:
        df[c] = df[c].map(lambda v: clean_text(v) or "unknown")
    return df


@register_converter("frappe")
def convert_frappe(source, num_neg: int = 2, seed: int = 2022, item_features: Sequence[str] = ()):
    """Convert Frappe into a labelled CTR interaction table (see the module docstring).

    Args:
        source: the folder holding ``frappe.csv`` (and ``meta.csv``), at any depth.
        num_neg: sampled negatives per log row (2: the BARS / NFM protocol, 288,609 rows).
        seed: seed of the negative sampling.
        item_features: ``meta.csv`` columns to write as item token features (default none, as BARS).

    Returns:
        ``{'inter'[, 'item']}``.

    Example:
        >>> len(convert_frappe("/data/frappe/raw")["inter"])      # doctest: +SKIP
        288609
    """
    if isinstance(num_neg, bool) or not isinstance(num_neg, int) or num_neg < 0:
        raise ConfigError(f"frappe converter: num_neg must be an integer >= 0, got {num_neg!r}.")
    usable = [c for c in META_COLUMNS[1:] if " " not in c]
    unknown = [c for c in item_features if c not in usable]
    if unknown:
        raise ConfigError(f"frappe converter: item_features {unknown} are not among the meta.csv columns {usable}.")
    path = find_file(source, "frappe.csv")
    logs = frame(read_delimited(path, COLUMNS, "\t", {c: S for c in COLUMNS if c != "cnt"}, skip_header=True))
    if len(logs) == 0:
        raise DataError(f"{path} holds no log rows.")
    user_codes, _ = pd.factorize(logs["user"])
    item_codes, item_tokens = pd.factorize(logs["item"])
    pos = logs[["user", "item", *CONTEXT]].assign(label=1.0)
    parts = [pos]
    if num_neg:
        neg_items = sample_negatives(user_codes, item_codes, num_neg, seed)
        for k in range(num_neg):
            parts.append(pos.assign(item=np.asarray(item_tokens)[neg_items[:, k]], label=0.0))
    # each positive followed by its negatives
    inter = pd.concat(parts, ignore_index=True)
    n = len(pos)
    inter = inter.iloc[np.arange(n * len(parts)).reshape(len(parts), n).T.reshape(-1)].reset_index(drop=True)
    types = {"user": TOKEN, "item": TOKEN, **{c: TOKEN for c in CONTEXT}, "label": FLOAT}
    tables = {"inter": table(inter, types)}
    if item_features:
        meta = _meta(find_file(source, "meta.csv"), list(item_features))
        tables["item"] = table(meta, {"item": TOKEN, **{c: TOKEN for c in item_features}})
    return tables
