"""Compare the test metrics of several runs: a DataFrame, a text table and a grouped bar chart.

A *run directory* is what ``fit_model`` writes (``docs/runs.md``); what is compared is its
``test_metrics.json``, labelled with the model and dataset from its ``config.yaml``.
Runs with different metric sets keep every metric: a run lacking one has an empty (NaN) cell.
"""
import glob
import json
import math
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import pandas as pd
import yaml

from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.io import atomic_path

PathLike = Union[str, os.PathLike]
TEST_METRICS_FILE = "test_metrics.json"
RUN_DIR_CONTENTS = ("a run directory is what a finished run writes (e.g. runs/BPR-ml-100k-<time>/): "
                    "config.yaml, test_metrics.json, metrics.csv, logs/ and checkpoints/")


def _is_run_dir(path: Path) -> bool:
    return (path / TEST_METRICS_FILE).is_file()


def find_runs(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    """The run directories named by ``paths``, in order, each once.

    Each entry may be a run directory, a folder whose sub-folders are runs (e.g. ``runs/``, taken
    in name order) or a glob pattern (``runs/BPR-*``: the run directories among its matches).

    Args:
        paths: one entry (a string or a path) or several.

    Raises:
        DataError: an entry that is none of these, naming it and what a run directory contains.

    Example:
        >>> find_runs(["runs/BPR-ml-100k-20250101-120000-000000", "runs/EASE-*"])   # doctest: +SKIP
        [PosixPath('runs/BPR-ml-100k-...'), PosixPath('runs/EASE-ml-100k-...')]
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not entries:
        raise DataError(f"no run directories given: name at least one ({RUN_DIR_CONTENTS}).")
    found: List[Path] = []
    for entry in entries:
        text = str(entry)
        if not any(c in text for c in "*?["):  # not a glob pattern
            found += _runs_at(Path(text))
            continue
        matches = [Path(m) for m in sorted(glob.glob(text)) if _is_run_dir(Path(m))]
        if not matches:
            raise DataError(f"the pattern {text!r} matches no run directory; {RUN_DIR_CONTENTS}.")
        found += matches
    unique: Dict[Path, Path] = {}
    for run in found:
        unique.setdefault(run.resolve(), run)
    return list(unique.values())


def _runs_at(path: Path) -> List[Path]:
    if _is_run_dir(path):
        return [path]
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist; {RUN_DIR_CONTENTS}.")
    if not path.is_dir():
        raise DataError(f"{str(path)!r} is a file, not a run directory; {RUN_DIR_CONTENTS}.")
    children = sorted(p for p in path.iterdir() if p.is_dir() and _is_run_dir(p))
    if children:
        return children
    if (path / "config.yaml").is_file():
        raise DataError(f"{str(path)!r} has no {TEST_METRICS_FILE}: that run did not finish (it was stopped or "
                        f"failed before testing). Compare finished runs; {RUN_DIR_CONTENTS}.")
    raise DataError(f"{str(path)!r} is not a run directory (no {TEST_METRICS_FILE}) and holds none; "
                    f"{RUN_DIR_CONTENTS}.")


def load_run(run_dir: PathLike) -> Dict[str, object]:
    """``{"path", "model", "dataset", "metrics"}`` of one run directory.

    ``model`` and ``dataset`` come from ``config.yaml`` (``"?"`` when it is missing).

    Args:
        run_dir: one run directory.

    Raises:
        DataError: no ``test_metrics.json``, or one that is not a JSON object of numbers.

    Example:
        >>> load_run("runs/EASE-ml-100k-...")["metrics"]["ndcg@10"]   # doctest: +SKIP
        0.3284
    """
    path = Path(run_dir)
    source = path / TEST_METRICS_FILE
    if not source.is_file():
        _runs_at(path)  # raises the error that says what is wrong with this folder, unless it holds runs
        raise DataError(f"{str(path)!r} is a folder of runs, not one run directory; "
                        f"compare_runs / find_runs take such folders.")
    try:
        metrics = json.loads(source.read_text())
    except ValueError as e:
        raise DataError(f"{source} is not valid JSON ({e}); re-run the model or delete that run directory.") from e
    if not isinstance(metrics, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
        raise DataError(f"{source} should map metric names to numbers, e.g. {{\"ndcg@10\": 0.31}}; "
                        f"re-run the model or delete that run directory.")
    config = {}
    if (path / "config.yaml").is_file():
        try:
            config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        except yaml.YAMLError as e:
            raise DataError(f"{path / 'config.yaml'} is not valid YAML ({e}).") from e
    return {"path": path, "model": str(config.get("model", "?")), "dataset": str(config.get("dataset", "?")),
            "metrics": {str(k).lower(): float(v) for k, v in metrics.items()}}


def compare_runs(paths: Union[PathLike, Iterable[PathLike]], metrics: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """The test metrics of several runs: one row per run, one column per metric.

    Args:
        paths: run directories, folders of runs or glob patterns (see :func:`find_runs`).
        metrics: the columns to keep, in this order (case-insensitive); default every metric of
            any run, in the order they first appear. A run without one of them has NaN there.

    Returns:
        a DataFrame indexed by ``model/dataset/run-dir-name`` labels; ``df.attrs["paths"]`` maps
        each label to its run directory.

    Raises:
        DataError: a path that is not a run directory (see :func:`find_runs`).
        ConfigError: a metric that no run has, listing those they have.

    Example:
        >>> import recstudio
        >>> recstudio.compare_runs("runs/", metrics=["ndcg@10", "recall@10"])   # doctest: +SKIP
                                                   ndcg@10  recall@10
        run
        BPR/ml-100k/BPR-ml-100k-20250101-...        0.2712     0.2201
        EASE/ml-100k/EASE-ml-100k-20250101-...      0.3284     0.2787
    """
    runs = [load_run(p) for p in find_runs(paths)]
    available: List[str] = []
    for run in runs:
        available += [m for m in run["metrics"] if m not in available]
    if metrics is None:
        columns = available
    else:
        columns = [str(m).lower() for m in metrics]
        unknown = [m for m in columns if m not in available]
        if not columns or unknown:
            raise ConfigError(f"unknown metric(s) {unknown or list(metrics)}: the runs have {available}. "
                              f"Pick among those (e.g. --metrics {' '.join(available[:2])}).")
    labels = _labels(runs)
    table = pd.DataFrame([[run["metrics"].get(m, math.nan) for m in columns] for run in runs],
                         index=pd.Index(labels, name="run"), columns=columns, dtype=float)
    table.attrs["paths"] = {label: run["path"] for label, run in zip(labels, runs)}
    return table


def _labels(runs: List[Dict[str, object]]) -> List[str]:
    labels = [f"{r['model']}/{r['dataset']}/{Path(r['path']).name}" for r in runs]
    if len(set(labels)) < len(labels):  # same folder name under different parents: add the parent
        labels = [f"{r['model']}/{r['dataset']}/{Path(r['path']).parent.name}/{Path(r['path']).name}"
                  for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


def higher_is_better(metric: str) -> bool:
    """:func:`recstudio.eval.higher_is_better`, imported when first needed (it loads torch)."""
    from recstudio.eval import higher_is_better as registered
    return registered(metric)


def best_labels(table: pd.DataFrame) -> Dict[str, List[str]]:
    """For every metric column, the labels of the runs with the best value (ties: all of them);
    none where fewer than two runs have a value.

    Args:
        table: a :func:`compare_runs` DataFrame.

    Example:
        >>> best_labels(pd.DataFrame({"rmse": [0.9, 0.8], "ndcg@10": [0.3, 0.3]}, index=["a", "b"]))
        {'rmse': ['b'], 'ndcg@10': ['a', 'b']}
    """
    best = {}
    for column in table.columns:
        values = table[column].dropna()
        if len(values) < 2:
            best[column] = []
            continue
        target = values.max() if higher_is_better(column) else values.min()
        best[column] = list(values.index[values == target])
    return best


def format_comparison(table: pd.DataFrame, digits: int = 4) -> str:
    """A text table of :func:`compare_runs`: the best value of each column marked ``*``, missing cells ``-``.

    Args:
        table: a :func:`compare_runs` DataFrame.
        digits: decimals shown.

    Example:
        >>> print(format_comparison(compare_runs(["runs/a", "runs/b"])))   # doctest: +SKIP
        run                     ndcg@10  recall@10
        BPR/ml-100k/a            0.2712     0.2201
        EASE/ml-100k/b          0.3284*    0.2787*
    """
    best = best_labels(table)
    cells = {c: [(f"{v:.{digits}f}" + ("*" if label in best[c] else " ")) if not math.isnan(v) else "- "
                 for label, v in table[c].items()] for c in table.columns}
    label_width = max([len("run")] + [len(str(label)) for label in table.index])
    widths = {c: max(len(c) + 1, *(len(s) for s in cells[c])) for c in table.columns}
    lines = ["run".ljust(label_width) + "".join("  " + c.rjust(widths[c] - 1) + " " for c in table.columns)]
    for row, label in enumerate(table.index):
        lines.append(str(label).ljust(label_width) + "".join("  " + cells[c][row].rjust(widths[c])
                                                            for c in table.columns))
    notes = ["* best in its column"] if any(best.values()) else []
    lower = [c for c in table.columns if not higher_is_better(c)]
    if lower:
        notes.append(f"(lower is better for {', '.join(lower)})")
    if table.isna().to_numpy().any():
        notes.append("- : the run has no such metric (its runs were evaluated with different metrics)")
    return "\n".join(lines + (["", "  ".join(notes)] if notes else []))


def chart_format(output: PathLike) -> str:
    """The image format matplotlib writes for ``output``'s suffix (``"png"`` for ``chart.png``).

    Args:
        output: the chart's file name.

    Raises:
        ConfigError: a suffix matplotlib cannot write, listing those it can.

    Example:
        >>> chart_format("out/compare.svg")
        'svg'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fmt = Path(output).suffix.lstrip(".").lower()
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in supported:
        raise ConfigError(f"cannot write a chart to {str(output)!r}: the file name should end in one of "
                          f"{', '.join('.' + s for s in sorted(supported))} (e.g. compare.png).")
    return fmt


def plot_comparison(table: pd.DataFrame, output: PathLike) -> Path:
    """Draw a grouped bar chart of :func:`compare_runs` (one group per metric, one bar per run)
    and write it atomically to ``output`` (its suffix picks the format: png, svg, pdf, ...).

    Args:
        table: a :func:`compare_runs` DataFrame (missing values leave a gap).
        output: the chart's file; its folder is created if needed.

    Raises:
        ConfigError: an output suffix matplotlib cannot write, listing those it can.

    Example:
        >>> plot_comparison(compare_runs("runs/"), "compare.png")   # doctest: +SKIP
        PosixPath('compare.png')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    output = Path(output)
    fmt = chart_format(output)
    fig = Figure(figsize=(max(6.0, 1.2 + len(table.columns) * (0.5 + 0.35 * len(table))), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(table), 1)
    best = best_labels(table)
    handles = []
    for i, (label, row) in enumerate(table.iterrows()):
        xs = [j + (i - (len(table) - 1) / 2) * width for j in range(len(table.columns))]
        bars = ax.bar(xs, row.fillna(0.0).to_numpy(), width=width * 0.95)
        handles.append(Patch(facecolor=bars.patches[0].get_facecolor(), label=label))
        for bar, column, value in zip(bars, table.columns, row):
            if math.isnan(value):
                bar.set_visible(False)  # no such metric in this run: leave a gap
            elif label in best[column]:
                bar.set_edgecolor("black")
                bar.set_linewidth(1.6)
                ax.annotate("*", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom")
    ax.set_xticks(range(len(table.columns)), table.columns)
    ax.set(ylabel="test value", title="test metrics (* best)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1),
              ncol=1 if len(table) > 3 else len(table))
    with atomic_path(output, suffix=output.suffix) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)
    return output
