"""Reference runs of the social family on lastfm-2k (friends network): BPR (no social), SocialMF, DiffNet.

Protocol: all plays implicit, per-user random 8:1:1 split (seed 2022), full ranking, early stop on valid
mrr@10 (patience 10), test metrics of the best checkpoint. One thread (OMP_NUM_THREADS=1).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/social_reference.py --raw /work/shared/datasets/hetrec2011-lastfm-2k \\
        --models BPR SocialMF DiffNet --epochs 150 [--set SocialMF.social_weight=0.5]

Prints one JSON line per run (test metrics, epochs, best epoch, mean train-epoch seconds).

Side by side with RecBole-GNN (its own environment: RecBole 1.2.1 per ../shared/REFERENCE_RESULTS.md, plus
``torch-geometric`` and a RecBole-GNN checkout on ``PYTHONPATH``; DiffNet never calls ``torch_sparse``, so a
stub module named ``torch_sparse`` with a ``matmul`` function is enough when its wheel is unavailable), on the
atomic files this script converted (``<data-dir>/lastfm-2k/atomic``, linked as ``<rb-data>/lastfm-2k/``)::

    cd <scratch> && <recbole-venv>/bin/python <repo>/benchmarks/social_reference.py --recbole DiffNet \\
        --rb-data <rb-data>          # RecBole writes log/ and log_tensorboard/ into the working folder

with the same protocol (RS 8:1:1 per user, full ranking, MRR@10 patience 10, seed 2022, embedding 64, batch
2048, lr 1e-3, one uniform negative, undirected network filtered by the interactions).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

LASTFM_FILES = ("user_artists.dat", "artists.dat", "user_friends.dat")


def run_recbole(model: str, data_path: Path, epochs: int, seed: int) -> None:
    """RecBole-GNN's ``model`` (or a RecBole general model such as BPR) on ``data_path/lastfm-2k``."""
    from recbole_gnn.quick_start import run_recbole_gnn
    cfg = {
        "data_path": str(data_path), "seed": seed, "reproducibility": True,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "NET_SOURCE_ID_FIELD": "source_id",
        "NET_TARGET_ID_FIELD": "target_id",
        "load_col": {"inter": ["user_id", "item_id"], "net": ["source_id", "target_id"]},
        "filter_net_by_inter": True, "undirected_net": True,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10], "valid_metric": "MRR@10",
        "stopping_step": 10, "epochs": epochs, "train_batch_size": 2048, "eval_batch_size": 409600,
        "learning_rate": 0.001, "embedding_size": 64, "show_progress": False,
        "checkpoint_dir": tempfile.mkdtemp(prefix="recbole-saved-"),
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    }
    start = time.perf_counter()
    res = run_recbole_gnn(model=model, dataset="lastfm-2k", config_dict=cfg)
    print(json.dumps({"model": f"RecBole-GNN {model}", "seed": seed,
                      "test": {k: round(float(v), 4) for k, v in res["test_result"].items()},
                      "wall_seconds": round(time.perf_counter() - start, 1)}), flush=True)


def lastfm_split(raw: Path, data_dir: Path):
    from recstudio.data import load_dataset
    folder = data_dir / "lastfm-2k" / "raw" / "hetrec2011-lastfm-2k"
    folder.mkdir(parents=True, exist_ok=True)
    for name in LASTFM_FILES:
        if not (folder / name).exists():
            (folder / name).symlink_to(raw / name)
    return load_dataset("lastfm-2k", data_dir=str(data_dir)).split()



def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=Path("/work/shared/datasets/hetrec2011-lastfm-2k"))
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=["BPR", "SocialMF", "DiffNet"])
    ap.add_argument("--epochs", type=int, default=150, help="epoch cap (early stopping usually ends sooner)")
    ap.add_argument("--seed", type=int, default=2022,
                    help="seed of the model (initialisation, negatives); the split stays the dataset default (2022)")
    ap.add_argument("--set", nargs="*", default=[], help="Model.key=value overrides")
    ap.add_argument("--recbole", default=None, help="run this RecBole-GNN model instead (RecBole's environment)")
    ap.add_argument("--rb-data", type=Path, default=None, help="RecBole data_path holding lastfm-2k/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.recbole:
        return run_recbole(args.recbole, args.rb_data, args.epochs, args.seed)
    import recstudio
    from recstudio.train.trainer import fit_model
    from recstudio.utils.cli import parse_value
    from kg_reference import EpochTimer  # the same per-epoch training clock (validation excluded)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="social-ref-"))
    split = lastfm_split(args.raw, data_dir)
    overrides = {}
    for item in args.set:
        target, _, value = item.partition("=")
        model, _, key = target.partition(".")
        overrides.setdefault(model, {})[key] = parse_value(value)
    runs = data_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        cls = recstudio.get_model(name)
        model = cls(epochs=args.epochs, seed=args.seed, quiet=True, **overrides.get(name, {}))
        timer = EpochTimer()
        start = time.perf_counter()
        run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-s{args.seed}-", dir=runs))  # a fresh folder per run
        metrics = fit_model(model, split, run_dir=run_dir, callbacks=[timer])
        best = model.trainer.recstudio_checkpoint.best_model_path
        print(json.dumps({"model": name, "overrides": overrides.get(name, {}), "seed": args.seed,
                          "test": {k: round(v, 4) for k, v in metrics.items()},
                          "best_valid": round(float(model.trainer.recstudio_checkpoint.best_model_score), 4),
                          "epochs": model.trainer.current_epoch, "best_checkpoint": Path(best).name if best else None,
                          "epoch_seconds": round(sum(timer.seconds) / max(len(timer.seconds), 1), 2),
                          "wall_seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
