"""Reference numbers of the CTR models (FM, DeepFM) on Frappe, the BARS Frappe_x1 protocol.

Protocol: every log row a positive plus 2 sampled negatives (288,609 rows), context fields daytime,
weekday, isweekend, homework, cost, weather, country, city, a random 7:2:1 split of all rows, pointwise
BCE, embedding 10, Adam 1e-3, batch 4096, FuxiCTR's schedule (``scheduler: plateau_fuxictr``: lr x 0.1 at
every non-improving validation, floor 1e-6), early stop on valid auc (patience 2), test auc / gauc /
logloss of the best checkpoint, seed 2022, one thread (``OMP_NUM_THREADS=1``).

Reference (BARS, https://openbenchmark.github.io/BARS/CTR/leaderboard/frappe_x1.html): test AUC
FM 0.9671, DeepFM 0.9842 (logloss 0.2519 / 0.1509).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/ctr_reference.py FM --data_dir /tmp/recstudio-data
    OMP_NUM_THREADS=1 python benchmarks/ctr_reference.py DeepFM --epochs 30

The frappe files are read from ``<data_dir>/frappe/raw/`` (the Mobile_Frappe.zip download, or its
extracted ``frappe.csv`` / ``meta.csv``; ``--shared`` links them from /work/shared/datasets/frappe).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from recstudio.utils.cli import parse_overrides  # noqa: E402
SHARED = Path("/work/shared/datasets/frappe")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="frappe")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--data_dir", default="/tmp/recstudio-ctr-data")
    parser.add_argument("--shared", action="store_true", help="link the raw files from /work/shared/datasets/frappe")
    parser.add_argument("--run_dir", default="/tmp/recstudio-ctr-reference")
    args, rest = parser.parse_known_args()
    overrides = parse_overrides(rest)  # --key value, typed as on the command line
    torch.set_num_threads(1)
    if args.shared:
        raw = Path(args.data_dir) / "frappe" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in ("frappe.csv", "meta.csv", "README.txt"):
            if not (raw / name).exists():
                (raw / name).symlink_to(SHARED / name)
    import pandas as pd

    import recstudio
    run_dir = Path(args.run_dir) / f"{args.model}-{args.seed}-{int(time.time())}"
    t0 = time.perf_counter()
    model, metrics = recstudio.run(model=args.model, dataset=args.dataset, seed=args.seed, run_dir=str(run_dir),
                                   data_dir=args.data_dir, quiet=True, **overrides)
    wall = time.perf_counter() - t0
    log = pd.read_csv(Path(model.run_dir) / "logs" / "metrics.csv")
    epochs = int(log["train/loss"].notna().sum())
    valid = log.dropna(subset=["valid/auc"])["valid/auc"]
    clock = log.dropna(subset=["time/elapsed_s"])["time/elapsed_s"] if "time/elapsed_s" in log else None
    per_epoch = float(clock.values[-1]) / len(clock) if clock is not None and len(clock) else wall / max(epochs, 1)
    out = {"model": args.model, "overrides": overrides, "seed": args.seed, "epochs": epochs,
           "best_epoch": int(valid.values.argmax()) + 1 if len(valid) else None,
           "best_valid_auc": round(float(valid.max()), 4) if len(valid) else None,
           "seconds_per_epoch": round(per_epoch, 2), "wall_s": round(wall, 1),
           "test": {k: round(v, 4) for k, v in sorted(metrics.items())}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
