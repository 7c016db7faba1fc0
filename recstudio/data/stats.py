"""Dataset statistics: counts, density, activity and popularity distributions, features."""
from datetime import datetime, timezone
from typing import Dict, List, Tuple

import numpy as np

from recstudio.data.fields import FieldType


def gini(counts: np.ndarray) -> float:
    """Gini index of a popularity distribution: 0 = every item equally popular, -> 1 = one item has all.

    ``G = sum_i (2i - n - 1) x_(i) / (n sum x)`` over counts sorted ascending (``i = 1..n``).

    Example:
        >>> gini(np.array([1, 1, 1, 1]))
        0.0
        >>> round(gini(np.array([0, 0, 0, 4])), 2)
        0.75
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


class DatasetStatistics(dict):
    """A dict of named figures, with :meth:`table` to print them."""

    def table(self) -> str:
        """The statistics as an aligned two-column text table."""
        rows: List[Tuple[str, str]] = []
        for k, v in self.items():
            if isinstance(v, dict):
                rows.append((k, ""))
                rows.extend((f"  {kk}", _fmt(vv)) for kk, vv in v.items())
            else:
                rows.append((k, _fmt(v)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

    def __str__(self) -> str:
        return self.table()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _summary(x: np.ndarray) -> Dict[str, float]:
    return {"min": float(x.min()), "mean": float(x.mean()), "median": float(np.median(x)), "max": float(x.max())}


def _feature_summary(table, skip, first_row: int = 0) -> Dict[str, str]:
    """One line per field; ``first_row=1`` skips the padding row of per-id feature tables."""
    out = {}
    for name, t in table.types.items():
        if name in skip:
            continue
        col = table[name][first_row:]
        if t == FieldType.TOKEN:
            out[name] = f"token, {len(np.unique(col[col > 0]))} values, {int((col == 0).sum())} missing"
        elif t == FieldType.TOKEN_SEQ:
            lengths = (col > 0).sum(axis=1)
            out[name] = f"token_seq, {len(np.unique(col[col > 0]))} values, length mean {lengths.mean():.2f} " \
                        f"max {lengths.max()}"
        elif t == FieldType.FLOAT:
            out[name] = f"float, min {np.nanmin(col):.4g} mean {np.nanmean(col):.4g} max {np.nanmax(col):.4g}"
        else:
            out[name] = f"float_seq, width {col.shape[1]}"
    return out


def dataset_statistics(ds) -> DatasetStatistics:
    """Compute :class:`DatasetStatistics` of a :class:`~recstudio.data.dataset.RecDataset`.

    Includes users, items, interactions, density, per-user and per-item min / mean /
    median / max interactions, the Gini index of item popularity, the rating distribution,
    the time range and a one-line summary per feature field.
    """
    n_users, n_items, n_inter = len(ds.id_maps["user"]), len(ds.id_maps["item"]), ds.num_interactions
    per_user = np.diff(ds.user_offsets)[1:]
    per_item = np.bincount(ds.items, minlength=ds.num_items)[1:]
    s = DatasetStatistics()
    s["dataset"] = ds.name
    s["users"] = n_users
    s["items"] = n_items
    s["interactions"] = n_inter
    s["density"] = n_inter / max(n_users * n_items, 1)
    s["interactions per user"] = _summary(per_user)
    s["interactions per item"] = _summary(per_item)
    s["item popularity gini"] = gini(per_item)
    if ds.rating_field:
        r = ds.inter[ds.rating_field]
        values, counts = np.unique(r, return_counts=True)
        if len(values) <= 20:
            s["ratings"] = {f"{v:g}": int(c) for v, c in zip(values, counts)}
        else:
            s["ratings"] = _summary(r)
    if ds.time_field:
        t = ds.inter[ds.time_field]
        s["time range"] = " .. ".join(datetime.fromtimestamp(float(x), tz=timezone.utc).strftime("%Y-%m-%d")
                                      for x in (np.nanmin(t), np.nanmax(t)))
    inter_feats = _feature_summary(ds.inter, {ds.uid_field, ds.iid_field, ds.rating_field, ds.time_field})
    if inter_feats:
        s["interaction features"] = inter_feats
    if ds.user_feat is not None:
        s["user features"] = _feature_summary(ds.user_feat, {ds.uid_field}, first_row=1)
    if ds.item_feat is not None:
        s["item features"] = _feature_summary(ds.item_feat, {ds.iid_field}, first_row=1)
    for name, t in ds.extra.items():
        s[f"{name} rows"] = len(t)
    return s
