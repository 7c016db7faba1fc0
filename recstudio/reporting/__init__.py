"""Run reports: the per-epoch table and curves of one run, and comparisons of several runs.

- :mod:`recstudio.reporting.epochs`: :class:`EpochClock` (logs the wall time of every epoch) and
  :func:`epoch_table` (one row per epoch from Lightning's ``logs/metrics.csv``).
- :mod:`recstudio.reporting.curves`: :func:`write_run_report` writes ``metrics.csv`` and
  ``curves.png`` at the top of a run directory (called by ``fit_model`` on global rank 0).
- :mod:`recstudio.reporting.compare`: :func:`compare_runs` (a DataFrame of the test metrics of
  several runs), :func:`format_comparison` and :func:`plot_comparison` (``recstudio compare``).

What a run directory holds: ``docs/runs.md``. This package never imports ``recstudio.model``.

Example:
    >>> import recstudio
    >>> table = recstudio.compare_runs(["runs/BPR-ml-100k-...", "runs/EASE-ml-100k-..."])  # doctest: +SKIP
    >>> table["ndcg@10"].idxmax()                                                          # doctest: +SKIP
"""
import importlib

#: public name -> the module defining it (imported on first use: Lightning and matplotlib are slow to import)
_HOMES = {"EpochClock": "epochs", "epoch_table": "epochs", "write_run_report": "curves", "plot_curves": "curves",
          "compare_runs": "compare", "format_comparison": "compare", "plot_comparison": "compare"}
__all__ = list(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"recstudio.reporting.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'recstudio.reporting' has no attribute {name!r}")
