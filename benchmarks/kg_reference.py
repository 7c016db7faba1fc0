"""Reference runs of the knowledge-aware family on ml-100k-kg: BPR (no KG), CKE, KGAT.

Protocol (ml-100k's default): all 100,000 ratings implicit, per-user random 8:1:1 split (seed 2022), full
ranking, early stop on valid mrr@10 (patience 10), test metrics of the best checkpoint. One thread
(OMP_NUM_THREADS=1). The KG files are RecBole's ml-100k.kg / ml-100k.link (the shared copy by default; the
ml-100k files come from the repository's datasets/ml-100k), verified against the registry's sha256.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/kg_reference.py --models CKE KGAT --epochs 300 [--set KGAT.layers=[64]]

Prints one JSON line per run (test metrics, epochs, best checkpoint, mean train-epoch seconds).
"""
import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from pytorch_lightning import Callback

import recstudio
from recstudio.data import load_dataset
from recstudio.train.trainer import fit_model
from recstudio.utils.cli import parse_value

ROOT = Path(__file__).resolve().parents[1]
ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info", "README")
KG_FILES = ("ml-100k.kg", "ml-100k.link")


class EpochTimer(Callback):
    """Seconds of each training epoch (the evaluation excluded)."""

    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, module):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx + 1 == trainer.num_training_batches:
            self.seconds.append(time.perf_counter() - self._t)


def ml100k_kg_dataset(kg_dir: Path, ml100k_dir: Path, data_dir: Path):
    """ml-100k-kg prepared from local copies (put in raw/ by hand: verified against the registry's sha256)."""
    raw = data_dir / "ml-100k-kg" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for folder, names in ((ml100k_dir, ML100K_FILES), (kg_dir, KG_FILES)):
        for name in names:
            if not (raw / name).exists():
                shutil.copyfile(folder / name, raw / name)
    return load_dataset("ml-100k-kg", data_dir=str(data_dir))



def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kg-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-100k-kg")
    ap.add_argument("--ml100k-dir", type=Path, default=ROOT / "datasets" / "ml-100k")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=["CKE", "KGAT"])
    ap.add_argument("--epochs", type=int, default=300, help="epoch cap (early stopping usually ends sooner)")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--set", nargs="*", default=[], help="Model.key=value overrides")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kg-ref-"))
    split = ml100k_kg_dataset(args.kg_dir, args.ml100k_dir, data_dir).split()
    overrides = {}
    for item in args.set:
        target, _, value = item.partition("=")
        model, _, key = target.partition(".")
        overrides.setdefault(model, {})[key] = parse_value(value)
    for name in args.models:
        cls = recstudio.get_model(name)
        model = cls(epochs=args.epochs, seed=args.seed, quiet=True, **overrides.get(name, {}))
        timer = EpochTimer()
        start = time.perf_counter()
        run_dir = data_dir / "runs" / name
        shutil.rmtree(run_dir, ignore_errors=True)  # a reused --data-dir: no stale checkpoints / logs
        metrics = fit_model(model, split, run_dir=run_dir, callbacks=[timer])
        best = model.trainer.recstudio_checkpoint.best_model_path
        print(json.dumps({"model": name, "overrides": overrides.get(name, {}), "seed": args.seed,
                          "test": {k: round(v, 4) for k, v in metrics.items()},
                          "epochs": model.trainer.current_epoch, "best_checkpoint": Path(best).name if best else None,
                          "epoch_seconds": round(sum(timer.seconds) / max(len(timer.seconds), 1), 2),
                          "wall_seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
