"""MovieLens-1M as a CTR task, RecStudio and RecBole 1.2.1 side by side on identical files: the ``ml-1m-ctr``
entries of the CTR models' ``results:``.

Protocol (``ml-1m-ctr``): all 1,000,209 ratings, label ``rating >= 4`` (575,281 clicks, 57.5 %); fields: user id,
gender, age, occupation, zip code; movie id, genres (token_seq), release year (the title is left out); no
context field; a per-user random 8:1:1 split of each user's rows (RecStudio's ``split_mode: user_entry``,
seeded); pointwise BCE, embedding 10, Adam 1e-3, batch 2048, early stop on valid AUC (patience 2, at most
``--epochs`` epochs), test AUC / logloss (global, over all test rows) of the best validation checkpoint, one
thread. The behaviour-sequence models (DIN, DIEN, BST) also read each row's history: the last 50 movies the
user rated before the row, in time order (every rating, whatever its label or phase; ties in time in file
order), exactly as RecStudio's ``history_before`` builds it.

RecStudio splits the data; the three phases are written as RecBole benchmark files (original ids, columns
``user_id``, ``item_id``, ``label`` and, for the sequence models, ``item_id_list``), with ``ml1mctr.user``
(``age, gender, occupation, zip_code``) and ``ml1mctr.item`` (``release_year``, ``genre``) from the same
dataset, and each library trains on exactly those rows: ours with the model's YAML defaults plus the shared
protocol and ``--ours`` overrides, RecBole with its defaults plus the shared protocol and ``--recbole``
overrides. Each run is its own process (``benchmarks/side_by_side.py``'s job scripts: wall time and peak
memory per run).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model FM                  # ours and RecBole's FM
    OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model DIN --side recbole  # RecBole only
    OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model BST --side ours     # RecBole has no BST
    OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model DCN --recbole-model DCN --recbole cross_layer_num=3

The result (per side: test metrics, epochs, seconds per epoch, wall time, peak MB) is printed as one
``RESULT {json}`` line, appended to ``<work>/results.jsonl`` and printed as a ``results: ml-1m-ctr:`` YAML
snippet for the model's YAML.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.side_by_side import OURS_JOB, RECBOLE_JOB, commit, link_ml1m, parse_pairs  # noqa: E402

NAME = "ml1mctr"
SEQ_MODELS = {"DIN", "DIEN", "BST"}
MAX_SEQ_LEN = 50
DATA_KEYS = {"split_mode": "user_entry", "split_ratio": [0.8, 0.1, 0.1], "split_order": "random"}
USER_FIELDS = ["age", "gender", "occupation", "zip_code"]
ITEM_FIELDS = ["release_year", "genre"]
PROTOCOL = ("ml-1m, all 1,000,209 ratings, label rating >= 4; fields user id, gender, age, occupation, zip code, "
            "movie id, genres, release year; per-user random 8:1:1 (seeded); embedding 10, Adam 1e-3, batch 2048, "
            "early stop on valid auc (patience 2); test auc / logloss (global) of the best checkpoint; sequence "
            "models: the last 50 rated movies before the row (time order)")
OURS_PROTOCOL = {"label_threshold": 4, "feature_fields": ["user_id", *USER_FIELDS, "item_id", *ITEM_FIELDS],
                 "embed_dim": 10, "learning_rate": 0.001, "batch_size": 2048, "early_stop_metric": "auc",
                 "early_stop_patience": 2, "metrics": ["auc", "gauc", "logloss"]}
RECBOLE_PROTOCOL = {"load_col": {"inter": ["user_id", "item_id", "label"], "user": ["user_id", *USER_FIELDS],
                                 "item": ["item_id", *ITEM_FIELDS]},
                    "LABEL_FIELD": "label", "train_neg_sample_args": None, "embedding_size": 10,
                    "learning_rate": 0.001, "train_batch_size": 2048, "eval_batch_size": 4096,
                    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None,
                                  "mode": "labeled"},
                    "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC", "stopping_step": 2,
                    "show_progress": False, "state": "WARNING", "reproducibility": True}
RECBOLE_SEQ = {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": None, "mode": "labeled"},
               "MAX_ITEM_LIST_LENGTH": MAX_SEQ_LEN, "alias_of_item_id": ["item_id_list"]}


#: pandas >= 3 shims for RecBole 1.2.1 (its venv has pandas 3.0): RecBole counts the tokens of a token_seq column
#: with ``Series.agg(len)``, which pandas 3 evaluates on the whole column instead of per row; and it fills the
#: empty token_seq cells (a row without history) with ``fillna(inplace=True)`` on a column, a no-op under pandas 3's
#: copy-on-write, so an empty history stays NaN: read the atomic files with empty cells kept as ''.
PANDAS_SHIM = r'''
import functools as _ft
import pandas as _pd
_agg = _pd.Series.agg
def _agg_len_per_row(self, func=None, *args, **kwargs):
    return self.map(len) if func is len else _agg(self, func, *args, **kwargs)
_pd.Series.agg = _agg_len_per_row
_pd.read_csv = _ft.partial(_pd.read_csv, keep_default_na=False)
'''


def _tsv(path: Path, header, columns) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in zip(*columns):
            f.write("\t".join(row) + "\n")


def _tokens(ds, owner: str, field: str, ids: np.ndarray):
    """Original tokens (space-joined for token_seq) of the feature ``field`` of the ``owner`` rows ``ids``."""
    table = ds.user_feat if owner == "user" else ds.item_feat
    key = ds.uid_field if owner == "user" else ds.iid_field
    values = np.asarray(table[field])
    ids_col = np.asarray(table[key])
    pos = np.empty(int(ids_col.max()) + 1, dtype=np.int64)
    pos[ids_col] = np.arange(len(ids_col))
    rows = pos[ids]
    vocab = ds.id_maps[field].tokens if field in ds.id_maps else None
    out = []
    for v in values[rows]:
        seq = np.atleast_1d(v)
        toks = [str(vocab[t - 1]) if vocab is not None else str(t) for t in seq if t > 0]
        out.append(" ".join(toks))
    return out


def histories(ds, rows: np.ndarray, length: int = MAX_SEQ_LEN):
    """Space-joined original ids of the last ``length`` items of each row's user before the row (time order)."""
    items = ds.decode_items(np.asarray(ds.items))
    off = np.asarray(ds.user_offsets)
    users = np.asarray(ds.users)[rows]
    lo = np.maximum(off[users], rows - length)
    return [" ".join(map(str, items[a:b])) for a, b in zip(lo, rows)]


def write_files(split, folder: Path, sequences: bool) -> None:
    """The split's phases as RecBole benchmark files plus ``.user`` / ``.item`` (original ids)."""
    ds = split.dataset
    folder.mkdir(parents=True, exist_ok=True)
    rating = np.asarray(ds.inter[ds.rating_field], dtype=np.float64)
    for phase, rows in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        rows = np.asarray(rows, dtype=np.int64)
        header = ["user_id:token", "item_id:token", "label:float"]
        cols = [ds.decode_users(ds.users[rows]), ds.decode_items(ds.items[rows]),
                ["1" if r >= 4 else "0" for r in rating[rows]]]
        if sequences:
            header.append("item_id_list:token_seq")
            cols.append(histories(ds, rows))
        _tsv(folder / f"{NAME}.{phase}.inter", header, [list(map(str, c)) for c in cols])
    users = np.arange(1, ds.num_users)
    _tsv(folder / f"{NAME}.user", ["user_id:token"] + [f"{f}:token" for f in USER_FIELDS],
         [list(map(str, ds.decode_users(users)))] + [_tokens(ds, "user", f, users) for f in USER_FIELDS])
    items = np.arange(1, ds.num_items)
    _tsv(folder / f"{NAME}.item", ["item_id:token", "release_year:token", "genre:token_seq"],
         [list(map(str, ds.decode_items(items)))] + [_tokens(ds, "item", f, items) for f in ITEM_FIELDS])


def run_job(python: str, script: str, spec: dict, cwd: Path, log: Path, env_extra=None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    with open(log, "w") as f:
        out = subprocess.run([python, "-c", script, json.dumps(spec)], stdout=subprocess.PIPE, stderr=f, text=True,
                             env=env, cwd=str(cwd))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not line:
        raise RuntimeError(f"{spec['model']} failed (seed {spec['seed']}, exit {out.returncode}); see {log}")
    res = json.loads(line[-1][len("RESULT "):])
    res["test"] = {k: round(float(v), 4) for k, v in res["test"].items() if k in ("auc", "gauc", "logloss")}
    res.pop("config", None)
    return res


def yaml_snippet(result: dict) -> str:
    lines = ["  ml-1m-ctr:", f"    protocol: \"{PROTOCOL}\"", f"    seeds: [{result['seed']}]",
             "    machine: 2-core shared CPU, 1 thread", f"    date: {result['date']}", f"    commit: {result['commit']}"]
    for side in ("ours", "recbole"):
        if side in result:
            r = result[side]
            label = "ours" if side == "ours" else f"recbole_1_2_1 ({result['recbole_model']})"
            lines.append(f"    {side}: {{auc: {r['test'].get('auc')}, logloss: {r['test'].get('logloss')}"
                         + (f", gauc: {r['test']['gauc']}" if "gauc" in r["test"] else "")
                         + f", epochs: {r['epochs']}, epoch_seconds: {round(r['epoch_seconds'], 1)}}}  # {label}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="our registered model name")
    p.add_argument("--recbole-model", default=None, help="RecBole's name of the model (default: ours)")
    p.add_argument("--side", choices=["both", "ours", "recbole"], default="both")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--ours", nargs="*", default=[], metavar="KEY=VALUE", help="our config overrides")
    p.add_argument("--recbole", nargs="*", default=[], metavar="KEY=VALUE", help="RecBole config overrides")
    p.add_argument("--recbole-python", default=os.environ.get("RECBOLE_PYTHON", "/work/venv-recbole/bin/python"))
    p.add_argument("--ml1m-raw", type=Path, default=Path("/work/shared/datasets/ml-1m"))
    p.add_argument("--work", type=Path, default=Path("/tmp/ctr-ml1m"), help="scratch folder (data, runs, logs)")
    args = p.parse_args(argv)
    import recstudio
    from recstudio.data import load_dataset
    model_name = recstudio.get_model(args.model).model_name
    sequences = model_name in SEQ_MODELS
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    work = args.work
    link_ml1m(args.ml1m_raw, work)
    data_keys = {**DATA_KEYS, "data_dir": str(work)}
    stamp = time.strftime("%H%M%S")
    result = {"model": model_name, "dataset": "ml-1m-ctr", "protocol": PROTOCOL, "seed": args.seed,
              "threads": threads, "commit": commit(), "date": time.strftime("%Y-%m-%d")}
    if args.side in ("both", "ours"):
        spec = {"dataset": "ml-1m", "data_keys": data_keys, "seed": args.seed, "model": model_name, "threads": threads,
                "overrides": {**OURS_PROTOCOL, "epochs": args.epochs, **parse_pairs(args.ours)},
                "run_dir": str(work / "runs" / f"ours-{model_name}-{args.seed}-{stamp}")}
        result["ours"] = run_job(sys.executable, OURS_JOB, spec, ROOT, work / f"ours-{model_name}-{stamp}.log")
        result["ours_overrides"] = parse_pairs(args.ours)
        print(f"RecStudio {model_name}: {result['ours']}", flush=True)
    if args.side in ("both", "recbole"):
        data_path = work / f"seed{args.seed}-{'seq' if sequences else 'ctx'}"
        if not (data_path / NAME / f"{NAME}.test.inter").exists():
            split = load_dataset("ml-1m", **data_keys).split(seed=args.seed)
            write_files(split, data_path / NAME, sequences)
        config = {**RECBOLE_PROTOCOL, **(RECBOLE_SEQ if sequences else {}), "epochs": args.epochs,
                  **parse_pairs(args.recbole)}
        if sequences:
            config["load_col"] = {**config["load_col"], "inter": ["user_id", "item_id", "label", "item_id_list"]}
        result["recbole_model"] = args.recbole_model or model_name
        spec = {"data_path": str(data_path), "name": NAME, "seed": args.seed, "threads": threads,
                "model": result["recbole_model"], "config": config}
        result["recbole"] = run_job(args.recbole_python, PANDAS_SHIM + RECBOLE_JOB, spec, data_path,
                                    work / f"recbole-{result['recbole_model']}-{stamp}.log",
                                    {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
        result["recbole_overrides"] = parse_pairs(args.recbole)
        print(f"RecBole {result['recbole_model']}: {result['recbole']}", flush=True)
    with open(work / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(yaml_snippet(result))
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
