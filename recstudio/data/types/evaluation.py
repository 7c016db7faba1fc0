"""EvalDataset: one row per evaluated user, the history to mask and the targets as CSR slices."""
from typing import Optional

import numpy as np

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, TorchCSR, gather_windows
from recstudio.data.types.seq import ITEM_SEQ, SEQ_LEN, TIME_SEQ, UserSequences, add_time_seq, time_windows
from recstudio.utils.errors import ConfigError


class EvalDataset(BatchDataset):
    """Full-ranking evaluation batches: one row per user of ``split.eval_users(phase)``.

    Users without a target in the phase never appear (so per-user metrics never divide by 0).
    The history is ``split.history_matrix(phase)`` (train for valid; train + valid for test;
    the fold-in part in ``split_mode='user'``): what the model may read and what is masked
    from its ranking. The targets are ``split.target_matrix(phase)``.

    Batch keys (``B`` users):

    - the user field (int64 ``[B]``);
    - ``history_indptr`` (int64 ``[B+1]``), ``history_indices`` (int64 item ids, sorted within
      each user): the CSR slice of the batch users' history;
    - ``target_indptr``, ``target_indices``: the same for the targets;
    - with ``max_seq_len``: ``item_seq`` (int64 ``[B, max_seq_len]``, the last history items in
      time order, padded like :class:`~recstudio.data.types.seq.SeqDataset`) and ``seq_len``.
      The key names match the training batches of SeqDataset / Seq2SeqDataset, so one query
      encoder reads both.

    Turn the CSR slices into a dense mask with
    :func:`~recstudio.data.types.base.csr_to_dense` when needed.

    Args:
        split: the split.
        phase: ``'valid'`` or ``'test'``.
        max_seq_len: add the history sequence (for sequential models); ``None``: no sequence.
        padding: ``'left'`` (zeros first, latest item last) or ``'right'``.
        resident_device, seed: see :class:`~recstudio.data.types.base.BatchDataset`.

    Example:
        >>> ev = EvalDataset(split, "test")                               # doctest: +SKIP
        >>> b = next(iter(ev.loader(512)))  # doctest: +SKIP
        >>> mask = csr_to_dense(b["history_indptr"], b["history_indices"], ev.num_items) > 0  # doctest: +SKIP
    """

    phases = ("valid", "test")

    def __init__(self, split, phase: str = "test", max_seq_len: Optional[int] = None, padding: str = "left",
                 with_time: bool = False, resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, phase, resident_device, seed)
        if padding not in ("left", "right"):
            raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}.")
        if max_seq_len is not None and max_seq_len < 1:
            raise ConfigError(f"max_seq_len must be >= 1 or None, got {max_seq_len}.")
        ds = self.dataset
        self.uid, self.max_seq_len, self.padding = ds.uid_field, max_seq_len, padding
        users = split.eval_users(phase).astype(np.int64)
        self.history = TorchCSR(split.history_matrix(phase), self.device)
        self.target = TorchCSR(split.target_matrix(phase), self.device)
        self.columns[self.uid] = self.tensor(users)
        self.field_types = {self.uid: FieldType.TOKEN, "history_indptr": None, "history_indices": FieldType.TOKEN,
                            "target_indptr": None, "target_indices": FieldType.TOKEN}
        self.sources.update({"history_indices": ds.iid_field, "target_indices": ds.iid_field})
        if max_seq_len is not None:
            seqs = UserSequences(ds, split.history_rows(phase), self.device, with_time)
            self.flat = seqs.flat
            self._lo, self._hi = self.tensor(seqs.lo[users]), self.tensor(seqs.hi[users])
            self.field_types.update({ITEM_SEQ: FieldType.TOKEN_SEQ, SEQ_LEN: None})
            self.sources[ITEM_SEQ] = ds.iid_field
        self.flat_times = None
        if with_time and max_seq_len is not None:
            add_time_seq(self, seqs.times)

    def extend(self, idx, batch: Batch) -> None:
        users = batch[self.uid]
        batch["history_indptr"], batch["history_indices"], _ = self.history.rows(users)
        batch["target_indptr"], batch["target_indices"], _ = self.target.rows(users)
        if self.max_seq_len is not None:
            batch[ITEM_SEQ], batch[SEQ_LEN] = gather_windows(self.flat, self._lo[idx], self._hi[idx],
                                                             self.max_seq_len, self.padding)
            if self.flat_times is not None:
                batch[TIME_SEQ] = time_windows(self.flat_times, self._lo[idx], self._hi[idx], self.max_seq_len,
                                               self.padding)
