"""Reference numbers of the sequential models on ml-100k, SASRec's leave-one-out protocol.

Protocol: ``split_mode: loo`` (last item = test, second-to-last = valid), all ratings implicit, ranking
against all items with the history masked, early stop on valid mrr@10 (patience 10), test metrics of the
best checkpoint, seed 2022, one thread (``OMP_NUM_THREADS=1``).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/seq_reference.py SASRec
    OMP_NUM_THREADS=1 python benchmarks/seq_reference.py BERT4Rec --epochs 150
    OMP_NUM_THREADS=1 python benchmarks/seq_reference.py GRU4Rec --loss gbce --num_neg 64
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



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--run_dir", default="/tmp/recstudio-seq-reference")
    args, rest = parser.parse_known_args()
    overrides = parse_overrides(rest)  # --key value, typed as on the command line
    torch.set_num_threads(1)
    import pandas as pd

    import recstudio
    run_dir = Path(args.run_dir) / f"{args.model}-{args.seed}-{int(time.time())}"
    t0 = time.perf_counter()
    model, metrics = recstudio.run(model=args.model, dataset=args.dataset, seed=args.seed, run_dir=str(run_dir),
                                   quiet=True, **overrides)
    wall = time.perf_counter() - t0
    log = pd.read_csv(Path(model.run_dir) / "logs" / "metrics.csv")
    epochs = int(log["train/loss"].notna().sum())
    best = log.dropna(subset=["valid/mrr@10"])["valid/mrr@10"]
    out = {"model": args.model, "overrides": overrides, "seed": args.seed, "epochs": epochs,
           "best_epoch": int(best.values.argmax()) + 1 if len(best) else None,
           "seconds_per_epoch": round(wall / max(epochs, 1), 2), "wall_s": round(wall, 1),
           "test": {k: round(v, 4) for k, v in sorted(metrics.items())}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
