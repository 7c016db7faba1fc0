"""The processed dataset: remapped interactions, features and id maps."""
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import scipy.sparse as sp

from recstudio.data.table import FeatureTable, IdMap


class RecDataset:
    """A preprocessed dataset: the result of loading, filtering and remapping.

    Users and items have inner ids ``1..n`` (0 is padding), so embedding tables have
    ``num_users`` / ``num_items`` rows *including* the padding row. Interactions are
    sorted by user, then time (file order when there is no time field).

    Args:
        name: the dataset name.
        config: the resolved data config (see :mod:`recstudio.data.config`).
        inter: interactions (user field, item field, rating, time, other fields).
        id_maps: vocabulary name -> :class:`IdMap`; ``"user"`` and ``"item"`` always, plus
            one per other token field (named after the field).
        field_vocab: token field -> the vocabulary it uses.
        user_feat, item_feat: feature tables with one row per inner id (row 0 padding).
        extra: other atomic tables after remapping (``kg``, ``link``, ``net``).

    Example:
        >>> import pandas as pd
        >>> from recstudio.data import from_dataframe
        >>> ds = from_dataframe(pd.DataFrame({"u": ["a", "a", "b"], "i": [1, 2, 1]}), user="u", item="i")
        >>> ds.num_users, ds.num_items, ds.num_interactions
        (3, 3, 3)
    """

    def __init__(self, name: str, config: Dict[str, Any], inter: FeatureTable, id_maps: Dict[str, IdMap],
                 field_vocab: Dict[str, str], user_feat: Optional[FeatureTable] = None,
                 item_feat: Optional[FeatureTable] = None, extra: Optional[Dict[str, FeatureTable]] = None):
        self.name = name
        self.config = config
        self.inter = inter
        self.id_maps = id_maps
        self.field_vocab = field_vocab
        self.user_feat = user_feat
        self.item_feat = item_feat
        self.extra = extra or {}
        # [ranker-serving hook] interaction float field -> its float_scaling statistics / discretize edges
        # (set by the Preprocessor; None: unknown, e.g. a dataset cached before they were recorded)
        self.float_transforms: Optional[Dict[str, dict]] = None
        self.uid_field = config["user_field"]
        self.iid_field = config["item_field"]
        self.rating_field = config["rating_field"] if config["rating_field"] in inter else None
        self.time_field = config["time_field"] if config["time_field"] in inter else None
        self._user_offsets = None

    # ---- sizes -----------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        """Rows of a user embedding table: real users + 1 (padding)."""
        return len(self.id_maps["user"]) + 1

    @property
    def num_items(self) -> int:
        """Rows of an item embedding table: real items + 1 (padding)."""
        return len(self.id_maps["item"]) + 1

    @property
    def num_interactions(self) -> int:
        return len(self.inter)

    @property
    def users(self) -> np.ndarray:
        """Inner user id of every interaction."""
        return self.inter[self.uid_field]

    @property
    def items(self) -> np.ndarray:
        """Inner item id of every interaction."""
        return self.inter[self.iid_field]

    @property
    def user_offsets(self) -> np.ndarray:
        """``inter`` rows of user ``u`` are ``offsets[u]:offsets[u+1]`` (interactions are user-sorted)."""
        if self._user_offsets is None:
            counts = np.bincount(self.users, minlength=self.num_users)
            self._user_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self._user_offsets

    def vocab_size(self, field: str) -> int:
        """Embedding rows (with padding) for a token or token_seq field."""
        return len(self.id_maps[self.field_vocab[field]]) + 1

    # ---- ids -------------------------------------------------------------------------
    def encode_users(self, users, missing: str = "raise") -> np.ndarray:
        """Inner ids of original user ids."""
        return self.id_maps["user"].encode(users, missing)

    def encode_items(self, items, missing: str = "raise") -> np.ndarray:
        """Inner ids of original item ids."""
        return self.id_maps["item"].encode(items, missing)

    def decode_users(self, inner) -> np.ndarray:
        """Original user ids of inner ids."""
        return self.id_maps["user"].decode(inner)

    def decode_items(self, inner) -> np.ndarray:
        """Original item ids of inner ids."""
        return self.id_maps["item"].decode(inner)

    # ---- views -----------------------------------------------------------------------
    def interaction_matrix(self, rows: Optional[np.ndarray] = None, value: Optional[str] = None) -> sp.csr_matrix:
        """A ``num_users x num_items`` CSR matrix of the interactions at ``rows`` (all by default).

        Args:
            rows: interaction row indices (or a boolean mask); ``None`` for all.
            value: a float field for the values (e.g. the rating field); ``None`` gives 1.0.
                Repeated (user, item) pairs are summed.
        """
        u, i = self.users, self.items
        data = self.inter[value] if value else None
        if rows is not None:
            u, i = u[rows], i[rows]
            data = data[rows] if data is not None else None
        data = np.ones(len(u), dtype=np.float32) if data is None else data.astype(np.float32)
        m = sp.csr_matrix((data, (u, i)), shape=(self.num_users, self.num_items))
        m.sum_duplicates()
        return m

    def statistics(self):
        """Counts, densities, popularity skew and feature summaries (see :mod:`recstudio.data.stats`)."""
        from recstudio.data.stats import dataset_statistics
        return dataset_statistics(self)

    def split(self, **overrides):
        """Split into train / valid / test (see :func:`recstudio.data.split.split_dataset`).

        Keyword arguments override the split keys of the config (``split_mode``, ``split_ratio``,
        ``split_order``, ``fold_in_ratio``, ``seed``).
        """
        from recstudio.data.split import split_dataset
        return split_dataset(self, **overrides)

    def save(self, path) -> "Path":
        """Save the processed dataset (arrays, features, id maps, config) to a portable ``.npz``.

        Example:
            >>> ds.save("ml100k.npz"); same = RecDataset.load("ml100k.npz")     # doctest: +SKIP
        """
        from recstudio.data.cache import save_dataset
        return save_dataset(self, path, key="saved")

    @classmethod
    def load(cls, path) -> "RecDataset":
        """Load a dataset written by :meth:`save`.

        Raises:
            DataError: the file is missing, truncated or not a saved dataset.
        """
        from recstudio.data.cache import load_dataset
        from recstudio.utils.errors import DataError
        ds = load_dataset(path, key="saved", delete_broken=False)
        if ds is None:
            raise DataError(f"{path} is not a readable saved RecDataset (missing, truncated or another format).")
        return ds

    def __repr__(self) -> str:
        return (f"RecDataset({self.name!r}: {len(self.id_maps['user'])} users, {len(self.id_maps['item'])} items, "
                f"{self.num_interactions} interactions)")
