"""UserDataset: one row per user, the user's items as a sparse row (dense multi-hot in the batch)."""
from typing import Optional

import numpy as np

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, TorchCSR
from recstudio.utils.errors import ConfigError

HISTORY, TARGET = "history", "target"


class UserDataset(BatchDataset):
    """One example per user, for MultiVAE, MultiDAE, RecVAE and EASE-style models.

    - ``phase='train'``: every user with at least one train interaction; ``history`` is the
      user's train row.
    - ``phase='valid' | 'test'``: every user of ``split.eval_users(phase)``; ``history`` is the
      fold-in input (``split.history_rows(phase)``: train (+ valid) rows, or the held-out user's
      fold-in part in ``split_mode='user'``) and ``target`` the items to predict.

    Batch keys, with ``dense=True`` (default): the user field (int64 ``[B]``), ``history``
    (float32 ``[B, num_items]``: 1.0, or the ``value`` field, at the user's items; column 0 is
    padding and always 0) and, for valid / test, ``target`` (float32 ``[B, num_items]`` multi-hot).
    With ``dense=False`` the rows come as CSR slices instead: ``history_indptr`` (``[B+1]``),
    ``history_indices``, ``history_values`` and ``target_indptr``, ``target_indices``.

    Args:
        split, phase: the split and the phase.
        value: a float interaction field (e.g. the rating) for the history values; ``None`` = 1.0.
        dense: dense rows (built per batch from the CSR slices with tensor ops) or CSR slices.
        resident_device, seed: see :class:`~recstudio.data.types.base.BatchDataset`.

    Example:
        >>> b = next(iter(UserDataset(split).loader(256)))             # doctest: +SKIP
        >>> b["history"].shape  # doctest: +SKIP
        torch.Size([256, 1683])
    """

    def __init__(self, split, phase: str = "train", value: Optional[str] = None, dense: bool = True,
                 resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, phase, resident_device, seed)
        ds = self.dataset
        if value is not None and value not in ds.inter:
            raise ConfigError(f"value={value!r} is not an interaction field; fields: {ds.inter.names}.")
        self.dense, self.uid = dense, ds.uid_field
        if phase == "train":
            users = np.flatnonzero(np.bincount(ds.users[split.train], minlength=ds.num_users))
            self.target = None
        else:
            users = split.eval_users(phase)
            self.target = TorchCSR(split.target_matrix(phase), self.device)
        self.history = TorchCSR(ds.interaction_matrix(split.history_rows(phase), value), self.device)
        self.columns[self.uid] = self.tensor(users.astype(np.int64))
        self.field_types = {self.uid: FieldType.TOKEN}
        if dense:
            self.field_types[HISTORY] = FieldType.FLOAT_SEQ
            if self.target is not None:
                self.field_types[TARGET] = FieldType.FLOAT_SEQ
        else:
            self.field_types.update({"history_indptr": None, "history_indices": FieldType.TOKEN,
                                     "history_values": FieldType.FLOAT})
            self.sources["history_indices"] = ds.iid_field
            if self.target is not None:
                self.field_types.update({"target_indptr": None, "target_indices": FieldType.TOKEN})
                self.sources["target_indices"] = ds.iid_field

    def extend(self, idx, batch: Batch) -> None:
        users = batch[self.uid]
        if self.dense:
            batch[HISTORY] = self.history.dense(users)
            if self.target is not None:
                batch[TARGET] = self.target.dense(users, binary=True)
        else:
            batch["history_indptr"], batch["history_indices"], batch["history_values"] = self.history.rows(users)
            if self.target is not None:
                batch["target_indptr"], batch["target_indices"], _ = self.target.rows(users)
