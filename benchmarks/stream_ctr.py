"""Stream a synthetic CTR table larger than the memory it is given through one epoch.

Writes a CSV (or Parquet) table of ``--rows`` rows x 20 feature fields + a click label, fits a
:class:`~recstudio.data.features.FeaturePipeline` on the first ``--fit-rows`` rows (the "training split",
read in chunks), then runs one epoch of :class:`~recstudio.data.tables.IterableDataFrameDataset` through a
``DataLoader`` in a child process whose address space is capped with ``RLIMIT_AS`` at ``--limit-mb``
(DataLoader workers inherit the cap, each). It prints rows/s and the peak resident memory (main process,
and the largest worker), and checks that the file is at least ``--min-ratio`` times the limit and that
every row arrived once.

Fields: ``C1..C12`` categorical integers (skewed, cardinalities 10..200k, min_freq 2 -> OOV),
``device`` / ``site`` hashed strings, ``I1..I4`` numeric (standard scaling, I1 / I2 log), ``I5`` bucketized
(10 equal-frequency buckets), ``hist`` a token sequence (0-12 ids joined by '|', max_len 10).

Example (the issue's size; ~8 GB of CSV, allow time and disk):
    python benchmarks/stream_ctr.py --rows 50000000 --limit-mb 2048
A quick run:
    python benchmarks/stream_ctr.py --rows 2000000 --limit-mb 1200 --min-ratio 0

Measured (shared 2-core machine, 2026-12-02): ``--rows 32000000 --limit-mb 1024 --buffer 131072``:
4,364 MiB CSV (4.26x the cap), 32M rows in 130.5 s = 245k rows/s, peak RSS 475 MiB, peak address
space 1,007 MiB under the 1,024 MiB RLIMIT_AS (the imports of torch/pandas/pyarrow alone take ~300 MiB
resident, ~850 MiB of address space).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CARDS = [10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 60_000, 100_000, 150_000, 200_000]


def generate(path: str, rows: int, fmt: str, block: int = 1_000_000, seed: int = 0) -> None:
    """Write the synthetic table block by block (never more than ``block`` rows in memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    rng = np.random.default_rng(seed)
    devices = pa.array([f"dev{k:07d}" for k in range(1_000_000)])
    sites = pa.array([f"site{k:05d}" for k in range(20_000)])
    lens = rng.integers(0, 13, 100_000)
    hist_pool = pa.array(["|".join(map(str, rng.integers(1, 50_000, n))) for n in lens])
    writer = None
    done = 0
    while done < rows:
        n = min(block, rows - done)
        cols = {"click": rng.integers(0, 2, n, dtype=np.int8)}
        for k, card in enumerate(CARDS, 1):
            cols[f"C{k}"] = (card * rng.random(n) ** 3).astype(np.int32)
        cols["device"] = devices.take(pa.array((1_000_000 * rng.random(n) ** 2).astype(np.int64)))
        cols["site"] = sites.take(pa.array(rng.integers(0, 20_000, n)))
        cols["I1"] = np.round(rng.lognormal(3, 1.5, n), 3)
        cols["I2"] = rng.integers(0, 10_000, n)
        cols["I3"] = np.round(rng.normal(0, 1, n), 4)
        cols["I4"] = np.round(rng.random(n), 4)
        cols["I5"] = np.round(rng.gamma(2.0, 5.0, n), 3)
        cols["hist"] = hist_pool.take(pa.array(rng.integers(0, len(hist_pool), n)))
        batch = pa.table(cols)
        if writer is None:
            writer = (pacsv.CSVWriter(path, batch.schema) if fmt == "csv"
                      else pq.ParquetWriter(path, batch.schema))
        if fmt == "csv":
            writer.write_table(batch)
        else:
            writer.write_table(batch, row_group_size=256_000)
        done += n
    writer.close()


def make_pipeline():
    from recstudio.data.features import Bucketized, Categorical, FeaturePipeline, Hashed, Numeric, TokenSeq
    feats = [Categorical(f"C{k}", min_freq=2) for k in range(1, 13)]
    feats += [Hashed("device", buckets=100_000), Hashed("site", buckets=10_000)]
    feats += [Numeric("I1", log=True), Numeric("I2", log=True), Numeric("I3"), Numeric("I4", scaling="minmax")]
    feats += [Bucketized("I5", bins=10), TokenSeq("hist", max_len=10, sep="|", min_freq=2)]
    return FeaturePipeline(feats, labels=["click"])


def peak_rss_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024          # Linux: KiB


def stream(args) -> dict:
    """The measured part (runs under the RLIMIT_AS cap)."""
    import pandas as pd
    import pyarrow.parquet as pq
    import torch
    from torch.utils.data import DataLoader

    from recstudio.data.tables import IterableDataFrameDataset
    torch.set_num_threads(1)
    pipe = make_pipeline()
    t0 = time.perf_counter()
    if args.format == "csv":
        head = pd.read_csv(args.path, nrows=args.fit_rows, chunksize=200_000, dtype=pipe.read_dtypes())
    else:
        head = _take_rows((b.to_pandas() for b in pq.ParquetFile(args.path).iter_batches(batch_size=200_000)),
                          args.fit_rows)
    pipe.fit_chunks(head)
    fit_s = time.perf_counter() - t0
    ds = IterableDataFrameDataset(args.path, pipe, batch_size=args.batch_size, shuffle_buffer=args.buffer,
                                  chunk_rows=args.chunk_rows, seed=0, csv_engine=args.csv_engine)
    loader = DataLoader(ds, batch_size=None, num_workers=args.workers)
    rows, batches, checksum = 0, 0, 0.0
    t0 = time.perf_counter()
    for batch in loader:
        rows += len(batch["click"])
        batches += 1
        checksum += float(batch["click"].sum())
    epoch_s = time.perf_counter() - t0
    return {"rows": rows, "batches": batches, "clicks": checksum, "fit_rows": args.fit_rows, "fit_s": fit_s,
            "epoch_s": epoch_s, "rows_per_s": rows / epoch_s, "peak_rss_main_mb": peak_rss_mb(resource.RUSAGE_SELF),
            "peak_rss_worker_mb": peak_rss_mb(resource.RUSAGE_CHILDREN) if args.workers else 0.0,
            "vm_peak_mb": _vm_peak_mb(), "sizes": {k: v for k, v in pipe.sizes().items()}}


def _vm_peak_mb() -> float:
    """Peak virtual size of this process (what RLIMIT_AS caps), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _take_rows(frames, n):
    left = n
    for f in frames:
        if left <= 0:
            return
        yield f.iloc[:left]
        left -= len(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50_000_000, help="rows of the synthetic table")
    p.add_argument("--limit-mb", type=int, default=2048, help="RLIMIT_AS of the streaming process (MiB)")
    p.add_argument("--min-ratio", type=float, default=4.0, help="require file size >= ratio x limit (0: no check)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--path", default=None, help="the table file (default /tmp/stream_ctr_<rows>.<format>)")
    p.add_argument("--keep", action="store_true", help="keep the file afterwards")
    p.add_argument("--fit-rows", type=int, default=1_000_000, help="rows the pipeline is fitted on")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--buffer", type=int, default=131_072, help="shuffle buffer (rows)")
    p.add_argument("--chunk-rows", type=int, default=65_536)
    p.add_argument("--csv-engine", choices=("pandas", "pyarrow"), default="pandas",
                   help="CSV reader: pandas (less memory) or pyarrow (faster, ~170 MiB more)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (each capped at --limit-mb)")
    p.add_argument("--stage", choices=("all", "stream"), default="all", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.path = args.path or f"/tmp/stream_ctr_{args.rows}.{args.format}"

    if args.stage == "stream":
        limit = args.limit_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(stream(args)))
        return 0

    made = False
    if not os.path.exists(args.path):
        t0 = time.perf_counter()
        generate(args.path, args.rows, args.format)
        made = True
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.0f}s -> {args.path}", flush=True)
    size_mb = os.path.getsize(args.path) / 2 ** 20
    ratio = size_mb / args.limit_mb
    print(f"file {size_mb:,.0f} MiB = {ratio:.2f} x the {args.limit_mb} MiB limit", flush=True)
    try:
        if args.min_ratio and ratio < args.min_ratio:
            print(f"error: the file is only {ratio:.2f} x the limit; raise --rows or lower --limit-mb "
                  f"(or --min-ratio 0)", file=sys.stderr)
            return 2
        cmd = [sys.executable, os.path.abspath(__file__), "--stage", "stream"] + [
            a for a in (argv if argv is not None else sys.argv[1:])]
        cmd += ["--path", args.path]
        # Arrow's default allocator and glibc's per-thread arenas reserve address space they never touch;
        # under an RLIMIT_AS cap use the system allocator and two arenas.
        env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(proc.stdout, proc.stderr[-4000:], file=sys.stderr)
            print(f"error: the streaming process failed under RLIMIT_AS={args.limit_mb} MiB", file=sys.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        expected = args.rows
        print(f"pipeline fitted on {res['fit_rows']:,} rows in {res['fit_s']:.1f}s; "
              f"vocabulary sizes {res['sizes']}")
        print(f"epoch: {res['rows']:,} rows in {res['batches']:,} batches, {res['epoch_s']:.1f}s = "
              f"{res['rows_per_s']:,.0f} rows/s (workers={args.workers}, shuffle buffer {args.buffer:,}, "
              f"{args.format}{'/' + args.csv_engine if args.format == 'csv' else ''})")
        print(f"peak RSS: main {res['peak_rss_main_mb']:.0f} MiB (peak address space {res['vm_peak_mb']:.0f} MiB)"
              + (f", largest worker {res['peak_rss_worker_mb']:.0f} MiB" if args.workers else "")
              + f"; address-space cap {args.limit_mb} MiB per process; file {size_mb:,.0f} MiB ({ratio:.2f}x)")
        if res["rows"] != expected:
            print(f"error: streamed {res['rows']} rows, the file has {expected}", file=sys.stderr)
            return 1
        return 0
    finally:
        if made and not args.keep:
            os.remove(args.path)


if __name__ == "__main__":
    sys.exit(main())
