"""BPR side by side with RecBole 1.2.1 on the same split files, over several seeds, and the speed ratio.

For each seed, RecStudio splits ml-100k with the default protocol (all 100,000 ratings implicit, per-user
random 8:1:1), writes the three phases as RecBole benchmark files (``ml100k.train.inter`` /
``.valid.inter`` / ``.test.inter``), and both libraries train BPR on exactly those rows with RecBole's
defaults (embedding 64, Adam 1e-3, batch 2048, one uniform negative, early stopping after 10 validations
without improvement of MRR@10, test metrics of the best validation checkpoint, full ranking). Prints each
run, the mean and standard deviation per library, and wall seconds (RecBole's time includes its data
pipeline; ours the same via ``recstudio.run``), and the speed ratio of ``python run.py`` (the default job:
BPR on the bundled ml-100k with its own split) against RecBole's BPR.

RecBole runs in its own virtual environment (recipe in ``../shared/REFERENCE_RESULTS.md``)::

    python3 -m venv .venv-recbole
    .venv-recbole/bin/pip install torch==2.13.0
    .venv-recbole/bin/pip install recbole==1.2.1 "numpy<2" "scipy<1.13" "setuptools>=77.0.3,<81" hyperopt==0.2.5

Usage:
    python benchmarks/bpr_parity.py [--seeds 2022 2023 2024] [--recbole-python .venv-recbole/bin/python]
    python benchmarks/bpr_parity.py --speed 3      # only the speed ratio, 3 alternated runs of each
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

METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10")

RECBOLE_SCRIPT = r'''
import json, sys, time
t0 = time.perf_counter()
from recbole.quick_start import run_recbole
data_path, seed = sys.argv[1], int(sys.argv[2])
config = {
    "data_path": data_path, "dataset": "ml100k", "benchmark_filename": ["train", "valid", "test"],
    "load_col": {"inter": ["user_id", "item_id"]}, "seed": seed, "reproducibility": True,
    "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10], "valid_metric": "MRR@10",
    "epochs": 300, "stopping_step": 10, "train_batch_size": 2048, "learning_rate": 0.001, "embedding_size": 64,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}, "show_progress": False,
    "state": "WARNING", "checkpoint_dir": data_path + "/saved",
}
result = run_recbole(model="BPR", config_dict=config)
test = {k.lower(): float(v) for k, v in result["test_result"].items()}
print("RESULT " + json.dumps({"test": test, "seconds": time.perf_counter() - t0}))
'''


def write_benchmark_files(split, folder: Path, name: str = None) -> None:
    """The split's phases as RecBole benchmark atomic files ``<folder>/<name>.<phase>.inter`` (original ids;
    ``name`` defaults to the folder's). RecBole replaces a dataset named ``ml-100k`` by its own bundled copy,
    so the files here are named ``ml100k``."""
    ds = split.dataset
    name = name or folder.name
    folder.mkdir(parents=True, exist_ok=True)
    for phase, rows in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        users, items = ds.decode_users(ds.users[rows]), ds.decode_items(ds.items[rows])
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in zip(users, items)]
        (folder / f"{name}.{phase}.inter").write_text("\n".join(lines) + "\n")


def ours(split, seed: int, run_dir: Path):
    import recstudio
    t = time.perf_counter()
    _, metrics = recstudio.run(model="BPR", dataset=split, seed=seed, quiet=True, run_dir=str(run_dir))
    return {k: metrics[k] for k in METRICS}, time.perf_counter() - t


def recbole(python: str, data_path: Path, seed: int):
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    out = subprocess.run([python, "-c", RECBOLE_SCRIPT, str(data_path), str(seed)], capture_output=True, text=True,
                         env=env, cwd=str(data_path))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise SystemExit(f"RecBole failed (seed {seed}):\n{out.stderr[-3000:]}")
    res = json.loads(line[0][len("RESULT "):])
    return {k: res["test"][k] for k in METRICS}, res["seconds"]


def summary(name: str, runs) -> None:
    print(f"{name}: " + ", ".join(
        f"{m} {statistics.mean(r[0][m] for r in runs):.4f} ± {statistics.pstdev([r[0][m] for r in runs]):.4f}"
        for m in ("ndcg@10", "recall@10", "mrr@10")) + f"; {statistics.mean(r[1] for r in runs):.1f} s per run")


def timed(cmd, **kwargs):
    """Wall seconds and CPU seconds (user + system, the child's and its children's) of a command."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def default_job_seconds():
    """Wall and CPU seconds of ``python run.py`` (the default job), process start included."""
    wall, cpu, _ = timed([sys.executable, str(ROOT / "run.py"), "--run_dir", tempfile.mkdtemp(), "--quiet", "true"],
                         cwd=str(ROOT))
    return wall, cpu


def speed(python: str, repeats: int) -> None:
    """``python run.py`` against RecBole's BPR on the same default split, alternated ``repeats`` times, both
    timed as whole processes (interpreter start included): the wall and the CPU-time ratios. The CPU ratio
    is the steadier one on a machine that other processes share."""
    from recstudio.data import load_dataset
    ds = load_dataset("ml-100k")
    seed = int(ds.config.get("seed", 2022))
    split = ds.split()  # the default protocol and seed, as python run.py
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_benchmark_files(split, Path(tmp) / "ml100k")
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        for _ in range(repeats):
            ours.append(default_job_seconds())
            wall, cpu, _ = timed([python, "-c", RECBOLE_SCRIPT, tmp, str(seed)], env=env, cwd=tmp)
            theirs.append((wall, cpu))
            print(f"python run.py {ours[-1][0]:.1f} s wall / {ours[-1][1]:.1f} s CPU | RecBole BPR {wall:.1f} s wall "
                  f"/ {cpu:.1f} s CPU", flush=True)
    ow, oc = (statistics.median(x[i] for x in ours) for i in (0, 1))
    rw, rc = (statistics.median(x[i] for x in theirs) for i in (0, 1))
    print(f"median of {repeats}: python run.py {ow:.1f} s wall, {oc:.1f} s CPU; RecBole BPR {rw:.1f} s wall, "
          f"{rc:.1f} s CPU; ratio {rw / ow:.2f}x wall, {rc / oc:.2f}x CPU (target >= 3x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2022, 2023, 2024])
    parser.add_argument("--recbole-python", default=str(ROOT / ".venv-recbole" / "bin" / "python"))
    parser.add_argument("--speed", type=int, metavar="N", default=0,
                        help="only the speed ratio: python run.py and RecBole's BPR, alternated N times")
    args = parser.parse_args(argv)
    if not Path(args.recbole_python).exists():
        raise SystemExit(f"no RecBole interpreter at {args.recbole_python}: create the venv (see this file's "
                         "docstring) or pass --recbole-python.")
    if args.speed:
        speed(args.recbole_python, args.speed)
        return 0
    from recstudio.data import load_dataset
    ds = load_dataset("ml-100k")
    mine, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            split = ds.split(seed=seed)
            data_path = Path(tmp) / f"seed{seed}"
            write_benchmark_files(split, data_path / "ml100k")
            mine.append(ours(split, seed, Path(tmp) / f"runs{seed}"))
            theirs.append(recbole(args.recbole_python, data_path, seed))
            print(f"seed {seed}: RecStudio {json.dumps({k: round(v, 4) for k, v in mine[-1][0].items()})} "
                  f"{mine[-1][1]:.1f} s | RecBole {json.dumps({k: round(v, 4) for k, v in theirs[-1][0].items()})} "
                  f"{theirs[-1][1]:.1f} s", flush=True)
    summary("RecStudio BPR", mine)
    summary("RecBole BPR  ", theirs)
    speed(args.recbole_python, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
