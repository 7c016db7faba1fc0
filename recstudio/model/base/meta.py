"""What a model knows about its data: sizes, feature fields, popularity, id maps, histories.

Built from the training split and saved inside checkpoints, so a model can be rebuilt and can
recommend in original ids without the dataset (``recstudio.load``).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from recstudio.data.fields import FieldType
from recstudio.data.table import IdMap


def _fields(table, key: str) -> Dict[str, Tuple[str, int]]:
    """field -> (type, vocab size with padding | width | 1) of a per-id feature table."""
    out = {}
    if table is None:
        return out
    for name, t in table.types.items():
        if name == key:
            continue
        col = table[name]
        size = int(col.max()) + 1 if FieldType(t).is_token else (col.shape[1] if col.ndim > 1 else 1)
        out[name] = (FieldType(t).value, size)
    return out


@dataclass
class DataMeta:
    """Data facts a model is built from.

    Args:
        num_users, num_items: embedding rows, padding row 0 included.
        uid_field, iid_field: batch keys of user and item ids.
        item_counts: train interactions per item id (index 0 = padding, 0).
        user_fields, item_fields: feature field -> (type, vocab size or width).
        user_features, item_features: feature tensors per id (row 0 padding).
        user_tokens, item_tokens: original ids of inner ids 1..n.
        history_indptr, history_indices: every user's known interactions in time order
            (train + valid + test), used by ``recommend`` to mask seen items and build queries.
        rating_field: the rating field of batches (``None`` without ratings).
        rating_mean: mean train rating (0 without ratings).
    """

    num_users: int
    num_items: int
    uid_field: str
    iid_field: str
    item_counts: torch.Tensor
    user_fields: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    item_fields: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    user_features: Dict[str, torch.Tensor] = field(default_factory=dict)
    item_features: Dict[str, torch.Tensor] = field(default_factory=dict)
    user_tokens: Optional[np.ndarray] = None
    item_tokens: Optional[np.ndarray] = None
    history_indptr: Optional[torch.Tensor] = None
    history_indices: Optional[torch.Tensor] = None
    rating_field: Optional[str] = None
    rating_mean: float = 0.0

    @classmethod
    def from_split(cls, split) -> "DataMeta":
        ds = split.dataset
        counts = np.bincount(ds.items[split.train], minlength=ds.num_items).astype(np.float32)
        offsets = ds.user_offsets  # all interactions, user-sorted then time-sorted
        feats = lambda t, key: {} if t is None else {n: torch.as_tensor(t[n]) for n in t.names if n != key}
        return cls(
            num_users=ds.num_users, num_items=ds.num_items, uid_field=ds.uid_field, iid_field=ds.iid_field,
            item_counts=torch.as_tensor(counts), user_fields=_fields(ds.user_feat, ds.uid_field),
            item_fields=_fields(ds.item_feat, ds.iid_field), user_features=feats(ds.user_feat, ds.uid_field),
            item_features=feats(ds.item_feat, ds.iid_field), user_tokens=ds.id_maps["user"].tokens,
            item_tokens=ds.id_maps["item"].tokens, history_indptr=torch.as_tensor(offsets),
            history_indices=torch.as_tensor(ds.items), rating_field=ds.rating_field,
            rating_mean=float(ds.inter[ds.rating_field][split.train].mean()) if ds.rating_field else 0.0)

    @property
    def user_map(self) -> IdMap:
        return IdMap(self.user_tokens, "user")

    @property
    def item_map(self) -> IdMap:
        return IdMap(self.item_tokens, "item")

    def to_state(self) -> Dict[str, Any]:
        """Plain types and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        tok = lambda a: a.tolist()
        return {"num_users": self.num_users, "num_items": self.num_items, "uid_field": self.uid_field,
                "iid_field": self.iid_field, "item_counts": self.item_counts,
                "user_fields": {k: list(v) for k, v in self.user_fields.items()},
                "item_fields": {k: list(v) for k, v in self.item_fields.items()},
                "user_features": self.user_features, "item_features": self.item_features,
                "user_tokens": tok(self.user_tokens), "item_tokens": tok(self.item_tokens),
                "history_indptr": self.history_indptr, "history_indices": self.history_indices,
                "rating_field": self.rating_field, "rating_mean": self.rating_mean}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "DataMeta":
        s = dict(state)
        s["user_fields"] = {k: tuple(v) for k, v in s["user_fields"].items()}
        s["item_fields"] = {k: tuple(v) for k, v in s["item_fields"].items()}
        s["user_tokens"] = np.asarray(s["user_tokens"])
        s["item_tokens"] = np.asarray(s["item_tokens"])
        return cls(**s)
