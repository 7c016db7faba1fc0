"""Torch datasets over tables of raw features, through a fitted :class:`~recstudio.data.features.FeaturePipeline`.

- :class:`DataFrameDataset`: an in-memory DataFrame, transformed once; rows or batches by index.
- :class:`IterableDataFrameDataset`: CSV or Parquet files read lazily chunk by chunk (never the whole
  file), shuffled within a buffer, sharded across DataLoader workers and DDP ranks; yields dict batches.

Both yield ``key -> tensor`` dicts with the pipeline's output keys (and its label columns), the input a
feature model's ``FieldEmbedding`` takes.
"""
import csv
import io
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from recstudio.data.features import FeaturePipeline
from recstudio.utils.errors import ConfigError, DataError

Arrays = Dict[str, np.ndarray]


def _to_tensors(arrays: Arrays) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _check_fitted(pipeline) -> None:
    if not isinstance(pipeline, FeaturePipeline):
        raise ConfigError(f"expected a FeaturePipeline, got {type(pipeline).__name__}.")
    if not pipeline.fitted:
        raise DataError("the FeaturePipeline is not fitted; fit it on the training split first "
                        "(pipeline.fit(train_frame) or pipeline.fit_chunks(...)).")


def arrow_types(pipeline: FeaturePipeline) -> dict:
    """``column -> Arrow type`` for reading a CSV in blocks without per-block type inference: string-fitted
    token columns and sequence cells as strings, numeric columns and labels as float64, integer tokens int64."""
    import pyarrow as pa
    from recstudio.data.features import Bucketized, Numeric, TokenSeq
    types = {c: pa.float64() for c in pipeline.labels}
    strings = pipeline.read_dtypes()
    for f in pipeline.features:
        if isinstance(f, TokenSeq):
            types[f.name] = pa.string()
            if f.weight:
                types[f.weight] = pa.string()
        elif isinstance(f, (Numeric, Bucketized)):
            types[f.name] = pa.float64()
        else:
            types[f.name] = pa.string() if f.name in strings else pa.int64()
    return types


class DataFrameDataset(Dataset):
    """An in-memory pandas DataFrame through a fitted pipeline (transformed once, vectorised).

    ``ds[i]`` is one row (a dict of 0-d / 1-d tensors, so the default DataLoader collation works);
    ``ds[[i, j, ...]]`` (a list, array, tensor or slice) is a batch directly. :meth:`loader` builds a
    DataLoader that fetches whole batches by index (no per-row collation).

    Example:
        >>> from recstudio.data.features import Categorical, FeaturePipeline
        >>> df = pd.DataFrame({"user": ["a", "b", "a"], "click": [1, 0, 1]})
        >>> pipe = FeaturePipeline([Categorical("user")], labels=["click"]).fit(df)
        >>> ds = DataFrameDataset(df, pipe)
        >>> ds[[0, 2]]["user"].tolist(), len(ds)
        ([2, 2], 3)
    """

    def __init__(self, frame: pd.DataFrame, pipeline: FeaturePipeline, labels: Optional[bool] = None):
        _check_fitted(pipeline)
        self.pipeline = pipeline
        self.tensors = _to_tensors(pipeline.transform(frame, labels=labels))
        self._len = len(frame)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index) -> Dict[str, torch.Tensor]:
        if isinstance(index, (list, np.ndarray, slice)) or (torch.is_tensor(index) and index.dim() > 0):
            if not isinstance(index, slice):
                index = torch.as_tensor(np.asarray(index), dtype=torch.long)
            return {k: v[index] for k, v in self.tensors.items()}
        i = int(index)
        if not -self._len <= i < self._len:
            raise IndexError(f"row {i} out of range for a dataset of {self._len} rows")
        return {k: v[i] for k, v in self.tensors.items()}

    def loader(self, batch_size: int, shuffle: bool = False, drop_last: bool = False, seed: Optional[int] = None,
               **kwargs) -> DataLoader:
        """A DataLoader of dict batches, each fetched with one index operation."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        sampler = RandomSampler(self, generator=gen) if shuffle else SequentialSampler(self)
        return DataLoader(self, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None, **kwargs)


class _ByteRange(io.RawIOBase):
    """Bytes ``[start, stop)`` of a file as a readable stream."""

    def __init__(self, path: str, start: int, stop: int):
        super().__init__()
        self._fh = open(path, "rb")
        self._fh.seek(start)
        self._left = stop - start

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        got = self._fh.readinto(memoryview(b)[:n])
        self._left -= got
        return got

    def close(self) -> None:
        self._fh.close()
        super().close()


def _next_line_start(fh, pos: int, first: int) -> int:
    """The offset of the first line that starts at or after ``pos`` (``first``: where the data begins)."""
    if pos <= first:
        return first
    fh.seek(pos - 1)
    fh.readline()                # ends at the newline at or after pos - 1
    return fh.tell()


def csv_byte_ranges(path: str, parts: int) -> Tuple[List[str], List[Tuple[int, int]], int]:
    """Split a CSV file's data lines into ``parts`` contiguous byte ranges on line boundaries.

    Every line belongs to exactly one range (the one its first byte falls in), so the ranges are disjoint
    and cover the file. Fields with embedded newlines are not supported.

    Returns:
        (the header line's raw text, the ranges, the data's first offset).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        header = fh.readline()
        first = fh.tell()
        cuts = [first] + [_next_line_start(fh, first + (size - first) * k // parts, first)
                          for k in range(1, parts)] + [size]
    return header.decode("utf-8-sig").rstrip("\r\n"), list(zip(cuts[:-1], cuts[1:])), first


class IterableDataFrameDataset(IterableDataset):
    """Stream CSV or Parquet files through a fitted pipeline, in dict batches, never holding a whole file.

    Sharding: the reading units are split over ``world_size x num_workers`` shards (the DDP rank from
    ``torch.distributed`` when it is initialised, else the ``rank`` / ``world_size`` arguments; the worker
    from ``torch.utils.data.get_worker_info()``). A CSV file is cut into one byte range per shard on line
    boundaries, so each shard parses only its own part; a Parquet file's row groups are dealt round-robin.
    The shards are disjoint and together cover every row once. Shards may differ by up to a chunk / row group
    in length, so DDP training should stop every rank at the same step (e.g. ``min`` of the counts).

    Shuffling: a buffer of ``shuffle_buffer`` transformed rows is permuted; the first half is emitted and
    the rest kept to mix with the next chunks (every row is emitted exactly once per epoch). The order of a
    shard's row groups / files is permuted too. :meth:`set_epoch` changes the permutation per epoch
    (with non-persistent workers, set it before iterating).

    Use ``DataLoader(ds, batch_size=None, num_workers=...)``: the dataset batches itself.

    Args:
        paths: one file or several (``.csv`` / ``.tsv`` / ``.txt`` or ``.parquet`` / ``.pq``).
        pipeline: a fitted :class:`FeaturePipeline`.
        batch_size: rows per batch.
        shuffle_buffer: rows held for shuffling (0: file order).
        chunk_rows: rows per read (CSV chunk; Parquet batch).
        seed: shuffle seed (with the epoch and the shard).
        rank, world_size: the DDP position when ``torch.distributed`` is not initialised.
        drop_last: drop each shard's last incomplete batch.
        labels: as :meth:`FeaturePipeline.transform`.
        read_options: ``sep``, and with ``csv_engine='pandas'`` any ``pd.read_csv`` argument.
        csv_engine: ``'pandas'`` (``pd.read_csv(chunksize=...)``, the default: least memory) or
            ``'pyarrow'`` (Arrow's streaming CSV reader: ~15% faster here, ~170 MiB more resident memory;
            column types come from the pipeline).
    """

    CSV_EXT = (".csv", ".tsv", ".txt", ".csv.gz")
    PARQUET_EXT = (".parquet", ".pq")

    def __init__(self, paths: Union[str, Sequence[str]], pipeline: FeaturePipeline, batch_size: int = 1024,
                 shuffle_buffer: int = 0, chunk_rows: int = 65536, seed: int = 0, rank: Optional[int] = None,
                 world_size: Optional[int] = None, drop_last: bool = False, labels: Optional[bool] = None,
                 read_options: Optional[dict] = None, csv_engine: str = "pandas"):
        super().__init__()
        _check_fitted(pipeline)
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not self.paths:
            raise ConfigError("IterableDataFrameDataset needs at least one file.")
        for p in self.paths:
            if not os.path.isfile(p):
                raise DataError(f"IterableDataFrameDataset: no file {p!r}.")
            if not str(p).lower().endswith(self.CSV_EXT + self.PARQUET_EXT):
                raise ConfigError(f"{p!r}: expected a CSV ({self.CSV_EXT}) or Parquet ({self.PARQUET_EXT}) file.")
        for key, value in (("batch_size", batch_size), ("chunk_rows", chunk_rows)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"IterableDataFrameDataset {key} must be a positive integer, got {value!r}.")
        if not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
            raise ConfigError(f"shuffle_buffer must be an integer >= 0, got {shuffle_buffer!r}.")
        if (rank is None) != (world_size is None):
            raise ConfigError("give both rank and world_size, or neither.")
        if world_size is not None and not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
            raise ConfigError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}.")
        if str(self.paths[0]).endswith(".gz") and world_size not in (None, 1):
            raise ConfigError("a gzip CSV cannot be split by byte ranges; decompress it or use Parquet to shard it.")
        self.pipeline, self.batch_size, self.shuffle_buffer = pipeline, batch_size, shuffle_buffer
        self.chunk_rows, self.seed, self.rank, self.world_size = chunk_rows, int(seed), rank, world_size
        self.drop_last, self.labels = drop_last, labels
        self.read_options = dict(read_options or {})
        if csv_engine not in ("pyarrow", "pandas"):
            raise ConfigError(f"csv_engine must be 'pyarrow' or 'pandas', got {csv_engine!r}.")
        if csv_engine == "pyarrow" and set(self.read_options) - {"sep"}:
            raise ConfigError(f"read_options {sorted(set(self.read_options) - {'sep'})} are pd.read_csv "
                              f"arguments; set csv_engine='pandas' to use them.")
        self.csv_engine = csv_engine
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- sharding ------------------------------------------------------------------------------------------
    def shard(self) -> Tuple[int, int]:
        """``(this shard, number of shards)`` from the DDP rank and the DataLoader worker."""
        rank, world = self.rank, self.world_size
        if rank is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world = dist.get_rank(), dist.get_world_size()
            else:
                rank, world = 0, 1
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def _needed(self, available: Sequence[str]) -> List[str]:
        need = self.pipeline.columns + [c for c in self.pipeline.labels if c in available]
        missing = [c for c in self.pipeline.columns if c not in available]
        if missing:
            raise DataError(f"the file lacks columns {missing} that the pipeline needs (columns: {list(available)}).")
        return need

    def _csv_chunks(self, path: str, shard: int, shards: int) -> Iterator[pd.DataFrame]:
        opts = dict(self.read_options)
        sep = opts.pop("sep", "\t" if str(path).lower().endswith(".tsv") else ",")
        header, ranges, _ = csv_byte_ranges(path, shards)
        names = next(csv.reader([header], delimiter=sep))
        start, stop = ranges[shard]
        if stop <= start:
            return
        usecols = self._needed(names)
        self._current = path
        with io.BufferedReader(_ByteRange(path, start, stop), buffer_size=1 << 20) as stream:
            if self.csv_engine == "pyarrow":
                yield from self._arrow_csv(stream, names, usecols, sep, start, stop)
                return
            dtype = {**self.pipeline.read_dtypes(), **opts.pop("dtype", {})}
            yield from pd.read_csv(stream, sep=sep, header=None, names=names, usecols=usecols,
                                   dtype={k: v for k, v in dtype.items() if k in usecols},
                                   chunksize=self.chunk_rows, **opts)

    def _arrow_csv(self, stream, names, usecols, sep, start, stop) -> Iterator[pd.DataFrame]:
        """pyarrow's streaming CSV reader over the byte range; blocks of about ``chunk_rows`` rows."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        sample = stream.peek(1 << 16)[:1 << 16]
        line = max(len(sample) / max(sample.count(b"\n"), 1), 1.0)
        block = int(min(max(line * self.chunk_rows, 1 << 16), 1 << 28))
        reader = None
        while True:
            try:
                if reader is None:                         # opening reads (and converts) the first block
                    reader = pacsv.open_csv(
                        stream, read_options=pacsv.ReadOptions(column_names=names, block_size=block,
                                                                 use_threads=False),
                        parse_options=pacsv.ParseOptions(delimiter=sep),
                        convert_options=pacsv.ConvertOptions(include_columns=usecols,
                                                             column_types=arrow_types(self.pipeline),
                                                             strings_can_be_null=True))
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as err:
                raise DataError(f"{self._current}: bytes {start}-{stop}: a value does not match the type the "
                                f"fitted pipeline expects ({err}).") from None
            if batch.num_rows:
                yield batch.to_pandas()

    def _parquet_units(self) -> List[Tuple[str, int]]:
        import pyarrow.parquet as pq
        units = []
        for p in self.paths:
            if str(p).lower().endswith(self.PARQUET_EXT):
                units += [(p, g) for g in range(pq.ParquetFile(p).num_row_groups)]
        return units

    def _parquet_chunks(self, path: str, group: int) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        cols = self._needed(pf.schema_arrow.names)
        for batch in pf.iter_batches(batch_size=self.chunk_rows, row_groups=[group], columns=cols):
            yield batch.to_pandas()

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The raw frames of this shard, in (shuffled, with a buffer) unit order."""
        shard, shards = self.shard()
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        csvs = [p for p in self.paths if not str(p).lower().endswith(self.PARQUET_EXT)]
        units: list = [("csv", p) for p in csvs]
        units += [("pq", u) for i, u in enumerate(self._parquet_units()) if i % shards == shard]
        if self.shuffle_buffer:
            units = [units[i] for i in rng.permutation(len(units))]
        for kind, unit in units:
            yield from (self._csv_chunks(unit, shard, shards) if kind == "csv" else self._parquet_chunks(*unit))

    # -- batching ------------------------------------------------------------------------------------------
    def _emit(self, buf: Arrays, n: int, perm: Optional[np.ndarray]) -> Iterator[Dict[str, torch.Tensor]]:
        for s in range(0, n, self.batch_size):
            rows = slice(s, s + self.batch_size) if perm is None else perm[s:s + self.batch_size]
            yield _to_tensors({k: v[rows] for k, v in buf.items()})

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        shard, _ = self.shard()
        rng = np.random.default_rng([self.seed, self.epoch, shard, 1])
        bs, cap = self.batch_size, self.shuffle_buffer
        pending: List[Arrays] = []            # transformed chunks not emitted yet (one copy of each row)
        n = 0
        for frame in self.chunks():
            arrays = self.pipeline.transform(frame, labels=self.labels)
            del frame
            pending.append(arrays)
            n += len(next(iter(arrays.values())))
            if n < (cap or bs):
                continue
            buf = _concat(pending)
            pending = []
            if cap:                           # emit the first half of a random order, keep the rest
                perm = rng.permutation(n)
                out = (n - cap // 2) // bs * bs
                yield from self._emit(buf, out, perm)
                rest = {k: v[perm[out:]] for k, v in buf.items()}
            else:
                out = n // bs * bs
                yield from self._emit(buf, out, None)
                rest = {k: v[out:].copy() for k, v in buf.items()}
            del buf
            pending, n = [rest], n - out
        if not n:
            return
        buf = _concat(pending)
        perm = rng.permutation(n) if cap else None
        if self.drop_last:
            n = n // bs * bs
        yield from self._emit(buf, n, perm)


def _concat(parts: List[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
