"""PositionEvalDataset: one evaluation row per target interaction, ranked against everything before it.

This is the ``eval_targets: each`` protocol (see ``docs/metrics.md``, "Sequential evaluation modes"):
the target interactions of a phase (``split.rows(phase)``) are ranked one at a time, target ``j`` of a
user against the user's evaluation history (``split.history_rows(phase)``) **plus the phase's earlier
targets of that user** (``j - 1`` of them), i.e. against every interaction before it in time. Its
history items are masked from the ranking and, for sequential models, form its input sequence; the
only relevant item is the target itself. Metrics are then means over the targets (RecBole's
convention for sequential evaluation: one sample per test interaction).

With ``split_mode: loo`` and ``loo_last_n: N`` this ranks each of the last N items against the items
before it; with ``split_order: time`` (``user_entry``) it ranks every item of the user's test segment
("every next item"). With one target per user (leave-one-out) it gives the same rows as
:class:`~recstudio.data.types.evaluation.EvalDataset`.
"""
from typing import Optional

import numpy as np
import torch

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, gather_windows
from recstudio.data.types.seq import ITEM_SEQ, SEQ_LEN, TIME_SEQ, UserSequences, add_time_seq, time_windows
from recstudio.utils.errors import ConfigError


def check_history_precedes_targets(split, phase: str) -> None:
    """Raise unless every user's evaluation history of ``phase`` comes before its targets in time
    (row order: interactions are sorted by user, then time), which ``eval_targets: each`` needs."""
    ds = split.dataset
    hist, tgt = split.history_rows(phase), split.rows(phase)
    if not len(hist) or not len(tgt):
        return
    last_hist = np.full(ds.num_users, -1, dtype=np.int64)
    np.maximum.at(last_hist, ds.users[hist], hist)
    first_tgt = np.full(ds.num_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_tgt, ds.users[tgt], tgt)
    bad = np.flatnonzero(last_hist > first_tgt)
    if len(bad):
        cfg = split.config or {}
        raise ConfigError(
            f"eval_targets='each' ranks each {phase} target against the interactions before it, so every user's "
            f"evaluation history must come before its {phase} targets in time; this split "
            f"(split_mode={cfg.get('split_mode')!r}, split_order={cfg.get('split_order')!r}) interleaves them for "
            f"{len(bad)} users. Use split_mode='loo' (with loo_last_n) or split_order='time', or eval_targets='set'.")


class PositionEvalDataset(BatchDataset):
    """Full-ranking evaluation batches, one row per target interaction of ``phase`` (``eval_targets: each``).

    Row ``r`` (target interaction ``t`` of user ``u``, in time order) carries:

    - the user field (int64 ``[B]``; a user appears once per target);
    - ``history_indptr`` / ``history_indices``: the distinct items of every interaction of ``u`` before
      ``t`` among ``split.history_rows(phase)`` and ``split.rows(phase)`` (so earlier targets are
      history, later ones are not seen), sorted: what is masked from the ranking;
    - ``target_indptr`` / ``target_indices``: the one item of ``t``;
    - with ``max_seq_len``: ``item_seq`` / ``seq_len``: the last ``max_seq_len`` of those items in time
      order, padded as in :class:`~recstudio.data.types.evaluation.EvalDataset`.

    Args:
        split: the split; each user's evaluation history must precede its targets (a temporal split:
            ``split_mode='loo'`` or ``split_order='time'``), else a ``ConfigError``.
        phase: ``'valid'`` or ``'test'``.
        max_seq_len, padding, resident_device, seed: as for ``EvalDataset``.

    Example:
        A user with train items 5, 9 and test items 4, 7 (``loo_last_n=2``) gives two test rows:
        target 4 with history {5, 9}, and target 7 with history {4, 5, 9} (input sequence 5, 9, 4).

        >>> ev = PositionEvalDataset(split, "test", max_seq_len=3)       # doctest: +SKIP
    """

    phases = ("valid", "test")

    def __init__(self, split, phase: str = "test", max_seq_len: Optional[int] = None, padding: str = "left",
                 with_time: bool = False, resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, phase, resident_device, seed)
        if padding not in ("left", "right"):
            raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}.")
        if max_seq_len is not None and max_seq_len < 1:
            raise ConfigError(f"max_seq_len must be >= 1 or None, got {max_seq_len}.")
        check_history_precedes_targets(split, phase)
        ds = self.dataset
        self.uid, self.max_seq_len, self.padding = ds.uid_field, max_seq_len, padding
        targets = np.asarray(split.rows(phase), dtype=np.int64)
        combined = np.union1d(split.history_rows(phase), targets).astype(np.int64)  # sorted: user, then time
        seqs = UserSequences(ds, combined, self.device, with_time and max_seq_len is not None)
        users = ds.users[targets].astype(np.int64)
        self.rows = targets
        self.flat = seqs.flat
        self._lo = self.tensor(seqs.lo[users].astype(np.int64))
        self._hi = self.tensor(np.searchsorted(combined, targets).astype(np.int64) + 1)  # flat has a leading 0
        self.columns[self.uid] = self.tensor(users)
        self._target = self.tensor(ds.items[targets].astype(np.int64))
        self.field_types = {self.uid: FieldType.TOKEN, "history_indptr": None, "history_indices": FieldType.TOKEN,
                            "target_indptr": None, "target_indices": FieldType.TOKEN}
        self.sources.update({"history_indices": ds.iid_field, "target_indices": ds.iid_field})
        if max_seq_len is not None:
            self.field_types.update({ITEM_SEQ: FieldType.TOKEN_SEQ, SEQ_LEN: None})
            self.sources[ITEM_SEQ] = ds.iid_field
        self.flat_times = None
        if seqs.times is not None:
            add_time_seq(self, seqs.times)

    def __len__(self) -> int:
        return len(self.rows)

    def extend(self, idx, batch: Batch) -> None:
        lo, hi = self._lo[idx], self._hi[idx]
        b = len(lo)
        lengths = hi - lo
        total = int(lengths.sum())
        row_of = torch.repeat_interleave(torch.arange(b, device=lo.device), lengths, output_size=total)
        starts = torch.cumsum(lengths, 0) - lengths
        pos = lo[row_of] + torch.arange(total, device=lo.device) - starts[row_of]
        items = self.flat[pos]
        keys = torch.unique(row_of * self.num_items + items)  # sorted, distinct (row, item)
        rows_u, items_u = keys // self.num_items, keys % self.num_items
        indptr = torch.zeros(b + 1, dtype=torch.long, device=lo.device)
        torch.cumsum(torch.bincount(rows_u, minlength=b), 0, out=indptr[1:])
        batch["history_indptr"], batch["history_indices"] = indptr, items_u
        batch["target_indptr"] = torch.arange(b + 1, dtype=torch.long, device=lo.device)
        batch["target_indices"] = self._target[idx]
        if self.max_seq_len is not None:
            batch[ITEM_SEQ], batch[SEQ_LEN] = gather_windows(self.flat, lo, hi, self.max_seq_len, self.padding)
            if self.flat_times is not None:
                batch[TIME_SEQ] = time_windows(self.flat_times, lo, hi, self.max_seq_len, self.padding)


__all__ = ["PositionEvalDataset", "check_history_precedes_targets"]
