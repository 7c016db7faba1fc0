"""SeqDataset: one row per target interaction, the user's history prefix -> the next item."""
from typing import Optional

import numpy as np
import torch

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, gather_windows, segments
from recstudio.utils.errors import ConfigError

ITEM_SEQ = "item_seq"
SEQ_LEN = "seq_len"
TARGET_SEQ = "target_seq"
#: the timestamps of ``item_seq``'s items (float64, 0 at padding), for the models that declare ``uses_time``
TIME_SEQ = "time_seq"


def interaction_times(dataset, rows: np.ndarray) -> np.ndarray:
    """The time field of ``rows`` as float64 seconds (or the field's own unit).

    Raises:
        ConfigError: the dataset has no time field (a time-aware sequential model needs one).
    """
    if not dataset.time_field or dataset.time_field not in dataset.inter:
        raise ConfigError(f"this model reads the interactions' timestamps, but {getattr(dataset, 'name', 'the dataset')} "
                          "has no time field; set time_field (a timestamp column of the .inter file) or pick a model "
                          "that reads the item order only (e.g. SASRec).")
    return np.asarray(dataset.inter[dataset.time_field], dtype=np.float64)[rows]


class UserSequences:
    """The items of some interaction rows, grouped by user in time order, as one flat tensor.

    ``flat[lo[u]:hi[u]]`` are user ``u``'s items (``rows`` ascending = user, then time order).
    A leading 0 keeps ``flat`` non-empty. With ``with_time``, ``times`` holds their timestamps in the same
    layout (float64; else ``None``).
    """

    def __init__(self, dataset, rows: np.ndarray, device: torch.device, with_time: bool = False):
        users = dataset.users[rows]
        offsets = segments(users, dataset.num_users) + 1
        self.flat = torch.from_numpy(np.concatenate([[0], dataset.items[rows]]).astype(np.int64)).to(device)
        self.times = None
        if with_time:
            self.times = torch.from_numpy(np.concatenate([[0.0], interaction_times(dataset, rows)])).to(device)
        self.lo = offsets[:-1]
        self.hi = offsets[1:]


def add_time_seq(dataset, flat_times: torch.Tensor) -> None:
    """Declare the ``time_seq`` batch key on a sequence dataset whose ``flat_times`` follow its ``flat`` items."""
    dataset.flat_times = flat_times
    dataset.field_types[TIME_SEQ] = FieldType.FLOAT


def time_windows(flat_times: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, length: int, padding: str):
    """The timestamps of the windows :func:`gather_windows` takes from the items (0.0 at padding)."""
    return gather_windows(flat_times, lo, hi, length, padding)[0]


class SeqDataset(BatchDataset):
    """One example per target interaction: the items before it -> the item (GRU4Rec, NARM, Caser, DIN).

    - ``phase='train'``: one row per train interaction whose user has at least ``min_history``
      earlier train interactions; the history is those earlier train items in time order.
    - ``phase='valid' | 'test'``: one row per target interaction; the history is the user's
      evaluation history (``split.history_rows(phase)``) in time order (every target of a user
      gets the same history, which never contains another target).

    The history is truncated to its last ``max_seq_len`` items. Padding with 0:
    ``'left'`` (default) right-aligns the items, zeros first, so the latest item is always in the
    last column; ``'right'`` left-aligns them, the latest at ``seq_len - 1``, zeros after.

    Batch keys: the user field and the item field (the next item; int64 ``[B]``), the rating
    (float32 ``[B]``) if any, ``item_seq`` (int64 ``[B, max_seq_len]``) and ``seq_len``
    (int64 ``[B]``); with ``target_seq=True`` also ``target_seq`` (int64 ``[B, max_seq_len]``: the next
    item at the history's latest position, 0 elsewhere), the layout of
    :class:`~recstudio.data.types.seq2seq.Seq2SeqDataset`, so a model trained at every position trains on
    these rows at the one position (the prefix expansion of session models and RecBole).

    Args:
        split, phase: the split and the phase.
        max_seq_len: history window.
        padding: ``'left'`` or ``'right'``.
        min_history: train rows with fewer earlier items are dropped (eval rows are all kept).
        target_seq: add the ``target_seq`` key (above).
        with_time: add ``time_seq`` (float64 ``[B, max_seq_len]``): the timestamps of ``item_seq``'s items,
            0 at padding (the dataset needs a time field).
        resident_device, seed: see :class:`~recstudio.data.types.base.BatchDataset`.

    Example:
        A user with train items 5, 9, 4, 7 in time order gives three rows (next item 9, 4, 7):

        >>> b = SeqDataset(split, max_seq_len=3)[torch.arange(3)]     # doctest: +SKIP
        >>> b["item_seq"], b["seq_len"]                               # doctest: +SKIP
        (tensor([[0, 0, 5], [0, 5, 9], [5, 9, 4]]), tensor([1, 2, 3]))
    """

    def __init__(self, split, phase: str = "train", max_seq_len: int = 50, padding: str = "left",
                 min_history: int = 1, target_seq: bool = False, with_time: bool = False,
                 resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, phase, resident_device, seed)
        if max_seq_len < 1:
            raise ConfigError(f"max_seq_len must be >= 1, got {max_seq_len}.")
        if padding not in ("left", "right"):
            raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}.")
        self.max_seq_len, self.padding = max_seq_len, padding
        ds = self.dataset
        self.uid, self.iid = ds.uid_field, ds.iid_field
        if phase == "train":
            rows = split.train
            seqs = UserSequences(ds, rows, self.device, with_time)
            users = ds.users[rows]
            hi = np.arange(1, len(rows) + 1)  # the row's own position: its history ends just before
            keep = hi - seqs.lo[users] >= min_history
            rows, users, hi = rows[keep], users[keep], hi[keep]
        else:
            rows = split.rows(phase)
            seqs = UserSequences(ds, split.history_rows(phase), self.device, with_time)
            users = ds.users[rows]
            hi = seqs.hi[users]
        self.rows = rows
        self.flat = seqs.flat
        self.columns[self.uid] = self.tensor(users)
        self.columns[self.iid] = self.tensor(ds.items[rows])
        self.field_types = {self.uid: FieldType.TOKEN, self.iid: FieldType.TOKEN}
        if ds.rating_field:
            self.columns[ds.rating_field] = self.tensor(ds.inter[ds.rating_field][rows].astype(np.float32))
            self.field_types[ds.rating_field] = FieldType.FLOAT
        self.field_types[ITEM_SEQ] = FieldType.TOKEN_SEQ
        self.field_types[SEQ_LEN] = None
        self.sources[ITEM_SEQ] = self.iid
        self.target_seq = bool(target_seq)
        if self.target_seq:
            self.field_types[TARGET_SEQ] = FieldType.TOKEN_SEQ
            self.sources[TARGET_SEQ] = self.iid
        self._lo = self.tensor(seqs.lo[users])
        self._hi = self.tensor(hi)
        self.flat_times = None
        if with_time:
            add_time_seq(self, seqs.times)

    def extend(self, idx: torch.Tensor, batch: Batch) -> None:
        batch[ITEM_SEQ], batch[SEQ_LEN] = gather_windows(self.flat, self._lo[idx], self._hi[idx],
                                                         self.max_seq_len, self.padding)
        if self.flat_times is not None:
            batch[TIME_SEQ] = time_windows(self.flat_times, self._lo[idx], self._hi[idx], self.max_seq_len,
                                           self.padding)
        if self.target_seq:  # the next item at the latest history position (none for an empty history)
            seq, n = batch[ITEM_SEQ], batch[SEQ_LEN]
            last = torch.full_like(n, seq.size(1) - 1) if self.padding == "left" else (n - 1).clamp(min=0)
            target = torch.zeros_like(seq)
            target[torch.arange(len(n), device=seq.device), last] = batch[self.iid] * (n > 0)
            batch[TARGET_SEQ] = target
