"""SampledAE: mini-batch negative sampling (sparse output layer) against the full output layer, on ml-1m.

Both runs train the same model (``recstudio/model/zoo/general/sampledae.py``, its YAML defaults) to early stop
on valid mrr@10 (patience 10) on ml-1m with ratings >= 3 (836,478 interactions, per-user random 8:1:1, the
card protocol of ``benchmarks/side_by_side.py``), and differ only in the output layer:

* ``sampled``: ``sampled_output: true``, ``optimizer: sparse_dense_adam`` -- each batch scores only the items
  of its users (or of ``--num-sampling-users`` of them), the input and output tables are
  ``nn.Embedding(sparse=True)`` updated by SparseAdam, the rest by Adam;
* ``full``: ``sampled_output: false``, ``optimizer: adam`` -- every item is scored, every table dense.

It prints the mean training seconds per epoch of each (evaluation excluded), the speed-up
``full / sampled``, the share of the items a sampled batch scores, and the test ndcg@10 / recall@10 of both.
The GroupLens files are linked (not copied) into a scratch data folder from ``--ml1m-raw`` (default
``../shared/datasets/ml-1m``; see docs/datasets.md).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sampled_autoencoder.py
    OMP_NUM_THREADS=1 python benchmarks/sampled_autoencoder.py --batch-size 128 --num-sampling-users 32
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(split, overrides: dict, seed: int, run_dir: str):
    from pytorch_lightning.callbacks import Callback

    import recstudio
    from recstudio.train.trainer import fit_model

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds = []

        def on_train_epoch_start(self, trainer, module):
            self._t = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self._t)

    model = recstudio.get_model("SampledAE")(seed=seed, quiet=True, **overrides)
    timer = EpochTimer()
    metrics = fit_model(model, split, run_dir=run_dir, callbacks=[timer])
    return model, metrics, timer.seconds


def scored_share(model, split, batch_size: int) -> float:
    """Mean share of the items a training batch of the trained model scores."""
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    sizes = [model.output_size(b) for b in ds.loader(batch_size, shuffle=True)]
    return sum(t for t, _ in sizes) / sum(n for _, n in sizes)


def main(argv=None) -> int:
    from benchmarks.side_by_side import DATASETS, link_ml1m
    from recstudio.data import load_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ml1m-raw", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-1m")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--batch-size", type=int, default=None, help="users per batch (default: the YAML's)")
    p.add_argument("--num-sampling-users", type=int, default=0, help="score the items of this many users (0: all)")
    p.add_argument("--epochs", type=int, default=None, help="cap on the epochs of each run (default: the YAML's)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="sampledae-bench-"))
    link_ml1m(args.ml1m_raw, work)
    split = load_dataset("ml-1m", data_dir=str(work), **DATASETS["ml-1m"]["keys"]).split(seed=args.seed)
    common = {"num_sampling_users": args.num_sampling_users}
    if args.batch_size:
        common["batch_size"] = args.batch_size
    if args.epochs:
        common["epochs"] = args.epochs
    variants = {"sampled": {"sampled_output": True, "optimizer": "sparse_dense_adam"},
                "full": {"sampled_output": False, "optimizer": "adam"}}
    out = {}
    for name, keys in variants.items():
        t = time.perf_counter()
        model, metrics, secs = run(split, {**common, **keys}, args.seed, str(work / "runs" / name))
        share = scored_share(model, split, model.config["batch_size"])
        out[name] = {"epoch_s": sum(secs) / len(secs), "epochs": len(secs), "share": share,
                     "ndcg@10": float(metrics["ndcg@10"]), "recall@10": float(metrics["recall@10"]),
                     "wall_s": time.perf_counter() - t}
        r = out[name]
        print(f"{name:8s} {r['epoch_s']:.2f} s/epoch (training only) over {r['epochs']} epochs, scores "
              f"{100 * r['share']:.1f}% of the items per batch; test ndcg@10 {r['ndcg@10']:.4f} "
              f"recall@10 {r['recall@10']:.4f}; {r['wall_s']:.0f} s wall", flush=True)
    print(f"speed-up per epoch (full / sampled): {out['full']['epoch_s'] / out['sampled']['epoch_s']:.2f}x; "
          f"ndcg@10 sampled / full: {out['sampled']['ndcg@10'] / out['full']['ndcg@10']:.3f} "
          f"(ml-1m ratings >= 3, batch {model.config['batch_size']} users, num_sampling_users "
          f"{args.num_sampling_users}, seed {args.seed}, {args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
