"""LightGCN and BPR on MovieLens-1M with RecBole-GNN's protocol, against its published numbers.

Protocol (RecBole-GNN's README table): ratings >= 3 kept as implicit interactions (no k-core), per-user
random 8:1:1 split, full ranking with the history masked, embedding 64, early stopping on valid mrr@10
(patience 10), test metrics of the best validation checkpoint. Published: BPR recall@10 0.178 /
ndcg@10 0.240, LightGCN 0.186 / 0.254 (see ../shared/REFERENCE_RESULTS.md).

The ml-1m files come from ``--raw`` (default: the shared extracted GroupLens originals), linked into
``<data_dir>/ml-1m/raw/`` (outside the repository) and verified by their sha256 on first use.

On the shared 2-core CPU one LightGCN epoch on ml-1m (validation included) took 96 s and early stopping
comes after a hundred epochs or more, so a full run takes hours: run it on a free machine, or with
``--epochs`` for a partial check (then the numbers are not comparable with the published ones).

The published numbers are not RecBole's model defaults: RecBole-GNN's results/general/ml-1m.md trains with
batch 4096 (up to 500 epochs) and tuned LightGCN over lr {5e-3, 2e-3, 1e-3} x n_layers {2, 3} x reg_weight
{1e-4, 1e-5}: best lr 2e-3, 3 layers, reg 1e-4 (RecBole's unsquared EmbLoss; our squared / 2 / B penalty at
1e-5 is the nearer strength). ``--set learning_rate=0.002 n_layers=3 batch_size=4096`` runs that setting.

Usage:
    python benchmarks/graph_reference.py                          # both models, to early stop
    python benchmarks/graph_reference.py --models LightGCN --epochs 20 --data_dir /tmp/rs-data
    python benchmarks/graph_reference.py --models LightGCN --set learning_rate=0.005 n_layers=3
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLISHED = {"BPR": {"recall@10": 0.178, "ndcg@10": 0.240}, "LightGCN": {"recall@10": 0.186, "ndcg@10": 0.254}}
PROTOCOL = {"rating_threshold": 3, "binarize": True, "split_mode": "user_entry", "split_ratio": [0.8, 0.1, 0.1],
            "split_order": "random", "early_stop_metric": "mrr@10", "early_stop_patience": 10, "embed_dim": 64}
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat", "README")


def link_raw(raw: Path, data_dir: Path) -> None:
    """Link the extracted ml-1m originals into ``<data_dir>/ml-1m/raw/`` (once)."""
    dest = data_dir / "ml-1m" / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    if not (raw / "ratings.dat").is_file():
        raise SystemExit(f"no ratings.dat in {raw}; pass --raw <folder with the ml-1m files>.")
    for name in ML1M_FILES:
        if (raw / name).is_file() and not (dest / name).exists():
            (dest / name).symlink_to((raw / name).resolve())


def run_one(name: str, data_dir: Path, epochs, seed: int, extra=None) -> dict:
    import torch
    import recstudio
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    extra = dict(extra or {})
    tag = "".join(f"-{k}{v}" for k, v in sorted(extra.items()))
    overrides = dict(PROTOCOL, data_dir=str(data_dir), seed=seed, quiet=True,
                     run_dir=str(data_dir / "runs" / f"{name}-{seed}{tag}"), **extra)
    if epochs is not None:
        overrides["epochs"] = epochs
    start = time.perf_counter()
    model, metrics = recstudio.run(model=name, dataset="ml-1m", **overrides)
    wall = time.perf_counter() - start
    import pandas as pd
    table = pd.read_csv(Path(model.run_dir) / "metrics.csv")  # one row per epoch, wall_time_s since training began
    epochs_run = len(table)
    train_s = float(table["wall_time_s"].dropna().iloc[-1]) if "wall_time_s" in table else None
    return {"model": name, "seed": seed, "overrides": extra,
            "test": {k: round(metrics[k], 4) for k in ("ndcg@10", "recall@10", "mrr@10") if k in metrics},
            "published": PUBLISHED[name], "wall_s": round(wall, 1), "epochs": epochs_run,
            "epoch_seconds": round(train_s / epochs_run, 2) if train_s and epochs_run else None}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["BPR", "LightGCN"], choices=sorted(PUBLISHED))
    p.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-1m")
    p.add_argument("--data_dir", type=Path, default=Path(os.environ.get("RECSTUDIO_DATA_DIR",
                                                                         Path.home() / ".cache" / "recstudio")))
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: the model's, to early stop)")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every model, e.g. learning_rate=0.005 n_layers=3")
    args = p.parse_args(argv)
    from recstudio.utils.cli import parse_value
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        extra[key] = parse_value(value)
    link_raw(args.raw, args.data_dir)
    for name in args.models:
        result = run_one(name, args.data_dir, args.epochs, args.seed, extra)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
