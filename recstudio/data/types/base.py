"""Shared machinery of the dataset types: column stores, index samplers, epoch-aware loaders.

A dataset type holds its data as pre-built column tensors (one row per training example).
``dataset[index]`` takes a *whole index array* and returns the batch, a
``dict[str, torch.Tensor]``, by fancy indexing; :class:`IndexSampler` yields those index
arrays and :class:`EpochLoader` is a ``DataLoader(dataset, sampler=..., batch_size=None)``,
so no per-row ``__getitem__`` and no collate run in the hot path.

Epochs are repeatable: epoch ``e`` of a loader with seed ``s`` always visits the rows in
the same order and sees the same per-epoch random draws (negatives, cloze masks), because
they are all derived from ``(s, e)``, never from a global random state.
"""
import inspect
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from recstudio.data.fields import FieldType
from recstudio.utils.errors import ConfigError

Batch = Dict[str, torch.Tensor]
Device = Union[str, torch.device, None]


# ---- small helpers -----------------------------------------------------------------------
def to_device(batch: Mapping[str, Any], device: Device, non_blocking: bool = False) -> Batch:
    """A copy of ``batch`` with every tensor moved to ``device`` (other values are kept).

    Example:
        >>> to_device({"x": torch.zeros(2)}, "cpu")["x"].device.type
        'cpu'
    """
    return {k: (v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v) for k, v in batch.items()}


def seed_for(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (e.g. ``(seed, epoch, salt)``), stable across runs."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`seed_for` of ``keys``."""
    return torch.Generator().manual_seed(seed_for(*keys))


def as_index(index, device: Device = None) -> torch.Tensor:
    """Row indices as a 1-D int64 tensor on ``device`` (ints become a batch of one, slices work too)."""
    if isinstance(index, (int, np.integer)):
        index = [int(index)]
    if isinstance(index, slice):
        raise TypeError("pass an index array (e.g. torch.arange(a, b)), not a slice, to a dataset type.")
    idx = torch.as_tensor(index)
    if idx.dtype == torch.bool:
        idx = idx.nonzero().view(-1)
    idx = idx.view(-1).long()
    return idx.to(device) if device is not None and idx.device != torch.device(device) else idx


def csr_gather(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor,
               values: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
    """CSR slices of ``rows`` as a new CSR, vectorised (no Python loop over rows).

    Args:
        indptr, indices: a CSR matrix's arrays (int64 tensors).
        rows: the rows to take, in the order wanted.
        values: the matrix values, or ``None``.

    Returns:
        ``(indptr, indices)`` or ``(indptr, indices, values)`` of the ``len(rows)``-row slice.

    Example:
        >>> ip, ix = torch.tensor([0, 2, 3]), torch.tensor([4, 7, 1])
        >>> [t.tolist() for t in csr_gather(ip, ix, torch.tensor([1, 0]))]
        [[0, 1, 3], [1, 4, 7]]
    """
    start, end = indptr[rows], indptr[rows + 1]
    lens = end - start
    out_ptr = torch.zeros(len(rows) + 1, dtype=torch.long, device=indptr.device)
    torch.cumsum(lens, 0, out=out_ptr[1:])
    total = int(out_ptr[-1])
    # position j of the output reads indices[start[row(j)] + (j - out_ptr[row(j)])]
    shift = torch.repeat_interleave(start - out_ptr[:-1], lens, output_size=total)
    pos = torch.arange(total, device=indptr.device) + shift
    if values is None:
        return out_ptr, indices[pos]
    return out_ptr, indices[pos], values[pos]


class TorchCSR:
    """A scipy CSR matrix's arrays as tensors on a device, with vectorised row slicing.

    Example:
        >>> import scipy.sparse as sp
        >>> m = TorchCSR(sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0]], dtype=np.float32)))
        >>> [t.tolist() for t in m.rows(torch.tensor([1]))]
        [[0, 1], [0], [1.0]]
    """

    def __init__(self, matrix, device: Device = None):
        import scipy.sparse as sp
        m = sp.csr_matrix(matrix)
        m.sort_indices()
        self.shape = m.shape
        self.indptr = torch.from_numpy(m.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(m.indices.astype(np.int64)).to(device)
        self.values = torch.from_numpy(m.data.astype(np.float32)).to(device)

    def rows(self, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(indptr, indices, values)`` of ``rows`` (see :func:`csr_gather`)."""
        return csr_gather(self.indptr, self.indices, rows, self.values)

    def dense(self, rows: torch.Tensor, binary: bool = False) -> torch.Tensor:
        """The ``rows`` as a dense float32 ``[len(rows), num_cols]`` tensor (1.0 entries if ``binary``)."""
        ptr, idx, val = self.rows(rows)
        return csr_to_dense(ptr, idx, self.shape[1], None if binary else val)


def csr_to_dense(indptr: torch.Tensor, indices: torch.Tensor, num_cols: int,
                 values: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A dense float ``[rows, num_cols]`` tensor from CSR arrays (multi-hot when ``values`` is None)."""
    rows = len(indptr) - 1
    row_of = torch.repeat_interleave(torch.arange(rows, device=indptr.device), indptr[1:] - indptr[:-1],
                                     output_size=len(indices))
    out = torch.zeros(rows, num_cols, dtype=torch.float32, device=indptr.device)
    out[row_of, indices] = 1.0 if values is None else values.float()
    return out


def gather_windows(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, length: int,
                   padding: str = "left") -> Tuple[torch.Tensor, torch.Tensor]:
    """The last ``length`` items of each segment ``flat[lo:hi]``, padded with 0 to ``[B, length]``.

    ``padding='left'`` right-aligns the items (zeros first, the latest item in the last
    column); ``'right'`` left-aligns them (the latest item at ``seq_len - 1``, zeros after).
    Returns ``(seq, seq_len)``, ``seq_len = min(hi - lo, length)``.

    Example:
        >>> flat = torch.tensor([0, 5, 6, 7])
        >>> gather_windows(flat, torch.tensor([1]), torch.tensor([4]), 2, "left")[0].tolist()
        [[6, 7]]
        >>> gather_windows(flat, torch.tensor([1]), torch.tensor([2]), 3, "right")[0].tolist()
        [[5, 0, 0]]
    """
    if padding not in ("left", "right"):
        raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}.")
    seq_len = torch.clamp(hi - lo, min=0, max=length)
    cols = torch.arange(length, device=flat.device)
    if padding == "left":
        idx = hi[:, None] - length + cols
        valid = cols >= (length - seq_len)[:, None]
    else:
        idx = (hi - seq_len)[:, None] + cols
        valid = cols < seq_len[:, None]
    if len(flat) == 0:
        return torch.zeros(len(lo), length, dtype=torch.long, device=flat.device), seq_len
    seq = flat[idx.clamp_(0, len(flat) - 1)]
    return seq.masked_fill_(~valid, 0), seq_len


def segments(group_of_row: np.ndarray, num_groups: int) -> np.ndarray:
    """Offsets of the contiguous groups of a group-sorted array: group g is ``off[g]:off[g+1]``."""
    return np.concatenate([[0], np.cumsum(np.bincount(group_of_row, minlength=num_groups))]).astype(np.int64)


def _identity(batch):
    return batch


# ---- sampling the batches ----------------------------------------------------------------
class IndexSampler(Sampler):
    """Yields whole batches of row indices (1-D int64 tensors) for ``batch_size=None`` loaders.

    Args:
        num_rows: rows of the dataset.
        batch_size: rows per batch.
        shuffle: a fresh permutation each epoch (else ``0..num_rows-1`` in order).
        drop_last: drop the last, smaller batch.
        seed: the permutation of epoch ``e`` is drawn from a generator seeded by ``(seed, e)``.
        num_replicas, rank: for data-parallel runs, this process is replica ``rank`` of
            ``num_replicas``; how the work is divided is set by ``shard``.
        shard: ``'rows'`` (training): each replica takes every ``num_replicas``-th row of the (shared)
            permutation, starting at ``rank``; rows are trimmed so every replica gets as many rows
            and batches (DDP needs the same number of steps everywhere).
            ``'batches'`` (evaluation): the batches of the unsharded run are dealt out whole and
            round-robin (global batch ``b`` goes to replica ``b % num_replicas``), nothing is
            dropped, and a replica left without a batch gets one empty batch, so every process
            enters the evaluation loop and joins the reduction of the metric sums.

    The epoch is ``self.epoch``; :class:`EpochLoader` advances it after each pass and
    ``set_epoch`` sets it (as Lightning does). Iterating twice in the same epoch repeats it.

    Example:
        >>> s = IndexSampler(5, 2, shuffle=False)
        >>> [b.tolist() for b in s]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, shard: str = "rows"):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank must be in 0..num_replicas-1, got rank={rank}, num_replicas={num_replicas}.")
        if shard not in ("rows", "batches"):
            raise ConfigError(f"shard must be 'rows' (training) or 'batches' (evaluation), got {shard!r}.")
        self.num_rows, self.batch_size, self.shuffle, self.drop_last = num_rows, batch_size, shuffle, drop_last
        self.seed, self.num_replicas, self.rank, self.shard = seed, num_replicas, rank, shard
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _by_batches(self) -> bool:
        return self.shard == "batches" and self.num_replicas > 1

    def _rows(self) -> int:
        """Rows this replica visits with ``shard='rows'`` (trimmed to a share of equal size); all otherwise."""
        if self.num_replicas > 1 and self.shard == "rows":
            return self.num_rows // self.num_replicas
        return self.num_rows

    def _batches(self, rows: int) -> int:
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __len__(self) -> int:
        n = self._batches(self._rows())
        if self._by_batches():  # this replica's share of the global batches, at least the empty one
            return max(len(range(self.rank, n, self.num_replicas)), 1)
        return n

    def global_batch_number(self, local_index: int) -> int:
        """Position, in the unsharded run, of this replica's ``local_index``-th batch (equal to
        ``local_index`` unless ``shard='batches'`` deals batches out across replicas).

        Example:
            >>> IndexSampler(10, 2, shuffle=False, num_replicas=2, rank=1, shard="batches").global_batch_number(2)
            5
        """
        return local_index * self.num_replicas + self.rank if self._by_batches() else local_index

    def _permutation(self, epoch: int) -> torch.Tensor:
        """Every row, in the unsharded visiting order of ``epoch``."""
        if self.shuffle:
            return torch.randperm(self.num_rows, generator=torch_generator(self.seed, epoch, 0x5A3))
        return torch.arange(self.num_rows)

    def _my_batches(self, epoch: int) -> List[torch.Tensor]:
        """This replica's batches of ``epoch``."""
        order = self._permutation(epoch)
        if self._by_batches():
            stop = self._batches(len(order)) * self.batch_size
            batches = [order[i:i + self.batch_size] for i in range(0, min(stop, len(order)), self.batch_size)]
            return batches[self.rank::self.num_replicas] or [order[:0]]
        if self.num_replicas > 1:
            order = order[:self._rows() * self.num_replicas][self.rank::self.num_replicas]
        stop = len(self) * self.batch_size
        return [order[i:i + self.batch_size] for i in range(0, min(stop, len(order)), self.batch_size)]

    def order(self, epoch: Optional[int] = None) -> torch.Tensor:
        """All row indices of this replica for ``epoch`` (default: the current one), in visiting order."""
        batches = self._my_batches(self.epoch if epoch is None else epoch)
        return torch.cat(batches) if batches else torch.zeros(0, dtype=torch.long)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self._my_batches(self.epoch))  # drawn eagerly: the epoch is read now, not at the first next()


class EpochLoader(DataLoader):
    """``DataLoader(dataset, sampler=IndexSampler, batch_size=None)`` that tells the dataset the epoch.

    Each ``iter(loader)`` calls ``dataset.set_epoch(e)`` (which redraws per-epoch randomness such as
    negatives or cloze masks) for the sampler's epoch ``e``, then advances the epoch. Worker
    processes are started after that call, so they see the new draw; ``persistent_workers`` is
    therefore not offered.

    In the main process (``num_workers=0``, no ``pin_memory``) the batches of a dataset type that
    keeps the base :meth:`BatchDataset.__getitem__` come from :func:`gather_in_blocks`: the same
    batches, each column gathered once per block of consecutive batches instead of once per batch.
    """

    def __init__(self, dataset: "BatchDataset", sampler: IndexSampler, num_workers: int = 0,
                 pin_memory: bool = False, **kwargs):
        super().__init__(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                         pin_memory=pin_memory, collate_fn=_identity, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = self.sampler.epoch
        self.dataset.set_epoch(epoch)
        if self.num_workers == 0 and not self.pin_memory and _gathers_columns(self.dataset):
            it = gather_in_blocks(self.dataset, list(iter(self.sampler)), BLOCK_BYTES)
        else:
            it = super().__iter__()
        self.sampler.epoch = epoch + 1
        return it


def _gathers_columns(dataset) -> bool:
    return isinstance(dataset, BatchDataset) and type(dataset).__getitem__ is BatchDataset.__getitem__


#: bytes of columns gathered at a time by :func:`gather_in_blocks` (bounds the transient copy)
BLOCK_BYTES = 64 * 2 ** 20


def gather_in_blocks(dataset: "BatchDataset", batches: Sequence[torch.Tensor],
                     block_bytes: int = BLOCK_BYTES) -> Iterator[Batch]:
    """``dataset[idx]`` for each ``idx`` of ``batches``, in order, with the same keys and values, but each
    column is gathered once for a block of consecutive batches (as many as fit in ``block_bytes`` of
    gathered columns, at least one batch: one ``index_select`` over the block's rows) and every batch of
    the block is a slice of it.

    One gather per block instead of one per batch costs a fraction of the time when the training step
    between two batches has evicted the columns from the CPU caches (BPR on ml-100k: 12% of an epoch).
    The batches are views of the block (their rows appear in no other batch); ``extend`` still gets
    each batch's row indices.
    """
    row_bytes = sum(v.element_size() * (v[0].numel() if len(v) else 0) for v in dataset.columns.values())
    block_rows = max(int(block_bytes) // max(row_bytes, 1), 1)
    i, n = 0, len(batches)
    while i < n:
        j, rows = i + 1, len(batches[i])
        while j < n and rows + len(batches[j]) <= block_rows:
            rows += len(batches[j])
            j += 1
        block = [as_index(b, dataset.device) for b in batches[i:j]]
        order = block[0] if len(block) == 1 else torch.cat(block)
        columns = {k: v.index_select(0, order) for k, v in dataset.columns.items()}
        lo = 0
        for idx in block:
            hi = lo + len(idx)
            batch = {k: c[lo:hi] for k, c in columns.items()}
            dataset.extend(idx, batch)
            yield batch
            lo = hi
        i = j


# ---- the base class ------------------------------------------------------------------------
class BatchDataset(Dataset):
    """Base of the dataset types: per-row column tensors, batches by whole-index fancy indexing.

    Subclasses fill ``self.columns`` (batch key -> tensor with one row per example),
    ``self.field_types`` (batch key -> :class:`FieldType` or ``None`` for structural keys) and
    may override :meth:`extend` (add keys computed per batch) and :meth:`set_epoch`.

    Args:
        split: the :class:`~recstudio.data.split.DataSplit`.
        phase: ``'train'``, ``'valid'`` or ``'test'``.
        resident_device: keep all tensors on this device (e.g. ``'cuda'``) so batches are built
            there; ``None`` keeps them on the CPU.
        seed: seed of shuffling and per-epoch draws (default: the dataset's ``seed`` config).
    """

    phases: Sequence[str] = ("train", "valid", "test")

    def __init__(self, split, phase: str = "train", resident_device: Device = None, seed: Optional[int] = None):
        if phase not in self.phases:
            raise ConfigError(f"{type(self).__name__} supports phase in {tuple(self.phases)}, got {phase!r}.")
        self.split = split
        self.dataset = split.dataset
        self.phase = phase
        self.device = torch.device(resident_device) if resident_device is not None else torch.device("cpu")
        self.seed = int(split.dataset.config.get("seed", 0) if seed is None else seed)
        self.columns: Dict[str, torch.Tensor] = {}
        self.field_types: Dict[str, Optional[FieldType]] = {}
        self.sources: Dict[str, str] = {}  # batch key -> dataset field it carries (for vocab sizes)
        self.epoch = 0

    # -- construction
    @classmethod
    def from_split(cls, split, phase: str = "train", config: Optional[Mapping[str, Any]] = None, **kwargs):
        """Build from a split, taking this type's arguments from ``config`` (other keys are ignored).

        Example:
            >>> TripletDataset.from_split(split, "train", {"num_neg": 1, "lr": 0.1})  # doctest: +SKIP
        """
        params = inspect.signature(cls.__init__).parameters
        chosen = {k: v for k, v in (config or {}).items() if k in params and k not in ("self", "split", "phase")}
        chosen.update(kwargs)
        return cls(split, phase, **chosen)

    def tensor(self, array, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """A numpy array as a tensor on the resident device."""
        t = torch.as_tensor(np.ascontiguousarray(array))
        return t.to(device=self.device, dtype=dtype or t.dtype)

    # -- sizes and fields
    @property
    def num_users(self) -> int:
        """User embedding rows (with padding row 0)."""
        return self.dataset.num_users

    @property
    def num_items(self) -> int:
        """Item embedding rows (with padding row 0)."""
        return self.dataset.num_items

    @property
    def fields(self) -> Dict[str, Optional[FieldType]]:
        """Batch keys, in order, with the field type they carry (``None``: structural, e.g. ``seq_len``)."""
        return dict(self.field_types)

    def vocab_size(self, key: str) -> int:
        """Embedding rows (with padding) for a token batch key (``neg_item``, ``item_seq`` -> items)."""
        return self.dataset.vocab_size(self.sources.get(key, key))

    # -- batches
    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, index) -> Batch:
        idx = as_index(index, self.device)
        batch = {k: v[idx] for k, v in self.columns.items()}
        self.extend(idx, batch)
        return batch

    def extend(self, idx: torch.Tensor, batch: Batch) -> None:
        """Add keys computed per batch (sequence windows, dense rows, features); default: none."""

    def set_epoch(self, epoch: int) -> None:
        """Redraw per-epoch randomness for ``epoch`` (negatives, masks); a no-op by default."""
        self.epoch = int(epoch)

    def loader(self, batch_size: int, shuffle: Optional[bool] = None, drop_last: bool = False,
               num_workers: int = 0, seed: Optional[int] = None, pin_memory: bool = False,
               num_replicas: int = 1, rank: int = 0, shard: str = "rows") -> EpochLoader:
        """A ``DataLoader`` yielding whole batches (``batch_size=None`` + :class:`IndexSampler`).

        Args:
            batch_size: rows per batch.
            shuffle: shuffle each epoch; default ``True`` for ``phase='train'``, else ``False``.
            drop_last: drop the last, smaller batch.
            num_workers: worker processes (only with CPU-resident tensors).
            seed: seed of the permutations (default: the dataset type's seed).
            pin_memory: pin batches for faster host-to-GPU copies.
            num_replicas, rank, shard: data-parallel sharding (see :class:`IndexSampler`):
                ``shard='rows'`` for training, ``'batches'`` for evaluation.
        """
        if num_workers > 0 and self.device.type != "cpu":
            raise ConfigError(f"num_workers={num_workers} needs CPU-resident data; this dataset lives on "
                              f"{self.device}. Use num_workers=0 (batches are built on the device anyway).")
        shuffle = self.phase == "train" if shuffle is None else shuffle
        sampler = IndexSampler(len(self), batch_size, shuffle, drop_last, self.seed if seed is None else seed,
                               num_replicas, rank, shard)
        return EpochLoader(self, sampler, num_workers=num_workers, pin_memory=pin_memory)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(phase={self.phase!r}, rows={len(self)}, keys={list(self.field_types)})"
