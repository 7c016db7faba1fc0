"""Any model side by side with RecBole 1.2.1 on identical split files: the measurement behind a zoo card.

For each seed, RecStudio splits the card dataset with its protocol, the three phases are written as RecBole
benchmark files (``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter``, original ids), and both
libraries train on exactly those rows: ours with the model's YAML defaults plus ``--ours`` overrides, RecBole
with its own defaults plus ``--recbole`` overrides, both with the shared protocol (full ranking with the
history masked, early stop after 10 validations without improvement of valid MRR@10, test metrics of the
best validation checkpoint). Each run is its own process (one thread unless ``OMP_NUM_THREADS`` says
otherwise), so wall time and peak memory (max RSS) are per run; wall time includes imports and the data
pipeline for both libraries.

Card datasets (``--dataset``):

* ``ml-100k``: all 100,000 ratings implicit, per-user random 8:1:1 (the default protocol; bundled data).
* ``ml-1m``: ratings >= 3 implicit (836,478 interactions), per-user random 8:1:1 (RecBole-GNN's protocol);
  the extracted GroupLens files from ``--ml1m-raw`` (default ``../shared/datasets/ml-1m``) are linked into a
  scratch data folder, never copied into the repository.
* ``ml-100k-seq`` / ``amazon-mi-seq`` / ``ml-1m-seq`` (the sequential models): all ratings implicit,
  leave-one-out by time (equal timestamps in file order), max length 50 / 50 / 200; Amazon Musical
  Instruments 5-core is read from ``--shared-datasets``. RecBole trains on batches of 256 prefixes (its
  default 2,048 leaves 5 optimizer steps per epoch on Amazon: its SASRec had not early-stopped after 30
  minutes there). RecBole reads one atomic file written in our order
  (``timestamp`` = row position) with its ``LS`` split, ``TO`` order and CE loss, the user's earlier items
  masked from its ranking as in ours (``benchmarks/recbole_seq_reference.py``). On ml-1m a published number
  can stand as the reference of an ours-only card (``--no-recbole --published SOURCE hit@10=...``).

The result (per-seed runs, mean and spread per library, the ratio ours / RecBole of every metric, the commit)
is printed as one ``RESULT {json}`` line and saved as the card's measurement
``docs/cards/<Model>/<dataset>.json`` (``--no-save`` to skip), from which ``benchmarks/zoo.py`` renders the
cards. ``--no-recbole`` measures ours only (for models RecBole lacks: the card then names the paper's or
another library's number).

RecBole runs in its own virtual environment; its interpreter is ``--recbole-python``, else
``$RECBOLE_PYTHON``, else ``.venv-recbole/bin/python`` in the repository::

    python3 -m venv .venv-recbole
    .venv-recbole/bin/pip install torch==2.13.0
    .venv-recbole/bin/pip install recbole==1.2.1 "numpy<2" "scipy<1.13" "setuptools>=77.0.3,<81" hyperopt==0.2.5

For the graph models RecBole 1.2.1 lacks, ``--recbole-gnn FOLDER`` runs RecBole-GNN (github.com/RUCAIBox/RecBole-GNN,
the folder holding its ``recbole_gnn`` package; its commit from git or a ``COMMIT`` file there) on the same venv
with ``torch_geometric`` added (``.venv-recbole/bin/pip install torch_geometric``). torch_sparse has no wheel for
this torch: when it is missing, the job puts a stub in its place that refuses ``SparseTensor``, and RecBole-GNN
then takes its ``edge_index`` message-passing path (same results, slower)::

    OMP_NUM_THREADS=1 python benchmarks/side_by_side.py --model SimGCL --recbole-gnn ../RecBole-GNN

Usage::

    OMP_NUM_THREADS=1 python benchmarks/side_by_side.py --model ItemKNN --seeds 2022
    OMP_NUM_THREADS=1 python benchmarks/side_by_side.py --model MultiDAE --recbole-model MultiDAE \\
        --seeds 2022 2023 2024 --ours dropout=0.5 --recbole dropout_prob=0.5
    OMP_NUM_THREADS=1 python benchmarks/side_by_side.py --model LightGCN --dataset ml-1m --recbole epochs=50
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bpr_parity import METRICS, write_benchmark_files  # noqa: E402
from recstudio.utils.cli import parse_value  # noqa: E402

CARDS = ROOT / "docs" / "cards"
ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat", "README")
#: the card datasets: RecStudio's data keys, RecBole's benchmark-file name and the protocol in words
DATASETS = {
    "ml-100k": {"name": "ml-100k", "keys": {}, "recbole_name": "ml100k",
                "protocol": "all 100,000 ratings implicit, per-user random 8:1:1, full ranking with history masked, "
                            "early stop on valid mrr@10 (patience 10), test of the best checkpoint"},
    "ml-1m": {"name": "ml-1m", "keys": {"rating_threshold": 3, "binarize": True, "split_mode": "user_entry",
                                        "split_ratio": [0.8, 0.1, 0.1], "split_order": "random"},
              "recbole_name": "ml1m",
              "protocol": "ratings >= 3 implicit (836,478 interactions), per-user random 8:1:1 (RecBole-GNN), full "
                          "ranking with history masked, early stop on valid mrr@10 (patience 10)"},
    # the sequential cards: leave-one-out by time; ``ours`` are protocol keys of our side (the max length)
    "ml-100k-seq": {"name": "ml-100k", "keys": {"split_mode": "loo"}, "recbole_name": "ml100kseq", "sequential": True,
                    "ours": {"max_seq_len": 50}, "recbole": {"MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256},
                    "protocol": "all 100,000 ratings implicit, leave-one-out by time (last item test, second-to-last "
                                "valid; equal timestamps keep the file's order: a stable sort), max length 50, full "
                                "ranking over all 1,682 items with the user's earlier items masked, early stop on "
                                "valid mrr@10 (patience 10), test of the best checkpoint; RecBole trains on batches of 256 prefixes"},
    "amazon-mi-seq": {"name": "amazon-musical-instruments-5core", "keys": {"split_mode": "loo"},
                      "recbole_name": "amazonmiseq", "sequential": True,
                      "raw": ("amazon-2014-musical-instruments-5core", ("reviews_Musical_Instruments_5.json.gz",)),
                      "ours": {"max_seq_len": 50}, "recbole": {"MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256},
                      "protocol": "Amazon 2014 Musical Instruments 5-core, all 10,261 reviews implicit (1,429 users, "
                                  "900 items), leave-one-out by review day (last item test, second-to-last valid; 40% "
                                  "of a user's consecutive reviews share a day, and equal days keep the file's order: "
                                  "a stable sort), max length 50, full ranking over all items with the user's earlier "
                                  "items masked, early stop on valid mrr@10 (patience 10), test of the best checkpoint; "
                                  "RecBole trains on batches of 256 prefixes"},
    "ml-1m-seq": {"name": "ml-1m", "keys": {"split_mode": "loo"}, "recbole_name": "ml1mseq", "sequential": True,
                  "ours": {"max_seq_len": 200}, "recbole": {"MAX_ITEM_LIST_LENGTH": 200},
                  "protocol": "all 1,000,209 ratings implicit, leave-one-out by time (last item test, second-to-last "
                              "valid; equal timestamps keep ratings.dat's order: a stable sort), max length 200, full "
                              "ranking over all 3,706 items with the user's earlier items masked, early stop on valid "
                              "mrr@10, test of the best checkpoint. Petrov & Macdonald's split (SASRec's ml-1m file) "
                              "keeps the 3,416 items with 5 or more ratings"},
}
#: how a measurement's ``recbole_library`` starts when its reference side ran RecBole-GNN
GNN_LIBRARY = "RecBole-GNN"
#: the protocol keys both sides share
OURS_PROTOCOL = {"early_stop_metric": "mrr@10", "early_stop_patience": 10}
RECBOLE_PROTOCOL = {"eval_args": {"group_by": "user", "order": "RO", "mode": "full"}, "valid_metric": "MRR@10",
                    "stopping_step": 10, "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10],
                    "load_col": {"inter": ["user_id", "item_id"]}, "show_progress": False, "state": "WARNING",
                    "reproducibility": True}

OURS_JOB = r'''
import json, resource, sys, time
t0 = time.perf_counter()
import torch
from pytorch_lightning.callbacks import Callback
import recstudio
from recstudio.data import load_dataset
from recstudio.train.trainer import fit_model
spec = json.loads(sys.argv[1])
torch.set_num_threads(int(spec["threads"]))
class EpochTimer(Callback):
    def __init__(self):
        self.seconds = []
    def on_train_epoch_start(self, trainer, module):
        self._t = time.perf_counter()
    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self._t)
split = load_dataset(spec["dataset"], **spec["data_keys"]).split(seed=spec["seed"])
model = recstudio.get_model(spec["model"])(seed=spec["seed"], quiet=True, **spec["overrides"])
timer = EpochTimer()
t_fit = time.perf_counter()
metrics = fit_model(model, split, run_dir=spec["run_dir"], callbacks=[timer])
print("RESULT " + json.dumps({
    "test": {k: float(v) for k, v in metrics.items()}, "seconds": time.perf_counter() - t0,
    "fit_seconds": time.perf_counter() - t_fit,
    "epochs": len(timer.seconds), "epoch_seconds": sum(timer.seconds) / max(len(timer.seconds), 1),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "config": {k: v for k, v in model.config.items() if isinstance(v, (int, float, str, bool, list, type(None)))}}))
'''

#: patches RecBole's trainer to count its training epochs and their seconds (in ``info``), for both job scripts
RECBOLE_EPOCH_TIMER = r'''
info = {"epochs": 0, "train_seconds": 0.0}
_epoch = tr.Trainer._train_epoch
def _train_epoch(self, *a, **k):
    t = time.perf_counter()
    out = _epoch(self, *a, **k)
    info["epochs"] += 1
    info["train_seconds"] += time.perf_counter() - t
    return out
tr.Trainer._train_epoch = _train_epoch
'''

RECBOLE_JOB = r'''
import json, resource, sys, time
t0 = time.perf_counter()
import torch
spec = json.loads(sys.argv[1])
if spec.get("gnn"):
    try:
        import torch_sparse  # noqa: F401
    except ImportError:  # no wheel for this torch: a stub that refuses SparseTensor sends RecBole-GNN down its edge_index path
        import types
        stub = types.ModuleType("torch_sparse")
        def _absent(*args, **kwargs):
            raise RuntimeError("torch_sparse is not installed")
        stub.matmul = _absent
        sys.modules["torch_sparse"] = stub
    from recbole_gnn.quick_start import run_recbole_gnn as run_recbole
else:
    from recbole.quick_start import run_recbole
import recbole.trainer.trainer as tr
torch.set_num_threads(int(spec["threads"]))
''' + RECBOLE_EPOCH_TIMER + r'''
config = {"data_path": spec["data_path"], "dataset": spec["name"], "benchmark_filename": ["train", "valid", "test"],
          "seed": spec["seed"], "checkpoint_dir": spec["data_path"] + "/saved", **spec["config"]}
t_fit = time.perf_counter()
result = run_recbole(model=spec["model"], config_dict=config)
print("RESULT " + json.dumps({
    "test": {k.lower(): float(v) for k, v in result["test_result"].items()}, "seconds": time.perf_counter() - t0,
    "fit_seconds": time.perf_counter() - t_fit,
    "epochs": info["epochs"], "epoch_seconds": info["train_seconds"] / max(info["epochs"], 1),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "config": spec["config"]}))
'''

SEQ_RECBOLE_JOB = r'''
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["benchmarks"])
import recbole_seq_reference as ref  # RecBole's leave-one-out on our order, the history masked as in ours
import recbole.trainer.trainer as tr
''' + RECBOLE_EPOCH_TIMER + r'''
config = dict(spec["config"])
epochs = int(config.pop("epochs", 300))
pretrain_epochs = int(config.pop("pretrain_epochs", 100))
out = ref.run(spec["model"], Path(spec["data_path"]), epochs, pretrain_epochs, spec["seed"], config, name=spec["name"])
print("RESULT " + json.dumps({
    "test": out["test"], "seconds": time.perf_counter() - t0, "fit_seconds": out["wall_s"],
    "epochs": info["epochs"], "epoch_seconds": info["train_seconds"] / max(info["epochs"], 1),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "config": spec["config"]}))
'''


def parse_pairs(pairs) -> dict:
    """``["lr=0.01", "layers=[64,32]"]`` -> ``{"lr": 0.01, "layers": [64, 32]}`` (values parsed as YAML)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"override {pair!r} is not key=value")
        out[key] = parse_value(value)
    return out


def run_job(python: str, script: str, spec: dict, cwd: Path, env_extra=None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([python, "-c", script, json.dumps(spec)], capture_output=True, text=True, env=env,
                         cwd=str(cwd))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise RuntimeError(f"{spec['model']} failed (seed {spec['seed']}, exit {out.returncode}):\n"
                           f"{out.stderr[-4000:]}")
    res = json.loads(line[-1][len("RESULT "):])
    res["test"] = {k: v for k, v in res["test"].items() if k in METRICS or "@" in k}
    return res


def aggregate(runs) -> dict:
    keys = sorted(set.intersection(*(set(r["test"]) for r in runs))) if runs else []
    mean = {k: statistics.mean(r["test"][k] for r in runs) for k in keys}
    spread = {k: statistics.pstdev([r["test"][k] for r in runs]) for k in keys}
    return {"runs": runs, "mean": mean, "spread": spread,
            "seconds": statistics.mean(r["seconds"] for r in runs),
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs),
            "epochs": statistics.mean(r["epochs"] for r in runs),
            "fit_seconds": statistics.mean(r.get("fit_seconds", r["seconds"]) for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs)}


def link_raw(raw: Path, data_dir: Path, name: str, files, required: str, hint: str) -> None:
    """Symlink the original files of dataset ``name`` from ``raw`` into ``<data_dir>/<name>/raw`` (never copied
    into the repository), where the registry verifies them against their published checksums."""
    dest = data_dir / name / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    if not (raw / required).is_file():
        raise SystemExit(f"no {required} in {raw}; {hint}")
    for file in files:
        if (raw / file).is_file() and not (dest / file).exists():
            (dest / file).symlink_to((raw / file).resolve())


def link_ml1m(raw: Path, data_dir: Path) -> None:
    link_raw(raw, data_dir, "ml-1m", ML1M_FILES, "ratings.dat",
             "pass --ml1m-raw <folder with the extracted ml-1m files>.")


def reusable_reference(path: Path, model: str, library: str, seeds, overrides: dict):
    """The per-seed reference runs of the measurement saved at ``path`` when it ran ``model`` of ``library``
    with exactly these ``seeds`` and ``overrides``; else None."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if ("recbole" not in saved or saved.get("recbole_model") != model or saved.get("seeds") != list(seeds)
            or saved.get("recbole_library", "RecBole 1.2.1") != library or saved.get("recbole_overrides", {}) != overrides):
        return None
    return saved["recbole"]["runs"]


def gnn_version(folder: Path) -> str:
    """The RecBole-GNN checkout's commit (``git rev-parse``, else a ``COMMIT`` file in the folder), else 'checkout'."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, cwd=str(folder))
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == folder.resolve():
        return commit(folder)
    stamp = folder / "COMMIT"
    return stamp.read_text().strip()[:7] if stamp.is_file() else "checkout"


def commit(folder: Path = ROOT) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=str(folder))
    return out.stdout.strip() or "unknown"


def fmt(res: dict) -> str:
    return (", ".join(f"{k} {v:.4f}" for k, v in res["test"].items() if k in ("ndcg@10", "recall@10", "mrr@10"))
            + f" | {res['epochs']} epochs, {res['epoch_seconds']:.2f} s/epoch, {res['seconds']:.0f} s, "
              f"{res['peak_mb']:.0f} MB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="our registered model name")
    p.add_argument("--recbole-model", default=None, help="RecBole's name of the model (default: ours)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="ml-100k")
    p.add_argument("--seeds", type=int, nargs="+", default=[2022])
    p.add_argument("--ours", nargs="*", default=[], metavar="KEY=VALUE", help="our config overrides")
    p.add_argument("--recbole", nargs="*", default=[], metavar="KEY=VALUE", help="RecBole config overrides")
    p.add_argument("--no-recbole", action="store_true", help="ours only (RecBole lacks the model)")
    p.add_argument("--recbole-gnn", type=Path, default=None, metavar="FOLDER",
                   help="run the reference side with RecBole-GNN (the folder holding its recbole_gnn package) on "
                        "the RecBole venv (with torch_geometric installed): for the models RecBole 1.2.1 lacks and "
                        "RecBole-GNN has (SimGCL, XSimGCL, LightGCL, DirectAU, HMLET)")
    p.add_argument("--recbole-python", default=os.environ.get("RECBOLE_PYTHON",
                                                              str(ROOT / ".venv-recbole" / "bin" / "python")))
    p.add_argument("--ml1m-raw", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-1m")
    p.add_argument("--shared-datasets", type=Path, default=ROOT.parent / "shared" / "datasets",
                   help="the folder of the shared dataset copies (amazon-mi-seq reads its original file there)")
    p.add_argument("--data-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--no-save", action="store_true", help="do not write docs/cards/<Model>/<dataset>.json")
    p.add_argument("--reuse-reference", action="store_true",
                   help="take the reference side from the saved measurement when it ran the same reference model, "
                        "library, seeds and overrides (re-measure ours only, e.g. at other settings)")
    p.add_argument("--note", default=None, help="a note stored with the measurement (why a setting differs)")
    p.add_argument("--published", nargs="+", default=None, metavar=("SOURCE", "METRIC=VALUE"),
                   help="a published reference for the card instead of a RecBole run (with --no-recbole), e.g. "
                        "--published 'RecTools, Petrov & Macdonald split' hit@10=0.3058 ndcg@10=0.1779")
    args = p.parse_args(argv)
    if not args.no_recbole and not Path(args.recbole_python).exists():
        raise SystemExit(f"no RecBole interpreter at {args.recbole_python}: create the venv (recipe in "
                         "../shared/REFERENCE_RESULTS.md), pass --recbole-python or set RECBOLE_PYTHON, "
                         "or measure ours only with --no-recbole.")
    import recstudio
    from recstudio.data import load_dataset
    model_name = recstudio.get_model(args.model).model_name  # the registered spelling
    gnn = args.recbole_gnn
    if gnn is not None and not (gnn / "recbole_gnn" / "quick_start.py").is_file():
        raise SystemExit(f"no recbole_gnn package in {gnn}: pass the folder of a RecBole-GNN checkout "
                         "(github.com/RUCAIBox/RecBole-GNN) that holds recbole_gnn/.")
    library = "RecBole 1.2.1" if gnn is None else f"{GNN_LIBRARY} {gnn_version(gnn)} on RecBole 1.2.1"
    card = DATASETS[args.dataset]
    ours_overrides = {**OURS_PROTOCOL, "epochs": 300, **card.get("ours", {}), **parse_pairs(args.ours)}
    if card.get("sequential"):  # recbole_seq_reference.run holds the protocol (LS split, TO order, CE, masking)
        recbole_config = {"epochs": 300, **card.get("recbole", {}), **parse_pairs(args.recbole)}
    else:
        recbole_config = {**RECBOLE_PROTOCOL, "epochs": 300, **parse_pairs(args.recbole)}
    if card.get("sequential") and gnn is not None:
        raise SystemExit("--recbole-gnn runs the general graph models; the sequential card datasets use RecBole 1.2.1.")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="side-by-side-"))
    data_keys = dict(card["keys"])
    if card["name"] == "ml-1m":
        link_ml1m(args.ml1m_raw, work)
        data_keys["data_dir"] = str(work)
    elif "raw" in card:  # a copy in ../shared/datasets/<folder>
        folder, files = card["raw"]
        link_raw(args.shared_datasets / folder, work, card["name"], files, files[0],
                 "pass --shared-datasets <folder holding it>.")
        data_keys["data_dir"] = str(work)
    ds = load_dataset(card["name"], **data_keys)
    mine, theirs = [], []
    reused = reusable_reference(CARDS / model_name / f"{args.dataset}.json", args.recbole_model or args.model,
                                library, args.seeds, parse_pairs(args.recbole)) if args.reuse_reference else None
    if args.reuse_reference and reused is None:
        print("no saved reference runs with the same model, library, seeds and overrides: running them", flush=True)
    for seed in args.seeds:
        split = ds.split(seed=seed)
        data_path = work / f"seed{seed}"
        if not args.no_recbole and reused is None:
            if card.get("sequential"):  # one atomic file in our order; RecBole's LS split then holds out our items
                from benchmarks.recbole_seq_reference import write_files
                write_files(data_path, ds, card["recbole_name"])
            else:
                write_benchmark_files(split, data_path / card["recbole_name"])
        spec = {"dataset": card["name"], "data_keys": data_keys, "seed": seed, "model": args.model,
                "overrides": ours_overrides, "threads": threads, "run_dir": str(work / f"runs-{args.model}-{seed}")}
        mine.append(run_job(sys.executable, OURS_JOB, spec, ROOT))
        print(f"seed {seed} RecStudio {args.model}: {fmt(mine[-1])}", flush=True)
        if reused is not None:
            theirs.append(reused[args.seeds.index(seed)])
            print(f"seed {seed} {library} {args.recbole_model or args.model} (saved): {fmt(theirs[-1])}", flush=True)
        elif not args.no_recbole:
            spec = {"data_path": str(data_path), "name": card["recbole_name"], "seed": seed, "threads": threads,
                    "model": args.recbole_model or args.model, "config": recbole_config, "gnn": gnn is not None}
            env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
            if gnn is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(gnn.resolve())] + [x for x in [os.environ.get("PYTHONPATH")] if x])
            if card.get("sequential"):
                spec["benchmarks"] = str(ROOT / "benchmarks")
            job = SEQ_RECBOLE_JOB if card.get("sequential") else RECBOLE_JOB
            theirs.append(run_job(args.recbole_python, job, spec, data_path, env))
            print(f"seed {seed} {library} {spec['model']}: {fmt(theirs[-1])}", flush=True)
    result = {"model": model_name, "dataset": args.dataset, "protocol": card["protocol"], "seeds": args.seeds,
              "threads": threads, "commit": commit(), "date": time.strftime("%Y-%m-%d"), "note": args.note,
              "ours": aggregate(mine), "ours_overrides": parse_pairs(args.ours)}
    if theirs:
        result.update(recbole_model=args.recbole_model or args.model, recbole_library=library, recbole=aggregate(theirs),
                      recbole_overrides=parse_pairs(args.recbole))
        result["ratio"] = {k: result["ours"]["mean"][k] / v for k, v in result["recbole"]["mean"].items()
                           if k in result["ours"]["mean"] and v}
    if args.published:
        if theirs:
            raise SystemExit("--published is the reference of an ours-only card: add --no-recbole.")
        numbers = {k: float(v) for k, v in parse_pairs(args.published[1:]).items()}
        if not numbers:
            raise SystemExit("--published needs the source and at least one METRIC=VALUE, e.g. hit@10=0.3058.")
        result["published"] = {"source": args.published[0], "mean": numbers}
        result["ratio"] = {k: result["ours"]["mean"][k] / v for k, v in numbers.items()
                           if k in result["ours"]["mean"] and v}
    for lib in ("ours", "recbole"):
        if lib in result:
            agg = result[lib]
            print(f"{lib:8s} " + ", ".join(f"{k} {agg['mean'][k]:.4f} ± {agg['spread'][k]:.4f}"
                                          for k in ("ndcg@10", "recall@10") if k in agg["mean"])
                  + f"; {agg['epoch_seconds']:.2f} s/epoch, {agg['seconds']:.0f} s per run", flush=True)
    if "ratio" in result and "ndcg@10" in result["ratio"]:
        print(f"ratio ours / {'published' if args.published else 'RecBole'} ndcg@10: {result['ratio']['ndcg@10']:.3f}")
    if not args.no_save:
        out = CARDS / model_name / f"{args.dataset}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"saved {out.relative_to(ROOT)}")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
