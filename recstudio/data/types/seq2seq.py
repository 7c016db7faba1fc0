"""Seq2SeqDataset: one row per user, the train sequence -> shifted or masked targets at all positions."""
from typing import Optional

import numpy as np
import torch

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, gather_windows, torch_generator
from recstudio.data.types.seq import (ITEM_SEQ, SEQ_LEN, TARGET_SEQ, TIME_SEQ, UserSequences, add_time_seq,
                                      time_windows)
from recstudio.utils.errors import ConfigError

MODES = ("causal", "cloze")


class Seq2SeqDataset(BatchDataset):
    """One example per user with train items: every position of the sequence is trained at once.

    - ``mode='causal'`` (SASRec, CL4SRec): the user's last ``max_seq_len + 1`` train items
      ``s``; ``item_seq = s[:-1]``, ``target_seq = s[1:]`` (the next item at each position).
      Users with fewer than 2 train items have no pair and are left out.
    - ``mode='cloze'`` (BERT4Rec): the last ``max_seq_len`` train items; each non-padding
      position is masked with probability ``mask_ratio`` (at least one per row: if the draw masks
      none, the latest item is masked); ``item_seq`` has ``mask_token`` at masked positions,
      ``target_seq`` the original item there and 0 elsewhere. Masks are redrawn every epoch
      (by the loader's ``set_epoch``) from ``(seed, epoch)``.

    ``target_seq == 0`` means "no target here" (padding, or an unmasked position). Padding:
    ``'left'`` (default) right-aligns the items, zeros first, so the latest item is in the last
    column; ``'right'`` left-aligns them, zeros after. ``seq_len`` counts the non-padding
    input positions.

    Batch keys: the user field (int64 ``[B]``), ``item_seq`` and ``target_seq`` (int64
    ``[B, max_seq_len]``), ``seq_len`` (int64 ``[B]``).

    Args:
        split: the split (``phase`` must be ``'train'``; evaluate with
            :class:`~recstudio.data.types.evaluation.EvalDataset` and ``max_seq_len``).
        max_seq_len: input length.
        mode: ``'causal'`` or ``'cloze'``.
        padding: ``'left'`` or ``'right'``.
        mask_ratio: cloze masking probability.
        mask_token: the id put at masked positions; default ``num_items`` (so the item embedding
            needs ``num_items + 1`` rows: see :attr:`num_tokens`).
        with_time: add ``time_seq`` (float64, like ``item_seq``): the input items' timestamps, 0 at padding.
        resident_device, seed: see :class:`~recstudio.data.types.base.BatchDataset`.
    """

    phases = ("train",)

    def __init__(self, split, phase: str = "train", max_seq_len: int = 50, mode: str = "causal",
                 padding: str = "left", mask_ratio: float = 0.2, mask_token: Optional[int] = None,
                 with_time: bool = False, resident_device: Device = None, seed: Optional[int] = None):
        if phase != "train":
            raise ConfigError(f"Seq2SeqDataset is for training (phase='train'), got {phase!r}; evaluate "
                              "sequential models with EvalDataset(split, phase, max_seq_len=...).")
        super().__init__(split, phase, resident_device, seed)
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}.")
        if padding not in ("left", "right"):
            raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}.")
        if max_seq_len < 1:
            raise ConfigError(f"max_seq_len must be >= 1, got {max_seq_len}.")
        if not 0.0 < mask_ratio <= 1.0 and mode == "cloze":
            raise ConfigError(f"mask_ratio must be in (0, 1], got {mask_ratio}.")
        ds = self.dataset
        self.mode, self.padding, self.max_seq_len, self.mask_ratio = mode, padding, max_seq_len, mask_ratio
        self.mask_token = ds.num_items if mask_token is None else int(mask_token)
        self.uid = ds.uid_field
        seqs = UserSequences(ds, split.train, self.device, with_time)
        counts = seqs.hi - seqs.lo
        users = np.flatnonzero(counts >= (2 if mode == "causal" else 1))
        self.flat = seqs.flat
        self._lo, self._hi = self.tensor(seqs.lo[users]), self.tensor(seqs.hi[users])
        self.columns[self.uid] = self.tensor(users)
        self.field_types = {self.uid: FieldType.TOKEN, ITEM_SEQ: FieldType.TOKEN_SEQ,
                            TARGET_SEQ: FieldType.TOKEN_SEQ, SEQ_LEN: None}
        self.sources.update({ITEM_SEQ: ds.iid_field, TARGET_SEQ: ds.iid_field})
        self.flat_times = None
        if with_time:
            add_time_seq(self, seqs.times)
        self.mask: Optional[torch.Tensor] = None
        self._mask_epoch = None
        if mode == "cloze":
            self.draw_masks(0)

    @property
    def num_tokens(self) -> int:
        """Rows an input-item embedding needs: ``num_items`` (+1 for the cloze mask token)."""
        return max(self.num_items, self.mask_token + 1) if self.mode == "cloze" else self.num_items

    def draw_masks(self, epoch: int, chunk: int = 1 << 16) -> None:
        """Draw the cloze masks of every row for ``epoch`` (in row chunks, to bound memory)."""
        g = torch_generator(self.seed, epoch, 0xC102E)
        length = self.max_seq_len
        cols = torch.arange(length)
        seq_len = torch.clamp(self._hi - self._lo, max=length).cpu()
        parts = []
        for start in range(0, len(seq_len), chunk):
            n = seq_len[start:start + chunk]
            valid = cols >= (length - n)[:, None] if self.padding == "left" else cols < n[:, None]
            m = (torch.rand(len(n), length, generator=g) < self.mask_ratio) & valid
            none = ~m.any(1)
            last = torch.full_like(n, length - 1) if self.padding == "left" else n - 1
            m[none.nonzero().view(-1), last[none]] = True
            parts.append(m)
        self.mask = torch.cat(parts).to(self.device) if parts else torch.zeros(0, length, dtype=torch.bool)
        self._mask_epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.mode == "cloze" and epoch != self._mask_epoch:
            self.draw_masks(epoch)

    def extend(self, idx: torch.Tensor, batch: Batch) -> None:
        lo, hi = self._lo[idx], self._hi[idx]
        if self.mode == "causal":
            w, n = gather_windows(self.flat, lo, hi, self.max_seq_len + 1, self.padding)
            inp, tgt = w[:, :-1], w[:, 1:]
            if self.padding == "left":  # [0, 0, a, b | c]: the first item is no target
                tgt = tgt.masked_fill(inp == 0, 0)
            else:  # [a, b, c, 0 | 0]: the last item is no input
                inp = inp.masked_fill(tgt == 0, 0)
            batch[ITEM_SEQ], batch[TARGET_SEQ], batch[SEQ_LEN] = inp, tgt, n - 1
            if self.flat_times is not None:  # the inputs' timestamps (the targets' are not shown)
                times = time_windows(self.flat_times, lo, hi, self.max_seq_len + 1, self.padding)
                batch[TIME_SEQ] = times[:, :-1].masked_fill(inp == 0, 0.0)
        else:
            seq, n = gather_windows(self.flat, lo, hi, self.max_seq_len, self.padding)
            m = self.mask[idx]
            batch[ITEM_SEQ] = seq.masked_fill(m, self.mask_token)
            batch[TARGET_SEQ] = seq.masked_fill(~m, 0)
            batch[SEQ_LEN] = n
            if self.flat_times is not None:
                batch[TIME_SEQ] = time_windows(self.flat_times, lo, hi, self.max_seq_len, self.padding)
