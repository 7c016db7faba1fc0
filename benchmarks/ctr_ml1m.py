"""MovieLens-1M as a CTR task, RecStudio and RecBole 1.2.1 side by side on identical files: the ``ml-1m-ctr``
entries of the CTR models' ``results:``.

Protocol (``ml-1m-ctr``): all 1,000,209 ratings, label ``rating >= 4`` (575,281 clicks, 57.5 %); fields: user id,
gender, age, occupation, zip code; movie id, genres (token_seq), release year (the title is left out); no
context field; a per-user random 8:1:1 split of each user's rows (RecStudio's ``split_mode: user_entry``,
seeded); pointwise BCE, embedding 10, Adam 1e-3, batch 2048, early stop on valid AUC (patience 2, at most
``--epochs`` epochs), test AUC / logloss (global, over all test rows) of the best validation checkpoint, one
thread. The behaviour-sequence models (DIN, DIEN, BST) also read each row's history: the last 50 movies the
user rated before the row, in time order (every rating, whatever its label or phase; ties in time in file
order), exactly as RecStudio's ``history_before`` builds it. The multi-task models (SharedBottom, MMoE, PLE,
ESMM, AITM; RecBole has none: ``--side ours``) learn two labels of the same rows, like = rating >= 4 and
love = rating = 5 (their YAML's default ``tasks``; love implies like, the click-then-conversion shape ESMM and
AITM model), early stop on the mean valid AUC of the two tasks, and report each metric per task
(``auc@like``, ``auc@love``) beside the mean (``auc``).

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
``RESULT {json}`` line, appended to ``<work>/results.jsonl`` and printed as the ``results: ml-1m-ctr:`` entry
for the model's YAML (the keys ``recstudio docs`` accepts). ``--write-yaml`` writes that entry into the
model's YAML (replacing an earlier ``ml-1m-ctr`` entry) from the latest records of ``results.jsonl`` with the
same epoch cap; with ``--side none`` nothing is trained (the entry is written from earlier runs)::

    OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model DeepFM --epochs 1 --side none --write-yaml
"""
import argparse
import json
import os
import re
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
#: the multi-task models: two labels from the same rows, like = rating >= 4 and love = rating = 5 (their YAML's
#: default ``tasks``), metrics per task (``auc@like``) and their mean (``auc``); RecBole 1.2.1 has none of them
MULTITASK_MODELS = {"SharedBottom", "MMoE", "PLE", "ESMM", "AITM"}
#: our name -> RecBole 1.2.1's, for the models RecBole has (context-aware, plus DIN among its sequential models)
RECBOLE_NAMES = {m: m for m in ("LR", "FM", "FFM", "FwFM", "FNN", "NFM", "AFM", "DeepFM", "WideDeep", "DCN",
                                "xDeepFM", "AutoInt", "FiGNN", "EulerNet", "DIN")} | {"IPNN": "PNN", "DCNv2": "DCNV2"}
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
MULTITASK_PROTOCOL = ("ml-1m, all 1,000,209 ratings, two labels: like = rating >= 4, love = rating = 5 (a subset "
                      "of like); fields user id, gender, age, occupation, zip code, movie id, genres, release year; "
                      "per-user random 8:1:1 (seeded); embedding 10, Adam 1e-3, batch 2048, early stop on valid auc "
                      "(the mean of the two tasks; patience 2); test auc / logloss (global) per task and their mean "
                      "of the best checkpoint")
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
#: ``Dataset._fill_nan`` has the same no-op for token and float columns: the padding row 0 of ``user_feat`` /
#: ``item_feat`` (added when the feature tables are re-indexed by internal id) keeps NaN, which becomes
#: -2**63 in the int64 tensors. Context-aware models never read row 0 (every interaction has a real user and
#: item), but DIN looks up the item features of the padded history positions (item 0), so its embedding
#: lookup raised "IndexError: index out of range in self" (first in RecBole's ``get_flops``): fill by
#: assignment before RecBole's own ``_fill_nan`` runs.
PANDAS_SHIM = r'''
import functools as _ft
import pandas as _pd
_agg = _pd.Series.agg
def _agg_len_per_row(self, func=None, *args, **kwargs):
    return self.map(len) if func is len else _agg(self, func, *args, **kwargs)
_pd.Series.agg = _agg_len_per_row
_pd.read_csv = _ft.partial(_pd.read_csv, keep_default_na=False)
import recbole.data.dataset.dataset as _rbd
from recbole.utils import FeatureType as _FT
_fill_nan = _rbd.Dataset._fill_nan
def _fill_nan_by_assignment(self):
    for _name in self.feat_name_list:
        _feat = getattr(self, _name)
        for _field in _feat:
            if self.field2type[_field] == _FT.TOKEN:
                _feat[_field] = _feat[_field].fillna(0)
            elif self.field2type[_field] == _FT.FLOAT:
                _feat[_field] = _feat[_field].fillna(_feat[_field].mean())
    _fill_nan(self)
_rbd.Dataset._fill_nan = _fill_nan_by_assignment
'''


def protocol_of(model: str) -> str:
    """The protocol text of ``model``'s entry: two labels for the multi-task models, one otherwise."""
    return MULTITASK_PROTOCOL if model in MULTITASK_MODELS else PROTOCOL


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
    res["test"] = {k: round(float(v), 4) for k, v in res["test"].items() if k.split("@")[0] in ("auc", "gauc", "logloss")}
    res.pop("config", None)
    return res


def _latest(records, model: str, side: str, cap: int, overrides: dict):
    """The latest ``results.jsonl`` record of ``model`` with a ``side`` run under the epoch cap ``cap`` and
    exactly the config ``overrides`` of that side."""
    hits = [r for r in records if r.get("model") == model and side in r
            and r.get("epoch_cap", r[side]["epochs"]) == cap and r.get(f"{side}_overrides", {}) == overrides]
    return hits[-1] if hits else None


def _capped(protocol: str, cap: int) -> str:
    if cap == 1:
        return re.sub(r"early stop on valid auc \([^)]*patience 2\); (test auc / logloss \(global\)[^;]*?) of the best "
                      r"checkpoint", r"one epoch (the 1-epoch cap: no early stop); \1", protocol)
    return protocol.replace("patience 2)", f"patience 2, at most {cap} epochs)")


def yaml_entry(model: str, records, cap: int, load: str = "", ours_overrides=None, recbole_overrides=None,
               extra_note: str = "") -> str:
    """The ``  ml-1m-ctr:`` entry (indented for ``results:``) from the latest records of both sides."""
    ours = _latest(records, model, "ours", cap, ours_overrides or {})
    rb = _latest(records, model, "recbole", cap, recbole_overrides or {})
    if ours is None:
        raise SystemExit(f"no RecStudio {model} record with a {cap}-epoch cap in results.jsonl: run it first.")
    o = ours["ours"]
    test = ", ".join(f"{k}: {v}" for k, v in sorted(o["test"].items(), key=lambda kv: (kv[0].count("@"), kv[0])))
    flags = " ".join([f"--ours {k}={v}" for k, v in ours.get("ours_overrides", {}).items()]
                     + [f"--recbole {k}={v}" for k, v in (rb or {}).get("recbole_overrides", {}).items()])
    cmd = f"OMP_NUM_THREADS=1 python benchmarks/ctr_ml1m.py --model {model} --epochs {cap}" + (f" {flags}" if flags else "")
    lines = ["  ml-1m-ctr:",
             f"    protocol: \"{_capped(protocol_of(model), cap)} "
             "(benchmarks/ctr_ml1m.py)\"",
             f"    test: {{{test}}}", f"    seeds: [{ours['seed']}]"]
    if rb is not None:
        r = rb["recbole"]
        extra = ", ".join(f"{k}={v}" for k, v in rb.get("recbole_overrides", {}).items())
        lines.append(f"    reference: {{source: \"RecBole 1.2.1 {rb['recbole_model']} on the same benchmark files (its "
                     f"defaults{' + ' + extra if extra else ''} + the shared protocol), {cap}-epoch cap\", "
                     f"auc: {r['test'].get('auc')}, logloss: {r['test'].get('logloss')}}}")
    lines.append(f"    epoch_seconds: {round(o['epoch_seconds'], 1)}"
                 + (f"   # RecBole: {round(rb['recbole']['epoch_seconds'], 1)}" if rb is not None else ""))
    lines.append(f"    epochs: {o['epochs']}   # ours" + (f"; RecBole {rb['recbole']['epochs']}" if rb is not None else "")
                 + f" (cap {cap}, both libraries)" * (rb is not None))
    note = (f"{cmd}; ours with the YAML defaults + the shared protocol"
            + ("" if rb is not None else f"; RecBole 1.2.1's {RECBOLE_NAMES[model]} not measured (no time)"
               if model in RECBOLE_NAMES else f"; RecBole 1.2.1 has no {model} (ours only)")
            + (f"; the {cap}-epoch cap (set to fit the session: one training at a time on the shared CPU) is well "
               "short of convergence, so the numbers compare the libraries after the same budget, not converged "
               "models" if cap < 10 else "")
            + f"; one seed, commit {ours['commit']} (the working tree at run time); 2-core shared CPU, 1 thread{load} (timings inflated)"
            + (f". {extra_note}" if extra_note else ""))
    lines.append(f"    note: \"{note}\"")
    return "\n".join(lines)


def write_yaml(model: str, entry: str) -> Path:
    """Put ``entry`` into the model's YAML ``results:`` (replacing an ``ml-1m-ctr`` entry there); checked with
    ``recstudio.reporting.model_table.check_results`` before the file is replaced."""
    import importlib
    import inspect

    import yaml

    import recstudio
    from recstudio.reporting.model_table import check_results
    cls = recstudio.get_model(model)
    path = Path(inspect.getfile(importlib.import_module(cls.__module__))).with_suffix(".yaml")
    lines = path.read_text().splitlines()
    start = next((i for i, x in enumerate(lines) if x.startswith("results:")), None)
    if start is None:
        lines += ["results:", *entry.splitlines()]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
        old = next((i for i in range(start + 1, end) if lines[i].startswith("  ml-1m-ctr:")), None)
        if old is None:
            lines[end:end] = entry.splitlines()
        else:
            stop = next((i for i in range(old + 1, end) if lines[i].startswith("  ") and not lines[i][2].isspace()),
                        end)
            lines[old:stop] = entry.splitlines()
    text = "\n".join(lines) + "\n"
    doc = yaml.safe_load(text)
    check_results(model, doc["results"])
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="our registered model name")
    p.add_argument("--recbole-model", default=None,
                   help="RecBole's name of the model (default: RECBOLE_NAMES, else ours)")
    p.add_argument("--side", choices=["both", "ours", "recbole", "none"], default="both",
                   help="which libraries to train ('none': only --write-yaml from earlier runs)")
    p.add_argument("--write-yaml", action="store_true", help="write the ml-1m-ctr entry into the model's YAML")
    p.add_argument("--load", default="", help="words on the machine load for the note, e.g. ', load ~5'")
    p.add_argument("--note", default="", help="more words for the YAML entry's note (e.g. a diagnosis)")
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
    multitask = model_name in MULTITASK_MODELS
    if multitask and args.side in ("both", "recbole"):
        raise SystemExit(f"RecBole 1.2.1 has no multi-task model like {model_name}: run with --side ours.")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    work = args.work
    link_ml1m(args.ml1m_raw, work)
    data_keys = {**DATA_KEYS, "data_dir": str(work)}
    stamp = time.strftime("%H%M%S")
    result = {"model": model_name, "dataset": "ml-1m-ctr", "protocol": protocol_of(model_name), "seed": args.seed,
              "threads": threads, "commit": commit(), "date": time.strftime("%Y-%m-%d"), "epoch_cap": args.epochs}
    if args.side in ("both", "ours"):
        spec = {"dataset": "ml-1m", "data_keys": data_keys, "seed": args.seed, "model": model_name, "threads": threads,
                "overrides": {**{k: v for k, v in OURS_PROTOCOL.items() if not (multitask and k == "label_threshold")},
                              "epochs": args.epochs, **parse_pairs(args.ours)},
                "run_dir": str(work / "runs" / f"ours-{model_name}-{args.seed}-{stamp}")}
        result["ours"] = run_job(sys.executable, OURS_JOB, spec, ROOT, work / f"ours-{model_name}-{stamp}.log")
        result["ours_overrides"] = parse_pairs(args.ours)
        print(f"RecStudio {model_name}: {result['ours']}", flush=True)
        with open(work / "results.jsonl", "a") as f:   # each side on its own line: a failed RecBole run keeps ours
            f.write(json.dumps({k: v for k, v in result.items() if not k.startswith("recbole")}) + "\n")
    if args.side in ("both", "recbole"):
        data_path = work / f"seed{args.seed}-{'seq' if sequences else 'ctx'}"
        if not (data_path / NAME / f"{NAME}.test.inter").exists():
            split = load_dataset("ml-1m", **data_keys).split(seed=args.seed)
            write_files(split, data_path / NAME, sequences)
        config = {**RECBOLE_PROTOCOL, **(RECBOLE_SEQ if sequences else {}), "epochs": args.epochs,
                  **parse_pairs(args.recbole)}
        if sequences:
            config["load_col"] = {**config["load_col"], "inter": ["user_id", "item_id", "label", "item_id_list"]}
        result["recbole_model"] = args.recbole_model or RECBOLE_NAMES.get(model_name, model_name)
        spec = {"data_path": str(data_path), "name": NAME, "seed": args.seed, "threads": threads,
                "model": result["recbole_model"], "config": config}
        result["recbole"] = run_job(args.recbole_python, PANDAS_SHIM + RECBOLE_JOB, spec, data_path,
                                    work / f"recbole-{result['recbole_model']}-{stamp}.log",
                                    {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
        result["recbole_overrides"] = parse_pairs(args.recbole)
        print(f"RecBole {result['recbole_model']}: {result['recbole']}", flush=True)
        with open(work / "results.jsonl", "a") as f:
            f.write(json.dumps({k: v for k, v in result.items() if not k.startswith("ours")}) + "\n")
    if args.side != "none":
        print("RESULT " + json.dumps(result))
    records = [json.loads(x) for x in open(work / "results.jsonl")] if (work / "results.jsonl").exists() else []
    entry = yaml_entry(model_name, records, args.epochs, args.load, parse_pairs(args.ours), parse_pairs(args.recbole),
                       args.note)
    print(entry)
    if args.write_yaml:
        print(f"wrote {write_yaml(model_name, entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
