"""Content rows per second of ContentStore gathers for 4,096-triplet batches (one positive, one negative).

Two synthetic stores are written to ``--dir`` (default ``/tmp/recstudio-content-bench``; several GB, so the
script first checks the free space there and shrinks the item counts to at most ``--disk-share`` of it):

* images: ``uint8 [3, 224, 224]`` per item (147 KiB), ``--image-items`` rows (default 20,000: 3.0 GB);
* embeddings: ``float16 [2048]`` per item (4 KiB), ``--embedding-items`` rows (default 500,000: 2.0 GB).

Each batch draws 4,096 positive and 4,096 negative item ids uniformly and gathers their content with one
``store.triplet(pos, neg)`` call (8,192 rows). Measured per store: the memory-mapped path with the file's pages
evicted from the page cache first (``posix_fadvise(DONTNEED)`` on that file only: a cold read from disk), the
same path again (warm page cache), the in-memory path (rows laid out by item id in RAM, when they fit in
``--ram-share`` of the available memory), and, with CUDA, the GPU-resident path and the pinned staging path
(``to('cuda', max_bytes=0)``). Prints one line per case and the peak RSS (which counts the mapped file's
pages the process touched; they are page cache, reclaimable), then ``RESULT {json}``. ``--keep`` keeps the
files.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/content_store.py
    OMP_NUM_THREADS=1 python benchmarks/content_store.py --image-items 2000 --embedding-items 50000  # small
"""
import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recstudio.data.content import ContentStore  # noqa: E402

TRIPLETS = 4096


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def available_ram() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def write_store(path: Path, rows: int, row_shape, dtype, seed: int) -> None:
    """A synthetic ``.npy`` of ``rows`` rows, written in ~64 MB blocks (random blocks, reused with shifts); row 0
    (the padding item) is zeros, so the in-memory store uses the array as it is."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, *row_shape))
    row_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    step = max(1, (64 << 20) // row_bytes)
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        block = rng.integers(0, 256, (step, *row_shape), dtype=np.uint8)
    else:
        block = rng.standard_normal((step, *row_shape), dtype=np.float32).astype(dtype)
    for k, lo in enumerate(range(0, rows, step)):
        n = min(step, rows - lo)
        arr[lo:lo + n] = np.roll(block[:n], k, axis=0)
    arr[0] = 0  # row 0 is the padding item
    arr.flush()
    del arr
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def evict(path: Path) -> None:
    with open(path, "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def measure(store: ContentStore, batches: int, seed: int, device=None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    n = store.num_items
    total, start = 0, time.perf_counter()
    for _ in range(batches):
        pos = torch.randint(1, n, (TRIPLETS,), generator=gen)
        neg = torch.randint(1, n, (TRIPLETS, 1), generator=gen)
        pc, nc = store.triplet(pos, neg, device)
        total += pc.shape[0] + nc.shape[0] * nc.shape[1]
        del pc, nc  # one batch alive at a time, as in a training loop
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    return {"rows_per_s": round(total / secs), "batches": batches, "seconds": round(secs, 3),
            "mb_per_s": round(total * store.row_bytes / secs / 1e6, 1)}


def bench(name: str, path: Path, rows: int, row_shape, dtype, batches_cold: int, batches_warm: int,
          ram_share: float, seed: int) -> dict:
    t0 = time.perf_counter()
    write_store(path, rows, row_shape, dtype, seed)
    size = path.stat().st_size
    print(f"{name}: wrote {rows:,} rows x {row_shape} {np.dtype(dtype)} = {size / 1e9:.2f} GB in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    out = {"rows": rows, "row_shape": list(row_shape), "dtype": str(np.dtype(dtype)), "file_gb": round(size / 1e9, 2)}
    store = ContentStore.from_npy(path).bind(None, num_items=rows)
    evict(path)
    out["mapped_cold"] = measure(store, batches_cold, seed)
    out["mapped_warm"] = measure(store, batches_warm, seed + 1)
    del store  # unmap: the file's pages leave this process's RSS
    if size < ram_share * available_ram():
        mem = ContentStore.from_array(np.load(path)).bind(None, num_items=rows)
        out["in_memory"] = measure(mem, batches_warm, seed + 2)
        del mem
    else:
        out["in_memory"] = f"skipped: {size / 1e9:.1f} GB > {ram_share:.0%} of available RAM"
    if torch.cuda.is_available():
        gpu = ContentStore.from_npy(path).bind(None, num_items=rows).to("cuda")
        out["gpu_resident" if gpu.on_device else "gpu_staged_auto"] = measure(gpu, batches_warm, seed + 3, "cuda")
        del gpu
        staged = ContentStore.from_npy(path).bind(None, num_items=rows).to("cuda", max_bytes=0)
        out["gpu_pinned_staging"] = measure(staged, batches_warm, seed + 4, "cuda")
    for case, res in out.items():
        if isinstance(res, dict):
            print(f"  {case:20s} {res['rows_per_s']:>12,} rows/s  {res['mb_per_s']:>9,.1f} MB/s  "
                  f"({res['batches']} batches of {2 * TRIPLETS:,} rows, {res['seconds']} s)", flush=True)
        elif isinstance(res, str):
            print(f"  {case:20s} {res}", flush=True)
    print(f"  peak RSS so far {peak_rss_gb():.2f} GB", flush=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("/tmp/recstudio-content-bench"))
    p.add_argument("--image-items", type=int, default=20_000)
    p.add_argument("--embedding-items", type=int, default=500_000)
    p.add_argument("--disk-share", type=float, default=0.5, help="use at most this share of the free disk")
    p.add_argument("--ram-share", type=float, default=0.5, help="in-memory case only below this share of free RAM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the synthetic files")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.dir.mkdir(parents=True, exist_ok=True)
    image_row, emb_row = 3 * 224 * 224, 2048 * 2
    need = args.image_items * image_row + args.embedding_items * emb_row
    free = shutil.disk_usage(args.dir).free
    if need > args.disk_share * free:
        scale = args.disk_share * free / need
        args.image_items, args.embedding_items = int(args.image_items * scale), int(args.embedding_items * scale)
        print(f"only {free / 1e9:.1f} GB free in {args.dir}: scaled the stores by {scale:.2f}", flush=True)
    print(f"{args.dir}: {free / 1e9:.1f} GB free; writing {need / 1e9:.2f} GB; torch threads "
          f"{torch.get_num_threads()}; CUDA {torch.cuda.is_available()}", flush=True)
    result = {"triplets_per_batch": TRIPLETS, "rows_per_batch": 2 * TRIPLETS}
    try:
        result["images_uint8_3x224x224"] = bench("images", args.dir / "images.npy", args.image_items, (3, 224, 224),
                                                 np.uint8, 2, 4, args.ram_share, args.seed)
        result["embeddings_float16_2048"] = bench("embeddings", args.dir / "embeddings.npy", args.embedding_items,
                                                  (2048,), np.float16, 10, 40, args.ram_share, args.seed)
    finally:
        if not args.keep:
            for name in ("images.npy", "embeddings.npy"):
                (args.dir / name).unlink(missing_ok=True)
    result["peak_rss_gb"] = round(peak_rss_gb(), 2)
    print(f"peak RSS {result['peak_rss_gb']} GB")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
