"""Data-layer speed and memory on an ml-20m-shaped synthetic file.

Measures, each in a fresh process (so peak memory is that step's own):
  1. cold: read -> filter (5-core) -> remap -> split, writing the processed cache;
  2. warm: load from the processed cache -> split.

Targets on 2 CPU cores: cold under 60 s and 6 GB peak; warm under 5 s.

Usage:
    python benchmarks/data_pipeline.py                      # 138k users, 27k items, 20M rows
    python benchmarks/data_pipeline.py --interactions 1000000   # quicker
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEP = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from recstudio.data import from_atomic
ds = from_atomic({folder!r}, data_dir={cache!r}, min_user_inter=5, min_item_inter=5)
t1 = time.perf_counter()
split = ds.split()
t2 = time.perf_counter()
print(json.dumps({{"load": t1 - t0, "split": t2 - t1, "total": t2 - t0,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "users": ds.num_users - 1, "items": ds.num_items - 1, "inter": ds.num_interactions,
                  "train": len(split.train)}}))
"""


def run_step(folder: Path, cache: Path) -> dict:
    code = STEP.format(root=str(ROOT), folder=str(folder), cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from benchmarks.synthetic import power_law_interactions, write_inter
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=138_000)
    p.add_argument("--items", type=int, default=27_000)
    p.add_argument("--interactions", type=int, default=20_000_000)
    a = p.parse_args()
    name = f"synthetic-{a.interactions}"
    folder = ROOT / "benchmarks" / "_data" / name
    inter = folder / f"{name}.inter"
    if not inter.is_file():
        t = time.time()
        write_inter(inter, *power_law_interactions(a.users, a.items, a.interactions))
        print(f"generated {inter} ({inter.stat().st_size / 2**20:.0f} MiB) in {time.time() - t:.1f} s")
    cache = Path(tempfile.mkdtemp(prefix="recstudio-bench-"))
    try:
        cold = run_step(folder, cache)
        warm = run_step(folder, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"data: {cold['users']} users, {cold['items']} items, {cold['inter']} interactions after 5-core; "
          f"{cold['train']} train")
    print(f"cold  read+filter+remap {cold['load']:.2f} s  split {cold['split']:.2f} s  total {cold['total']:.2f} s"
          f"  peak {cold['peak_gb']:.2f} GB   (target < 60 s, < 6 GB)")
    print(f"warm  cache load {warm['load']:.2f} s  split {warm['split']:.2f} s  total {warm['total']:.2f} s"
          f"  peak {warm['peak_gb']:.2f} GB   (target < 5 s)")


if __name__ == "__main__":
    main()
