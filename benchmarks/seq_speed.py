"""Seconds per training epoch of SASRec and GRU4Rec on ml-1m (max length 200) with each loss, and the share
of this machine's matmul throughput that the full-softmax epoch reaches.

For each model and loss the script builds the model on ml-1m (leave-one-out by time, every rating an
interaction), times ``--steps`` optimizer steps (forward, backward, Adam) on real training batches after
``--warmup`` steps, and extrapolates to the epoch's number of batches. Losses:

* ``softmax``: full softmax, the ``[P, 3,707]`` logits of the batch's P target positions held at once;
* ``chunked_softmax``: the same loss over item blocks (bounded memory, see ``recstudio/model/loss/chunked.py``);
* ``sampled_softmax``: 256 uniform negatives shared by the batch's positions (``sampler: shared_uniform``,
  scored by one matrix product), logQ-corrected.

The logits' floating-point work of a full-softmax step is ``6 P N d`` (forward ``q V^T``, backward to the
queries and to the item table, 2 flops per multiply-add each); the epoch's total against the machine's
measured matmul throughput (a float32 ``[P, d] x [d, N]`` product of the same shapes, timed here with the
same threads) gives the fraction reported. ``--recbole`` also times RecBole 1.2.1's SASRec for one epoch on
ml-100k (max length 200, its own virtual environment) against ours on the same data, for the ratio.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/seq_speed.py                      # both models, three losses
    python benchmarks/seq_speed.py --models SASRec --losses softmax --steps 10
    python benchmarks/seq_speed.py --recbole --recbole-timeout 1200
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOSSES = {"softmax": {"loss": "softmax"}, "chunked_softmax": {"loss": "chunked_softmax"},
          "sampled_softmax": {"loss": "sampled_softmax", "sampler": "shared_uniform", "num_neg": 256}}


def matmul_gflops(rows: int, dim: int, items: int, repeat: int = 5) -> float:
    """Measured float32 throughput of ``[rows, dim] x [dim, items]`` in GFLOP/s (best of ``repeat``)."""
    import torch
    a, b = torch.randn(rows, dim), torch.randn(dim, items)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * rows * dim * items / best / 1e9


def time_steps(model_name: str, split, loss: str, steps: int, warmup: int, max_seq_len: int) -> dict:
    import torch
    from recstudio.model.base.meta import DataMeta
    from recstudio.model.registry import get_model
    from recstudio.model.family.sequential import TARGET_SEQ
    torch.manual_seed(0)
    model = get_model(model_name)(max_seq_len=max_seq_len, quiet=True, **LOSSES[loss])
    model.build(DataMeta.from_split(split))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    loader = ds.loader(int(model.config["batch_size"]), shuffle=True)
    batches, positions, seconds = 0, [], []
    for i, batch in enumerate(loader):
        if i >= warmup + steps:
            break
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model.training_loss(batch)
        out.backward()
        opt.step()
        if i >= warmup:
            seconds.append(time.perf_counter() - t)
            positions.append(int((batch[TARGET_SEQ] > 0).sum()))
        batches += 1
    per_epoch = len(loader)
    step_s = sum(seconds) / len(seconds)
    return {"model": model_name, "loss": loss, "step_s": step_s, "epoch_s": step_s * per_epoch,
            "batches": per_epoch, "positions": sum(positions) / len(positions), "dim": int(model.config["embed_dim"]),
            "items": int(model.meta.num_items)}


RECBOLE_EPOCH = r'''
import json, sys, time
import torch
from recbole.quick_start import run_recbole
import recbole.trainer.trainer as tr
spec = json.loads(sys.argv[1])
torch.set_num_threads(int(spec["threads"]))
_epoch = tr.Trainer._train_epoch
def _train_epoch(self, *a, **k):
    t = time.perf_counter()
    out = _epoch(self, *a, **k)
    print("EPOCH " + json.dumps({"seconds": time.perf_counter() - t}), flush=True)
    raise SystemExit(0)
tr.Trainer._train_epoch = _train_epoch
run_recbole(model="SASRec", config_dict={"data_path": spec["data_path"], "dataset": "ml100k",
            "MAX_ITEM_LIST_LENGTH": 200, "epochs": 1,
            "train_neg_sample_args": None, "loss_type": "CE", "show_progress": False, "state": "WARNING",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "eval_args": {"order": "TO",
            "split": {"LS": "valid_and_test"}, "group_by": "user", "mode": "full"}})
'''


def recbole_epoch(python: str, timeout: int, threads: int) -> dict:
    """RecBole's SASRec: seconds of its first training epoch on ml-100k, or a lower bound at ``timeout``."""
    from recstudio.data import load_dataset
    folder = Path(tempfile.mkdtemp(prefix="recbole-seq-speed-"))
    ds = load_dataset("ml-100k")
    users, items = ds.decode_users(ds.users), ds.decode_items(ds.items)
    times = ds.inter[ds.time_field]
    lines = ["user_id:token\titem_id:token\ttimestamp:float"] + [
        f"{u}\t{i}\t{t}" for u, i, t in zip(users, items, times)]
    (folder / "ml100k").mkdir()
    (folder / "ml100k" / "ml100k.inter").write_text("\n".join(lines) + "\n")
    spec = {"data_path": str(folder), "threads": threads}
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": str(threads)}
    try:
        out = subprocess.run([python, "-c", RECBOLE_EPOCH, json.dumps(spec)], capture_output=True, text=True,
                             timeout=timeout, env=env, cwd=str(folder)).stdout
    except subprocess.TimeoutExpired:
        return {"seconds": None, "lower_bound_s": timeout}
    line = [x for x in out.splitlines() if x.startswith("EPOCH ")]
    return json.loads(line[-1][6:]) if line else {"seconds": None, "error": out[-400:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["SASRec", "GRU4Rec"])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max_seq_len", type=int, default=200)
    parser.add_argument("--ml1m-raw", default=str(ROOT.parent / "shared" / "datasets" / "ml-1m"))
    parser.add_argument("--data_dir", default="/tmp/recstudio-seq-speed")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--recbole", action="store_true", help="also time RecBole's SASRec epoch on ml-100k")
    parser.add_argument("--recbole-python", default=os.environ.get("RECBOLE_PYTHON",
                                                                   str(ROOT / ".venv-recbole" / "bin" / "python")))
    parser.add_argument("--recbole-timeout", type=int, default=1200)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    from benchmarks.side_by_side import link_ml1m
    from recstudio.data import load_dataset
    link_ml1m(Path(args.ml1m_raw), Path(args.data_dir))
    split = load_dataset("ml-1m", data_dir=args.data_dir).split(split_mode="loo")
    rows = []
    for name in args.models:
        for loss in args.losses:
            r = time_steps(name, split, loss, args.steps, args.warmup, args.max_seq_len)
            rows.append(r)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    print(f"\nml-1m, max length {args.max_seq_len}, {args.threads} thread(s), {args.steps} timed steps per row")
    print(f"{'model':<8} {'loss':<16} {'s/step':>7} {'s/epoch':>8} {'logits TFLOP/epoch':>19} {'of matmul peak':>15}")
    for r in rows:
        flops = 6 * r["positions"] * r["items"] * r["dim"] * r["batches"]
        share = ""
        if r["loss"] != "sampled_softmax":
            peak = matmul_gflops(int(r["positions"]), r["dim"], r["items"])
            share = f"{flops / 1e9 / r['epoch_s'] / peak:.0%} of {peak:.0f} GF/s"
        tflop = f"{flops / 1e12:.2f}" if r["loss"] != "sampled_softmax" else "-"
        print(f"{r['model']:<8} {r['loss']:<16} {r['step_s']:>7.3f} {r['epoch_s']:>8.1f} {tflop:>19} {share:>15}")
    if args.recbole:
        ours = time_steps("SASRec", load_dataset("ml-100k").split(split_mode="loo"), "softmax", args.steps,
                          args.warmup, args.max_seq_len)
        theirs = recbole_epoch(args.recbole_python, args.recbole_timeout, args.threads)
        if theirs.get("seconds"):
            print(f"\nSASRec ml-100k epoch: ours {ours['epoch_s']:.1f} s, RecBole {theirs['seconds']:.1f} s "
                  f"({theirs['seconds'] / ours['epoch_s']:.0f}x)")
        else:
            print(f"\nSASRec ml-100k epoch: ours {ours['epoch_s']:.1f} s, RecBole did not finish one epoch in "
                  f"{theirs.get('lower_bound_s')} s (> {theirs.get('lower_bound_s', 0) / ours['epoch_s']:.0f}x) "
                  f"{theirs.get('error', '')}")


if __name__ == "__main__":
    main()
