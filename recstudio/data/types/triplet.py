"""TripletDataset: one row per interaction (user, item, rating, features [, static negatives])."""
import time
from typing import Dict, Optional

import numpy as np
import torch

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, torch_generator
from recstudio.data.types.negatives import NegativeSampler
from recstudio.utils.errors import ConfigError

NEG_ITEM = "neg_item"


class TripletDataset(BatchDataset):
    """One example per interaction of ``phase``: for BPR, NCF, LightGCN, CTR rankers, KG models.

    Batch keys (``B`` rows):

    - every interaction field: the user field and item field (int64 ``[B]``), the rating
      (float32 ``[B]``) if any, the time (float64 ``[B]``) and other fields (token int64,
      float float32, ``*_seq`` as ``[B, width]``);
    - with ``join_features``: each column of ``ds.user_feat`` / ``ds.item_feat`` looked up by the
      row's user / item id, under its own name, or ``user_<name>`` / ``item_<name>`` when the name
      is already taken (the id fields are never overwritten);
    - with ``num_neg > 0``: ``neg_item`` (int64 ``[B, num_neg]``) and, when item features are
      joined, ``neg_<item feature key>`` (``[B, num_neg, ...]``).

    Negatives are drawn uniformly from items ``1..num_items-1`` or by ``popularity^neg_alpha``
    (train counts; items never seen in train are never drawn), independently per slot, and are
    *never* an item the user has in the phase's rows or history (for ``train``: the train
    interactions). They are drawn for the whole table at once: at construction (epoch 0) and,
    with ``refresh_negatives=True`` (the default), again for every epoch by the loader
    (``set_epoch``); the draw of epoch ``e`` depends only on ``(seed, e)``. Call
    :meth:`resample_negatives` to draw by hand.

    Args:
        split: the data split.
        phase: ``'train'`` (default), ``'valid'`` or ``'test'`` (the target rows, e.g. for RMSE / AUC).
        num_neg: static negatives per row (0: none).
        neg_sampling: ``'uniform'`` or ``'popularity'``.
        neg_alpha: popularity exponent.
        join_features: join user and item feature tables.
        refresh_negatives: redraw negatives at every epoch of a loader.
        resident_device: keep the tensors (and build batches) on this device.
        seed: seed of negatives and shuffling (default: the dataset's ``seed``).

    Raises:
        DataError: a user in the rows has no item left to be a negative.

    Example:
        >>> ds = TripletDataset(split, num_neg=1)                      # doctest: +SKIP
        >>> batch = next(iter(ds.loader(4096)))  # doctest: +SKIP
        >>> batch["neg_item"].shape  # doctest: +SKIP
        torch.Size([4096, 1])
    """

    def __init__(self, split, phase: str = "train", num_neg: int = 0, neg_sampling: str = "uniform",
                 neg_alpha: float = 1.0, join_features: bool = True, refresh_negatives: bool = True,
                 resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, phase, resident_device, seed)
        if num_neg < 0:
            raise ConfigError(f"num_neg must be >= 0, got {num_neg}.")
        ds = self.dataset
        self.rows = split.rows(phase)
        if len(self.rows) == 0:
            raise ConfigError(f"phase {phase!r} of this split has no interactions; TripletDataset needs some.")
        self.uid, self.iid = ds.uid_field, ds.iid_field
        inter = ds.inter.take(self.rows)
        for name in inter.names:
            arr = inter[name]
            if arr.dtype.kind == "f" and name != ds.time_field:
                arr = arr.astype(np.float32)
            self.columns[name] = self.tensor(arr)
            self.field_types[name] = inter.types.get(name)
        self.user_features: Dict[str, torch.Tensor] = {}
        self.item_features: Dict[str, torch.Tensor] = {}
        if join_features:
            self._join(ds.user_feat, self.uid, "user", self.user_features)
            self._join(ds.item_feat, self.iid, "item", self.item_features)
        # negatives
        self.num_neg, self.neg_sampling, self.neg_alpha = num_neg, neg_sampling, neg_alpha
        self.refresh_negatives = refresh_negatives
        self.sampler: Optional[NegativeSampler] = None
        self.draw_seconds = 0.0
        self._neg_epoch = None
        if num_neg > 0:
            exclude_rows = np.zeros(ds.num_interactions, dtype=bool)  # rows + history, without a sort
            exclude_rows[self.rows] = True
            exclude_rows[split.history_rows(phase)] = True
            counts = np.bincount(ds.items[split.train], minlength=ds.num_items)
            self.sampler = NegativeSampler(ds.interaction_matrix(exclude_rows), neg_sampling, counts, neg_alpha,
                                           describe_user=self._describe_user)
            self.field_types[NEG_ITEM] = FieldType.TOKEN
            self.sources[NEG_ITEM] = self.iid
            for key in self.item_features:
                self.field_types["neg_" + key] = self.field_types[key]
                self.sources["neg_" + key] = self.sources[key]
            self.resample_negatives(0)

    def _describe_user(self, u: int) -> str:
        return f"{self.dataset.decode_users([u])[0]!r} (inner id {u})"

    def _join(self, table, id_field: str, prefix: str, out: Dict[str, torch.Tensor]) -> None:
        if table is None:
            return
        for name in table.names:
            if name == id_field:
                continue
            key = name if name not in self.field_types else f"{prefix}_{name}"
            if key in self.field_types:
                raise ConfigError(f"cannot join {prefix} feature {name!r}: both {name!r} and {key!r} are taken.")
            arr = table[name]
            out[key] = self.tensor(arr.astype(np.float32) if arr.dtype.kind == "f" else arr)
            self.field_types[key] = table.types.get(name)
            self.sources[key] = name

    def resample_negatives(self, epoch: Optional[int] = None) -> None:
        """Draw a fresh set of negatives for every row (``epoch`` picks the seed; default: next one)."""
        if self.sampler is None:
            raise ConfigError("this TripletDataset has num_neg=0; there are no negatives to resample.")
        epoch = (self._neg_epoch + 1 if self._neg_epoch is not None else 0) if epoch is None else int(epoch)
        start = time.perf_counter()
        users = self.columns[self.uid].cpu().numpy()
        neg = self.sampler.draw(users, self.num_neg, torch_generator(self.seed, epoch, 0x4E47))
        self.columns[NEG_ITEM] = neg.to(self.device)
        self._neg_epoch = epoch
        self.draw_seconds = time.perf_counter() - start

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.sampler is not None and self.refresh_negatives and epoch != self._neg_epoch:
            self.resample_negatives(epoch)

    def extend(self, idx: torch.Tensor, batch: Batch) -> None:
        if self.user_features:
            users = batch[self.uid]
            for key, col in self.user_features.items():
                batch[key] = col[users]
        if self.item_features:
            items = batch[self.iid]
            neg = batch.get(NEG_ITEM)
            for key, col in self.item_features.items():
                batch[key] = col[items]
                if neg is not None:
                    batch["neg_" + key] = col[neg]
