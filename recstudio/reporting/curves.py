"""The report of one run: ``metrics.csv`` (one row per epoch) and ``curves.png`` at the top of its run dir.

Figures are drawn on matplotlib's Agg canvas (no display, no global backend switch) and every
file is written through :func:`recstudio.utils.io.atomic_path`.
"""
from pathlib import Path
from typing import Dict, Optional, Union

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recstudio.reporting.epochs import WALL_TIME_COLUMN, epoch_table
from recstudio.utils.errors import ConfigError
from recstudio.utils.io import atomic_path

METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"


def best_epoch(table: pd.DataFrame, monitor: str, mode: str) -> Optional[int]:
    """The epoch with the best ``valid_<monitor>`` (the first one on a tie, as the best checkpoint keeps it).

    Args:
        table: an :func:`~recstudio.reporting.epochs.epoch_table`.
        monitor: the early-stop metric, e.g. ``"ndcg@10"``.
        mode: ``"max"`` or ``"min"``.

    Returns:
        the epoch number, or ``None`` when the metric was never validated.

    Example:
        >>> best_epoch(pd.DataFrame({"epoch": [0, 1, 2], "valid_ndcg@10": [0.1, 0.3, 0.2]}), "ndcg@10", "max")
        1
    """
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}.")
    column = f"valid_{monitor}"
    if column not in table.columns or table[column].isna().all():
        return None
    values = table[column]
    position = values.idxmax() if mode == "max" else values.idxmin()
    return int(table.loc[position, "epoch"])


def plot_curves(table: pd.DataFrame, monitor: str, mode: str, title: str = "") -> Figure:
    """Training loss (left) and validation metrics (right) against the epoch.

    The early-stop metric ``monitor`` is drawn thick and the best epoch is marked with a dashed
    line and a star. Without validation metrics the figure has the loss panel only.

    Args:
        table: an :func:`~recstudio.reporting.epochs.epoch_table` with a ``train_loss`` column.
        monitor: the early-stop metric, e.g. ``"ndcg@10"``.
        mode: ``"max"`` or ``"min"`` (which value of ``monitor`` is best).
        title: the figure's title.

    Example:
        >>> fig = plot_curves(epoch_table("runs/x/logs/metrics.csv"), "ndcg@10", "max")   # doctest: +SKIP
        >>> fig.savefig("curves.png")                                                       # doctest: +SKIP
    """
    valid = [c for c in table.columns if c.startswith("valid_")]
    fig = Figure(figsize=(11 if valid else 5.5, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if valid else 1, squeeze=False, sharex=True)[0]
    best = best_epoch(table, monitor, mode)
    loss = table.dropna(subset=["train_loss"])
    axes[0].plot(loss["epoch"], loss["train_loss"], marker="o", markersize=3, color="tab:blue")
    axes[0].set(title="training loss", xlabel="epoch", ylabel="loss")
    if valid:
        ax = axes[1]
        for column in valid:
            points = table.dropna(subset=[column])
            highlighted = column == f"valid_{monitor}"
            ax.plot(points["epoch"], points[column], marker="o", markersize=4 if highlighted else 2,
                    linewidth=2.8 if highlighted else 1.0, alpha=1.0 if highlighted else 0.6,
                    zorder=3 if highlighted else 2,
                    label=f"{column[len('valid_'):]} (early stop)" if highlighted else column[len("valid_"):])
        ax.set(title="validation metrics", xlabel="epoch", ylabel="value")
        if best is not None:
            value = float(table.loc[table["epoch"] == best, f"valid_{monitor}"].iloc[0])
            ax.scatter([best], [value], marker="*", s=220, color="gold", edgecolor="black", zorder=4,
                       label=f"best epoch {best}: {monitor} {value:.4f}")
        ax.legend(fontsize="small")
    if best is not None:
        for ax in axes:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def write_run_report(run_dir: Union[str, Path], monitor: str, mode: str) -> Dict[str, Path]:
    """Write ``metrics.csv`` and ``curves.png`` into ``run_dir`` from its ``logs/metrics.csv``.

    - ``metrics.csv``: :func:`~recstudio.reporting.epochs.epoch_table` (one row per epoch: epoch,
      train_loss, valid_<metric>..., wall_time_s).
    - ``curves.png``: :func:`plot_curves`, only for models trained over epochs (a ``train_loss``
      column). A closed-form model (e.g. EASE) gets a one-row ``metrics.csv`` (its validation
      metrics at epoch 0) and no plot: there is no curve to draw.

    Nothing is written when Lightning logged no training or validation row (e.g. a closed-form
    model without a validation split). Both files are written atomically.

    Args:
        run_dir: a run directory written by ``fit_model``.
        monitor: the early-stop metric (``early_stop_metric``), highlighted in the plot.
        mode: ``"max"`` or ``"min"``, how ``monitor`` improves.

    Returns:
        ``{"metrics": path, "curves": path}`` with the files written.

    Example:
        >>> write_run_report(model.run_dir, "ndcg@10", "max")   # doctest: +SKIP
        {'metrics': PosixPath('runs/BPR-.../metrics.csv'), 'curves': PosixPath('runs/BPR-.../curves.png')}
    """
    run_dir = Path(run_dir)
    source = run_dir / "logs" / "metrics.csv"
    if not source.is_file():
        return {}
    table = epoch_table(source)
    if table.empty:
        return {}
    written = {"metrics": run_dir / METRICS_FILE}
    with atomic_path(written["metrics"]) as tmp:
        table.to_csv(tmp, index=False)
    if "train_loss" in table.columns and table["train_loss"].notna().any():
        epochs = len(table)
        seconds = table[WALL_TIME_COLUMN].dropna() if WALL_TIME_COLUMN in table.columns else pd.Series([], dtype=float)
        timing = f", {seconds.iloc[-1]:.1f} s" if len(seconds) else ""
        fig = plot_curves(table, monitor, mode, title=f"{run_dir.name} ({epochs} epochs{timing})")
        written["curves"] = run_dir / CURVES_FILE
        with atomic_path(written["curves"]) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    return written
