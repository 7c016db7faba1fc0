"""NGCF (ml-100k) and CKE (ml-100k-kg) side by side with RecBole 1.2.1 on the same split files.

Both comparisons reuse :mod:`benchmarks.bpr_parity`: RecStudio splits the data (per-user random 8:1:1, seeded),
the three phases are written as RecBole benchmark files (``ml-100k.{train,valid,test}.inter``) and both
libraries train on exactly those rows with RecBole's model defaults and protocol (Adam 1e-3, batch 2048, one
uniform negative, early stop after 10 validations without improvement of valid MRR@10, test of the best
checkpoint, full ranking with history masked).

* ``ngcf``: ml-100k (all 100,000 ratings); ours runs with RecBole's NGCF defaults (embedding 64, hidden
  [64, 64, 64], node_dropout 0.0, message_dropout 0.1, reg_weight 1e-5).
* ``cke``: ml-100k-kg restricted to the interactions of the 1,598 movies that have a KG entity (.link): RecBole
  1.2.1 drops unlinked items and their ratings, so the rows are removed BEFORE splitting and both libraries
  get the same rows (the script prints RecBole's phase sizes next to ours to check that it keeps them all),
  plus RecBole's ml-100k.kg / ml-100k.link (the shared copy by default). Ours runs with RecBole's CKE
  defaults (embedding 64, kg embedding 64, reg_weights [1e-2, 1e-2]), which are our cke.yaml defaults.

Prints per seed and library the test metrics, epochs, wall seconds and seconds per epoch (validation and, for
RecBole, its data pipeline included), then the means. One thread each (run with OMP_NUM_THREADS=1).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ngcf_cke_parity.py ngcf --seeds 2022 2023 \\
        --recbole-python /tmp/venv-recbole/bin/python [--only ours|recbole]
    OMP_NUM_THREADS=1 python benchmarks/ngcf_cke_parity.py cke --seeds 2022 --recbole-python ...
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bpr_parity import METRICS, RECBOLE_SCRIPT, summary, write_benchmark_files  # noqa: E402
from benchmarks.kg_reference import EpochTimer, ml100k_kg_dataset  # noqa: E402

KG_FILES = ("ml-100k.kg", "ml-100k.link")
RB_DATASET = "ml100k-split"

#: bpr_parity's RecBole job with the model, extra config keys and tables as arguments, reporting the rows
#: RecBole kept per phase and its epoch count
_CALL = 'result = run_recbole(model="BPR", config_dict=config)'
assert _CALL in RECBOLE_SCRIPT
RECBOLE_JOB = RECBOLE_SCRIPT.replace(_CALL, r'''
config.update(json.loads(sys.argv[4]))
import recbole.quick_start.quick_start as qs
import recbole.trainer.trainer as tr
_prep, _epoch, info = qs.data_preparation, tr.Trainer._train_epoch, {"epochs": 0}
def _data_preparation(cfg, dataset):
    out = _prep(cfg, dataset)
    info["rows"] = [int(getattr(d, "general_dataloader", d).dataset.inter_num) for d in out]
    info["items"] = int(dataset.item_num) - 1
    return out
def _train_epoch(self, *a, **k):
    info["epochs"] += 1
    return _epoch(self, *a, **k)
qs.data_preparation, tr.Trainer._train_epoch = _data_preparation, _train_epoch
result = run_recbole(model=sys.argv[3], config_dict=config)
print("INFO " + json.dumps(info))''')

RECBOLE_CONFIG = {
    "NGCF": {"dataset": RB_DATASET, "embedding_size": 64, "hidden_size_list": [64, 64, 64], "node_dropout": 0.0, "message_dropout": 0.1,
             "reg_weight": 1e-5},
    "CKE": {"dataset": RB_DATASET, "embedding_size": 64, "kg_embedding_size": 64, "reg_weights": [1e-2, 1e-2],
            "load_col": {"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
                         "link": ["item_id", "entity_id"]}},
}
#: our keys set to RecBole's defaults for the comparison
OURS_CONFIG = {
    "NGCF": {"embed_dim": 64, "hidden_dims": [64, 64, 64], "node_dropout": 0.0, "message_dropout": 0.1,
             "reg_weight": 1e-5},
    "CKE": {"embed_dim": 64, "kg_embed_dim": 64, "reg_weight": 1e-2, "kg_reg_weight": 1e-2},
}


def ours(model: str, split, seed: int, run_dir: Path):
    import recstudio
    from recstudio.train.trainer import fit_model
    t = time.perf_counter()
    net = recstudio.get_model(model)(seed=seed, quiet=True, epochs=300, **OURS_CONFIG[model])
    timer = EpochTimer()
    metrics = fit_model(net, split, run_dir=run_dir, callbacks=[timer])
    wall = time.perf_counter() - t
    epochs = net.trainer.current_epoch
    return {"test": {k: metrics[k] for k in METRICS}, "seconds": wall, "epochs": epochs,
            "epoch_seconds": wall / max(epochs, 1), "train_epoch_seconds": sum(timer.seconds) / max(len(timer.seconds), 1),
            "rows": [len(split.train), len(split.valid), len(split.test)]}


def recbole(python: str, model: str, data_path: Path, seed: int):
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    out = subprocess.run([python, "-c", RECBOLE_JOB, str(data_path), str(seed), model,
                          json.dumps(RECBOLE_CONFIG[model])], capture_output=True, text=True, env=env,
                         cwd=str(data_path))
    res = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    info = [x for x in out.stdout.splitlines() if x.startswith("INFO ")]
    if out.returncode != 0 or not res:
        raise SystemExit(f"RecBole {model} failed (seed {seed}):\n{out.stderr[-3000:]}")
    res, info = json.loads(res[0][len("RESULT "):]), json.loads(info[0][len("INFO "):])
    return {"test": {k: res["test"][k] for k in METRICS}, "seconds": res["seconds"], "epochs": info["epochs"],
            "epoch_seconds": res["seconds"] / max(info["epochs"], 1), "rows": info["rows"], "items": info["items"]}


def linked_kg_dataset(kg_dir: Path, work: Path):
    """ml-100k-kg without the interactions of items that have no entity in the .link file, as a dataset of
    its own (atomic files: the kept rows in the original order, plus the .kg / .link)."""
    from recstudio.data import from_atomic
    full = ml100k_kg_dataset(kg_dir, ROOT / "datasets" / "ml-100k", work / "data")
    linked = {line.split("\t")[0] for line in (kg_dir / "ml-100k.link").read_text().splitlines()[1:] if line}
    users, items = full.decode_users(full.users), full.decode_items(full.items)
    keep = [(u, i) for u, i in zip(users, items) if str(i) in linked]
    folder = work / "ml-100k-kg-linked"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k-kg-linked.inter").write_text(
        "\n".join(["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in keep]) + "\n")
    for name in KG_FILES:
        shutil.copyfile(kg_dir / name, folder / name.replace("ml-100k", "ml-100k-kg-linked"))
    ds = from_atomic(folder, rating_field=None, time_field=None, rating_threshold=None)
    print(f"ml-100k-kg linked items only: {ds.num_interactions} of {full.num_interactions} interactions, "
          f"{ds.num_items - 1} of {full.num_items - 1} items, {ds.num_users - 1} users", flush=True)
    return ds


def fmt(r) -> str:
    return (json.dumps({k: round(v, 4) for k, v in r["test"].items()}) +
            f" {r['epochs']} epochs, {r['seconds']:.0f} s ({r['epoch_seconds']:.1f} s/epoch), rows {r['rows']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["ngcf", "cke"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2022, 2023])
    parser.add_argument("--recbole-python", default=str(ROOT / ".venv-recbole" / "bin" / "python"))
    parser.add_argument("--kg-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-100k-kg")
    parser.add_argument("--only", choices=["ours", "recbole"], default=None, help="run one library only")
    args = parser.parse_args(argv)
    if args.only != "ours" and not Path(args.recbole_python).exists():
        raise SystemExit(f"no RecBole interpreter at {args.recbole_python} (see benchmarks/bpr_parity.py).")
    import torch
    torch.set_num_threads(1)
    model = args.task.upper()
    mine, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if model == "NGCF":
            from recstudio.data import load_dataset
            ds = load_dataset("ml-100k")
        else:
            ds = linked_kg_dataset(args.kg_dir, tmp)
        for seed in args.seeds:
            split = ds.split(seed=seed)
            data_path = tmp / f"seed{seed}"
            write_benchmark_files(split, data_path / "ml-100k")
            # RecBole 1.2.1 reads a dataset named "ml-100k" from its bundled example folder whatever data_path
            # says, so the files go under another name
            folder = data_path / RB_DATASET
            (data_path / "ml-100k").rename(folder)
            for phase in ("train", "valid", "test"):
                (folder / f"ml-100k.{phase}.inter").rename(folder / f"{RB_DATASET}.{phase}.inter")
            if model == "CKE":
                for name in KG_FILES:
                    shutil.copyfile(args.kg_dir / name, folder / name.replace("ml-100k", RB_DATASET))
            if args.only != "recbole":
                mine.append(ours(model, split, seed, tmp / f"runs{seed}"))
                print(f"seed {seed} RecStudio {model}: {fmt(mine[-1])}", flush=True)
            if args.only != "ours":
                theirs.append(recbole(args.recbole_python, model, data_path, seed))
                print(f"seed {seed} RecBole {model}: {fmt(theirs[-1])}, items {theirs[-1]['items']}", flush=True)
    for name, runs in (("RecStudio", mine), ("RecBole", theirs)):
        if runs:
            summary(f"{name} {model}", [(r["test"], r["seconds"]) for r in runs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
