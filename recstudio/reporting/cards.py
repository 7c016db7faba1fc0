"""Reproducibility cards: each zoo model's measured test metrics beside RecBole's on the same split files.

A card's measurements are JSON files written by ``benchmarks/side_by_side.py`` (one per model and card
dataset: ``docs/cards/<Model>/<dataset>.json``: per-seed runs, mean and spread for both libraries, their
overrides, wall time, seconds per epoch, peak memory, the commit). This module renders them:

- ``docs/cards/<Model>.md``: the model's card (paper, protocol, both libraries' numbers, ratio, cost);
- ``docs/cards/README.md``: the table of every card;
- ``docs/cards/ndcg_by_model-<dataset>.png`` and ``quality_vs_time-<dataset>.png`` (:func:`plot_cards`).

``recstudio docs`` writes the markdown beside ``docs/models.md`` (and ``--check`` fails when it is stale);
``benchmarks/zoo.py`` runs the measurements and draws the plots.

Example:
    >>> from recstudio.reporting.cards import render_index
    >>> render_index({}).startswith("# Reproducibility cards")
    True
"""
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

CARDS_DIR = Path(__file__).resolve().parents[2] / "docs" / "cards"
#: metrics shown on a card, in this order
CARD_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10")


def load_measurements(cards_dir: Path = CARDS_DIR) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{model: {dataset: measurement}}`` from ``<cards_dir>/<Model>/<dataset>.json`` (sorted)."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    if not Path(cards_dir).is_dir():
        return out
    for path in sorted(Path(cards_dir).glob("*/*.json")):
        out.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return out


def _pm(agg: Mapping[str, Any], metric: str) -> str:
    if metric not in agg.get("mean", {}):
        return "-"
    text = f"{agg['mean'][metric]:.4f}"
    if len(agg.get("runs", [])) > 1:
        text += f" ± {agg['spread'][metric]:.4f}"
    return text


def _epochs(agg: Mapping[str, Any]) -> str:
    """The epochs and seconds-per-epoch cells; a model fitted in closed form shows its fit time instead."""
    if agg["epochs"]:
        return f"{agg['epochs']:.0f} | {agg['epoch_seconds']:.2f}"
    return f"closed form | fit {agg.get('fit_seconds', agg['seconds']):.1f} s"


def _per_epoch(agg: Mapping[str, Any]) -> str:
    """Seconds per epoch, or the fit time of a closed-form model."""
    if agg["epochs"]:
        return f"{agg['epoch_seconds']:.2f}"
    return f"fit {agg.get('fit_seconds', agg['seconds']):.1f}"


def _overrides(values: Mapping[str, Any]) -> str:
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted((values or {}).items())) or "defaults"


def reference_library(measurement: Mapping[str, Any]) -> str:
    """The reference side's library of a measurement: RecBole 1.2.1 unless it names another (RecBole-GNN), or
    the source of a published number (an ours-only card measured against a paper's or a library's figure)."""
    if not measurement.get("recbole") and measurement.get("published"):
        return f"published ({measurement['published']['source']})"
    return measurement.get("recbole_library") or "RecBole 1.2.1"


def reference_side(measurement: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    """The measured reference runs (``recbole``), else the published numbers, else None."""
    return measurement.get("recbole") or measurement.get("published")


def render_card(model: str, measurements: Mapping[str, Mapping[str, Any]], paper: str = "") -> str:
    """The markdown card of one model from its measurements ``{dataset: measurement}``."""
    lines = [f"# {model}", ""]
    if paper:
        lines += [f"Paper: {paper}", ""]
    lines += ["Measured by `benchmarks/side_by_side.py` (both libraries on the same split files, each run its own "
              "process; wall time includes imports and the data pipeline). Regenerate with `recstudio docs`.", ""]
    for dataset, m in measurements.items():
        rb = m.get("recbole")
        lines += [f"## {dataset}", "", f"Protocol: {m['protocol']}.", "",
                  f"Seeds {', '.join(map(str, m['seeds']))}; {m.get('threads', 1)} thread(s); commit {m['commit']}, "
                  f"{m['date']}.", ""]
        head = "| | " + " | ".join(CARD_METRICS) + " | epochs | s / epoch | s / run | peak MB |"
        lines += [head, "|" + "---|" * (len(CARD_METRICS) + 5)]
        libs = [("RecStudio", m["ours"])] + ([(f"{reference_library(m)} ({m['recbole_model']})", rb)] if rb else [])
        for name, agg in libs:
            lines.append(f"| {name} | " + " | ".join(_pm(agg, k) for k in CARD_METRICS) +
                         f" | {_epochs(agg)} | {agg['seconds']:.0f} | "
                         f"{agg['peak_mb']:.0f} |")
        published = None if rb else m.get("published")
        if published:
            lines.append(f"| {reference_library(m)} | " + " | ".join(_pm(published, k) for k in CARD_METRICS)
                         + " | | | | |")
        if rb or published:
            lines.append("| ratio | " + " | ".join(f"{m['ratio'][k]:.3f}" if k in m.get("ratio", {}) else "-"
                                                  for k in CARD_METRICS) + " | | | | |")
        lines += ["", f"RecStudio overrides: {_overrides(m.get('ours_overrides'))}."]
        if rb:
            lines.append(f"{reference_library(m)} overrides: {_overrides(m.get('recbole_overrides'))}.")
        elif published:
            lines.append("The reference is a published number on the protocol named above, not a run on these "
                         "split files.")
        else:
            lines.append("No reference side in this measurement (ours only): the note or the model's docstring "
                         "gives the paper's number.")
        if m.get("note"):
            lines += ["", f"Note: {m['note']}"]
        lines.append("")
    return "\n".join(lines)


def render_index(all_measurements: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """``docs/cards/README.md``: one row per (model, dataset) card."""
    lines = ["# Reproducibility cards", "",
             "<!-- generated by `recstudio docs` from docs/cards/<Model>/<dataset>.json; edit those -->", "",
             "Each card runs RecStudio and RecBole 1.2.1 (or, for the graph models RecBole lacks, RecBole-GNN on "
             "RecBole 1.2.1) on the same split files with the same protocol "
             "(`benchmarks/side_by_side.py`, `benchmarks/zoo.py`); test metrics, mean over the seeds listed. "
             "A reference marked *published* is a paper's or a library's number on the protocol the card names "
             "(the ml-1m sequential cards).", "",
             "| model | dataset | seeds | ours ndcg@10 | reference ndcg@10 | ratio | ours s / epoch | "
             "reference s / epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for model, per_dataset in all_measurements.items():
        for dataset, m in per_dataset.items():
            rb = m.get("recbole")
            ratio = m.get("ratio", {}).get("ndcg@10")
            ratio_text = f"{ratio:.3f}" if ratio else "-"
            ref = reference_side(m)
            rb_ndcg = _pm(ref, "ndcg@10") if ref else "-"
            if ref is not None and not rb:
                rb_ndcg += " (published)"
            lines.append(f"| [{model}]({model}.md) | {dataset} | {len(m['seeds'])} | {_pm(m['ours'], 'ndcg@10')} | "
                         f"{rb_ndcg} | {ratio_text} | {_per_epoch(m['ours'])} | {_per_epoch(rb) if rb else '-'} |")
    lines.append("")
    return "\n".join(lines)


def card_summary(model: str, cards_dir: Path = CARDS_DIR) -> Dict[str, Dict[str, Any]]:
    """``{dataset: {"ours": ndcg, "recbole": ndcg or None, "ratio": ...}}`` of a model's cards, for docs/models.md."""
    out = {}
    for dataset, m in load_measurements(cards_dir).get(model, {}).items():
        rb = reference_side(m)
        out[dataset] = {"ours": m["ours"]["mean"].get("ndcg@10"), "recbole": rb["mean"].get("ndcg@10") if rb else None,
                        "library": reference_library(m),
                        "ratio": m.get("ratio", {}).get("ndcg@10"), "seeds": len(m["seeds"])}
    return out


def render_all(cards_dir: Path = CARDS_DIR) -> Dict[Path, str]:
    """Every generated markdown file of ``cards_dir``: ``{path: text}``."""
    from recstudio.model.registry import get_model
    measured = load_measurements(cards_dir)
    files = {Path(cards_dir) / "README.md": render_index(measured)}
    for model, per_dataset in measured.items():
        try:
            paper = getattr(get_model(model), "paper", "") or ""
        except Exception:  # a card of a model no longer registered still renders
            paper = ""
        files[Path(cards_dir) / f"{model}.md"] = render_card(model, per_dataset, paper)
    return files


def plot_cards(cards_dir: Path = CARDS_DIR, dataset: str = "ml-100k") -> list:
    """Draw ``ndcg_by_model-<dataset>.png`` (ours beside RecBole per model) and ``quality_vs_time-<dataset>.png``
    (test ndcg@10 against seconds per run) for one card dataset (matplotlib); returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(model, d[dataset]) for model, d in load_measurements(cards_dir).items() if dataset in d]
    if not rows:
        return []
    rows.sort(key=lambda r: r[1]["ours"]["mean"].get("ndcg@10", 0.0))
    names = [r[0] for r in rows]
    ours = [r[1]["ours"]["mean"].get("ndcg@10", 0.0) for r in rows]
    theirs = [(r[1].get("recbole") or {}).get("mean", {}).get("ndcg@10", 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows)), 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], ours, width=0.4, label="RecStudio")
    ax.bar([x + 0.2 for x in xs], theirs, width=0.4, label="RecBole 1.2.1 (RecBole-GNN for its models)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60, ha="right")
    ax.set_ylabel("test ndcg@10")
    ax.set_title(f"{dataset}: same split files, same protocol")
    ax.legend()
    fig.tight_layout()
    bar = Path(cards_dir) / f"ndcg_by_model-{dataset}.png"
    fig.savefig(bar, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, m), y in zip(rows, ours):
        ax.scatter(m["ours"]["seconds"], y, color="C0")
        ax.annotate(name, (m["ours"]["seconds"], y), fontsize=7)
        if m.get("recbole"):
            ax.scatter(m["recbole"]["seconds"], m["recbole"]["mean"].get("ndcg@10", 0.0), color="C1", marker="x")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per run (o RecStudio, x RecBole)")
    ax.set_ylabel("test ndcg@10")
    ax.set_title(f"{dataset}: quality against training time")
    fig.tight_layout()
    scatter = Path(cards_dir) / f"quality_vs_time-{dataset}.png"
    fig.savefig(scatter, dpi=100)
    plt.close(fig)
    return [bar, scatter]
