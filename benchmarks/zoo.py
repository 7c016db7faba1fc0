"""Reproducibility cards for the zoo: measure chosen models (or all) side by side with RecBole, render the cards.

For each model, the card settings come from its YAML ``card`` section::

    card:
      recbole_model: ItemKNN      # RecBole 1.2.1's name of the model; null when RecBole lacks it
      datasets: [ml-100k, ml-1m]  # card datasets (benchmarks/side_by_side.py DATASETS); default: the measured
                                  # ones, else [ml-100k] ([amazon-mi-seq, ml-100k-seq] for the sequential models)
      seeds: [2022, 2023, 2024]   # default [2022]
      ours: {k: 100}              # our overrides on the card (the YAML defaults otherwise)
      recbole: {k: 100}           # RecBole's overrides
      recbole_gnn: true           # the reference side is RecBole-GNN (needs --recbole-gnn); default false
      published: {source: "RecTools", mean: {hit@10: 0.3058}}  # an ours-only card's published reference
      note: "why a setting differs"  # stored with the measurement
      per_dataset:                # keys of one card dataset that win over the ones above
        ml-1m-seq: {ours: {loss: sampled_softmax}, published: {source: RecTools, mean: {hit@10: 0.3058}}}

(else from the model's measurement in ``docs/cards/<Model>/<dataset>.json``, else RecBole's model of the
same name with both libraries' defaults). Each measurement is ``benchmarks/side_by_side.py`` (same split files,
one process per run), saved as ``docs/cards/<Model>/<dataset>.json``; then the cards (``docs/cards/<Model>.md``,
``docs/cards/README.md``, ``docs/models.md``) are regenerated and the plots drawn (``ndcg_by_model-<dataset>.png``,
``quality_vs_time-<dataset>.png`` in ``docs/cards/``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/zoo.py --models BPR EASE ItemKNN
    OMP_NUM_THREADS=1 python benchmarks/zoo.py --category general --dataset ml-100k --missing-only
    python benchmarks/zoo.py --render-only        # re-render cards and plots from the saved measurements
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.side_by_side import CARDS, DATASETS, GNN_LIBRARY  # noqa: E402


def card_datasets(name: str) -> list:
    """The card datasets of a model: its YAML ``card.datasets``, else the category's default (``ml-100k``;
    ``amazon-mi-seq`` and ``ml-100k-seq`` for the sequential models) and any other it has a measurement of."""
    from recstudio.model.registry import get_model, model_yaml
    cls = get_model(name)
    card = model_yaml(cls)["card"]
    if "datasets" in card:
        return list(card["datasets"])
    defaults = ["amazon-mi-seq", "ml-100k-seq"] if cls.category == "seq" else ["ml-100k"]
    measured = sorted(p.stem for p in (CARDS / name).glob("*.json") if p.stem in DATASETS)
    return defaults + [d for d in measured if d not in defaults]


def card_settings(name: str, dataset: str) -> dict:
    """The card section of a model's YAML (``per_dataset`` entries win for their dataset), completed from the
    model's measurement on ``dataset`` (its overrides, seeds, reference, note), else RecBole's model of the same
    name with both libraries' defaults."""
    from recstudio.model.registry import get_model, model_yaml
    card = dict(model_yaml(get_model(name))["card"])
    card.update(card.pop("per_dataset", {}).get(dataset, {}))
    path = CARDS / name / f"{dataset}.json"
    last = json.loads(path.read_text()) if path.is_file() else {}
    card.setdefault("recbole_model", last.get("recbole_model") if last else name)  # an ours-only card stays so
    card.setdefault("seeds", last.get("seeds", [2022]) if last else [2022])
    card.setdefault("ours", last.get("ours_overrides", {}))
    card.setdefault("recbole", last.get("recbole_overrides", {}))
    card.setdefault("recbole_gnn", str(last.get("recbole_library", "")).startswith(GNN_LIBRARY))
    card.setdefault("published", last.get("published"))
    card.setdefault("note", last.get("note"))
    return card


def measure(name: str, dataset: str, card: dict, recbole_python, recbole_gnn=None) -> bool:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "side_by_side.py"), "--model", name, "--dataset", dataset,
           "--seeds", *map(str, card["seeds"])]
    if card["recbole_model"]:
        cmd += ["--recbole-model", card["recbole_model"]]
    else:
        cmd += ["--no-recbole"]
    if card["ours"]:
        cmd += ["--ours", *(f"{k}={json.dumps(v)}" for k, v in card["ours"].items())]
    if card["recbole"] and card["recbole_model"]:
        cmd += ["--recbole", *(f"{k}={json.dumps(v)}" for k, v in card["recbole"].items())]
    if card.get("published") and not card["recbole_model"]:
        pub = card["published"]
        cmd += ["--published", pub["source"], *(f"{k}={v}" for k, v in pub["mean"].items())]
    if card.get("note"):
        cmd += ["--note", card["note"]]
    if recbole_python:
        cmd += ["--recbole-python", recbole_python]
    if card["recbole_model"] and card.get("recbole_gnn"):
        if not recbole_gnn:
            print(f"== {name} on {dataset}: its reference is RecBole-GNN; pass --recbole-gnn <checkout>", flush=True)
            return False
        cmd += ["--recbole-gnn", str(recbole_gnn)]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    tail = [x for x in out.stdout.splitlines() if not x.startswith("RESULT ")]
    print(f"== {name} on {dataset} ({time.perf_counter() - t:.0f} s)\n" + "\n".join(tail[-6:]), flush=True)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
    return out.returncode == 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None, help="model names (default: every model of --category)")
    p.add_argument("--category", default="general", help="registry category when --models is not given")
    p.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="only this card dataset")
    p.add_argument("--missing-only", action="store_true", help="skip cards already measured")
    p.add_argument("--render-only", action="store_true", help="only re-render the cards and plots")
    p.add_argument("--recbole-python", default=None)
    p.add_argument("--recbole-gnn", default=None, help="a RecBole-GNN checkout, for the cards whose reference it is")
    args = p.parse_args(argv)
    from recstudio.model.registry import list_models
    from recstudio.reporting.cards import plot_cards
    failed = []
    if not args.render_only:
        names = args.models or [m["name"] for m in list_models() if m["category"] == args.category]
        for name in names:
            for dataset in card_datasets(name):
                if args.dataset and dataset != args.dataset:
                    continue
                if args.missing_only and (CARDS / name / f"{dataset}.json").is_file():
                    continue
                card = card_settings(name, dataset)
                if not measure(name, dataset, card, args.recbole_python, args.recbole_gnn):
                    failed.append(f"{name}/{dataset}")
    subprocess.run([sys.executable, "-m", "recstudio", "docs"], check=True, cwd=str(ROOT))
    for dataset in sorted(DATASETS):
        for path in plot_cards(CARDS, dataset):
            print(f"plot: {path.relative_to(ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
