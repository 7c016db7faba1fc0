"""Reference runs of the knowledge-aware family on ml-100k-kg: BPR (no KG), CKE, KGAT.

Protocol (ml-100k's default): all 100,000 ratings implicit, per-user random 8:1:1 split (seed 2022), full
ranking, early stop on valid mrr@10 (patience 10), test metrics of the best checkpoint. One thread
(OMP_NUM_THREADS=1). The KG files are RecBole's ml-100k.kg / ml-100k.link (the shared copy by default; the
ml-100k files come from the repository's datasets/ml-100k), verified against the registry's sha256.

Side by side with RecBole 1.2.1 (``--recbole-python``): both libraries train on the same split files, made as
in ``benchmarks/ngcf_cke_parity.py`` (ml-100k-kg restricted to the interactions of the 1,598 linked movies, since
RecBole drops unlinked items; RecStudio splits, the phases are written as RecBole benchmark files, plus the
.kg / .link), with RecBole's model defaults on both sides (:data:`PARITY_OURS`, :data:`PARITY_RECBOLE`) and its
protocol (Adam 1e-3, batch 2048, one uniform negative, early stop after 10 validations without improvement
of valid MRR@10, test of the best checkpoint, full ranking with history masked).

RecBole's KGAT needs dgl, which its 1.2.1 code calls with the pre-0.8 API. The reference interpreter is
``/work/venv-recbole-dgl``: a venv whose ``zz_venv_recbole.pth`` adds ``/work/venv-recbole``'s site-packages
(torch 2.13.0+cpu, recbole 1.2.1, numpy 1.26, scipy 1.12) plus ``pip install --no-deps dgl==1.1.3`` (the
newest dgl without graphbolt that has a cp311 wheel). Only in that subprocess, :data:`DGL_SHIM` maps the two
calls RecBole's KGAT makes to their dgl 1.1 names (``edge_subgraph(preserve_nodes=True)`` ->
``relabel_nodes=False``; ``adjacency_matrix(transpose=False, scipy_fmt="coo")`` -> ``adj_external``, same
orientation: row = source). Nothing else of dgl is touched; the matrix built with it is KGAT's initial
attention (replaced by the computed attention after the first epoch).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/kg_reference.py --models CKE KGAT --epochs 300 [--set KGAT.layers=[64]]
    OMP_NUM_THREADS=1 python benchmarks/kg_reference.py --models KGAT \\
        --recbole-python /work/venv-recbole-dgl/bin/python [--only ours|recbole]

Prints one JSON line per run (test metrics, epochs, best checkpoint, mean train-epoch seconds).
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

import torch
from pytorch_lightning import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import recstudio  # noqa: E402
from recstudio.data import load_dataset  # noqa: E402
from recstudio.train.trainer import fit_model  # noqa: E402
from recstudio.utils.cli import parse_value  # noqa: E402

ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info", "README")
KG_FILES = ("ml-100k.kg", "ml-100k.link")

#: RecBole 1.2.1's model defaults (properties/model/*.yaml), written out, and the KG tables it loads
_RB_KG_COLS = {"inter": ["user_id", "item_id"], "kg": ["head_id", "relation_id", "tail_id"],
               "link": ["item_id", "entity_id"]}
PARITY_RECBOLE = {
    "KGAT": {"embedding_size": 64, "kg_embedding_size": 64, "layers": [64], "mess_dropout": 0.1,
             "reg_weight": 1e-5, "aggregator_type": "bi", "load_col": _RB_KG_COLS},
    "CKE": {"embedding_size": 64, "kg_embedding_size": 64, "reg_weights": [1e-2, 1e-2], "load_col": _RB_KG_COLS},
}
#: our keys set to the same values
PARITY_OURS = {
    "KGAT": {"embed_dim": 64, "kg_embed_dim": 64, "layers": [64], "mess_dropout": 0.1, "reg_weight": 1e-5,
             "kg_reg_weight": 1e-5, "aggregator": "bi"},
    "CKE": {"embed_dim": 64, "kg_embed_dim": 64, "reg_weight": 1e-2, "kg_reg_weight": 1e-2},
}

#: run in the RecBole subprocess only (see the module docstring): dgl 1.1 names for RecBole 1.2.1's two calls
DGL_SHIM = r'''
import dgl
_edge_subgraph = dgl.edge_subgraph
def _edge_subgraph_compat(graph, edges, *args, preserve_nodes=None, **kwargs):
    if preserve_nodes is not None:
        kwargs["relabel_nodes"] = not preserve_nodes
    return _edge_subgraph(graph, edges, *args, **kwargs)
dgl.edge_subgraph = _edge_subgraph_compat
_adjacency_matrix = dgl.DGLGraph.adjacency_matrix
def _adjacency_matrix_compat(self, transpose=None, ctx=None, scipy_fmt=None, etype=None):
    if transpose is None and ctx is None and scipy_fmt is None:
        return _adjacency_matrix(self, etype)
    kwargs = {"transpose": bool(transpose), "scipy_fmt": scipy_fmt, "etype": etype}
    if ctx is not None:
        kwargs["ctx"] = ctx
    return self.adj_external(**kwargs)
dgl.DGLGraph.adjacency_matrix = _adjacency_matrix_compat
'''


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


def recbole_run(python: str, model: str, data_path: Path, seed: int, epochs: int) -> dict:
    """RecBole 1.2.1's ``model`` on the benchmark files under ``data_path`` (ngcf_cke_parity's job; KGAT with
    :data:`DGL_SHIM` first). KGAT's trainer runs the base epoch twice per epoch (CF pass, then KG pass), so its
    count is halved."""
    from benchmarks.ngcf_cke_parity import RB_DATASET, RECBOLE_JOB
    job = (DGL_SHIM if model == "KGAT" else "") + RECBOLE_JOB.replace('"epochs": 300', f'"epochs": {int(epochs)}')
    config = dict(PARITY_RECBOLE[model], dataset=RB_DATASET)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "DGLBACKEND": "pytorch"}
    out = subprocess.run([python, "-c", job, str(data_path), str(seed), model, json.dumps(config)],
                         capture_output=True, text=True, env=env, cwd=str(data_path))
    res = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    info = [x for x in out.stdout.splitlines() if x.startswith("INFO ")]
    if out.returncode != 0 or not res:
        raise SystemExit(f"RecBole {model} failed (seed {seed}):\n{out.stderr[-3000:]}")
    res, info = json.loads(res[0][len("RESULT "):]), json.loads(info[0][len("INFO "):])
    epochs_run = info["epochs"] // (2 if model == "KGAT" else 1)
    return {"library": "RecBole 1.2.1", "model": model, "seed": seed,
            "test": {k: round(v, 4) for k, v in res["test"].items() if k.endswith("@10")},
            "epochs": epochs_run, "rows": info["rows"], "items": info["items"],
            "wall_seconds": round(res["seconds"], 1),
            "epoch_seconds": round(res["seconds"] / max(epochs_run, 1), 2)}


def side_by_side(args, overrides) -> None:
    """Ours and RecBole's on the same split files (module docstring)."""
    from benchmarks.bpr_parity import write_benchmark_files
    from benchmarks.ngcf_cke_parity import RB_DATASET, linked_kg_dataset
    unknown = sorted(set(args.models) - set(PARITY_RECBOLE))
    if unknown:
        raise SystemExit(f"--recbole-python compares {sorted(PARITY_RECBOLE)} only, not {unknown}.")
    if args.only != "ours" and not Path(args.recbole_python).exists():
        raise SystemExit(f"no RecBole interpreter at {args.recbole_python} (see the module docstring).")
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="kg-parity-"))
    split = linked_kg_dataset(args.kg_dir, work).split(seed=args.seed)
    data_path = work / f"seed{args.seed}"
    folder = data_path / RB_DATASET
    write_benchmark_files(split, folder)
    for name in KG_FILES:
        shutil.copyfile(args.kg_dir / name, folder / name.replace("ml-100k", RB_DATASET))
    for name in args.models:
        if args.only != "recbole":
            config = dict(PARITY_OURS[name], **overrides.get(name, {}))
            print(json.dumps(dict(fit_ours(name, config, split, args, work), library="RecStudio",
                                  rows=[len(split.train), len(split.valid), len(split.test)])), flush=True)
        if args.only != "ours":
            print(json.dumps(recbole_run(args.recbole_python, name, data_path, args.seed, args.epochs)), flush=True)


def fit_ours(name: str, config: dict, split, args, data_dir: Path) -> dict:
    cls = recstudio.get_model(name)
    model = cls(epochs=args.epochs, seed=args.seed, quiet=True, **config)
    timer = EpochTimer()
    start = time.perf_counter()
    run_dir = data_dir / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a reused --data-dir: no stale checkpoints / logs
    metrics = fit_model(model, split, run_dir=run_dir, callbacks=[timer])
    best = model.trainer.recstudio_checkpoint.best_model_path
    return {"model": name, "overrides": config, "seed": args.seed,
            "test": {k: round(v, 4) for k, v in metrics.items()},
            "epochs": model.trainer.current_epoch, "best_checkpoint": Path(best).name if best else None,
            "epoch_seconds": round(sum(timer.seconds) / max(len(timer.seconds), 1), 2),
            "wall_seconds": round(time.perf_counter() - start, 1)}



def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kg-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-100k-kg")
    ap.add_argument("--ml100k-dir", type=Path, default=ROOT / "datasets" / "ml-100k")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=["CKE", "KGAT"])
    ap.add_argument("--epochs", type=int, default=300, help="epoch cap (early stopping usually ends sooner)")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--set", nargs="*", default=[], help="Model.key=value overrides")
    ap.add_argument("--recbole-python", default=None,
                    help="side by side with RecBole 1.2.1 run by this interpreter (module docstring)")
    ap.add_argument("--only", choices=["ours", "recbole"], default=None, help="side by side: one library only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {}
    for item in args.set:
        target, _, value = item.partition("=")
        model, _, key = target.partition(".")
        if not key:
            raise SystemExit(f"--set takes Model.key=value, got {item!r}")
        overrides.setdefault(model, {})[key] = parse_value(value)
    if args.recbole_python or args.only:
        if not args.recbole_python and args.only != "ours":
            raise SystemExit("--only recbole needs --recbole-python")
        side_by_side(args, overrides)
        return
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kg-ref-"))
    split = ml100k_kg_dataset(args.kg_dir, args.ml100k_dir, data_dir).split()
    for name in args.models:
        print(json.dumps(fit_ours(name, overrides.get(name, {}), split, args, data_dir)), flush=True)


if __name__ == "__main__":
    main()
