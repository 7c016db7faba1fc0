"""One row per epoch: the wall-time clock and the clean table derived from Lightning's CSV log.

Lightning's ``CSVLogger`` writes one row per logging event (the training loss, the validation
metrics and the test metrics of the same epoch land on separate rows, the other cells empty).
:func:`epoch_table` folds them into one row per epoch; :class:`EpochClock` adds the wall time.
"""
import time
from pathlib import Path
from typing import Optional, Union

import pandas as pd
from pytorch_lightning.callbacks import Callback

#: the key :class:`EpochClock` logs (seconds since training started, at the end of each epoch)
ELAPSED_KEY = "time/elapsed_s"
#: the column of :func:`epoch_table` holding :data:`ELAPSED_KEY`
WALL_TIME_COLUMN = "wall_time_s"


class EpochClock(Callback):
    """Logs the seconds since training started at the end of every training epoch.

    The value (validation included, since Lightning validates before an epoch ends) goes to every
    logger as ``time/elapsed_s``; under several processes it is the slowest process's time. It
    restarts at zero when a run is resumed in a new process.

    Example:
        >>> trainer = pl.Trainer(callbacks=[EpochClock()], logger=CSVLogger("runs/x"))  # doctest: +SKIP
    """

    def __init__(self):
        self.start: Optional[float] = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.start is None:
            return
        pl_module.log(ELAPSED_KEY, time.perf_counter() - self.start, on_step=False, on_epoch=True,
                      sync_dist=True, reduce_fx="max", batch_size=1)


def _column_name(key: str) -> str:
    if key == ELAPSED_KEY:
        return WALL_TIME_COLUMN
    return key.replace("/", "_")


def epoch_table(lightning_csv: Union[str, Path]) -> pd.DataFrame:
    """One row per epoch from a Lightning ``CSVLogger`` file (``<run_dir>/logs/metrics.csv``).

    Columns: ``epoch`` (0-based, as printed during training), ``train_loss`` (and any other
    ``train/<name>`` as ``train_<name>``), ``valid_<metric>`` for every validation metric and
    ``wall_time_s`` (seconds since training started, see :class:`EpochClock`) when logged. Test
    metrics and Lightning's ``step`` are left out; cells of epochs without a value (e.g. no
    validation that epoch, ``val_every`` > 1) stay empty. A closed-form model gives one row: its
    validation metrics at epoch 0.

    Args:
        lightning_csv: the CSV file Lightning's ``CSVLogger`` wrote.

    Returns:
        a DataFrame with a 0..n-1 index; empty (no columns) when nothing but test metrics was logged.

    Example:
        >>> table = epoch_table("runs/BPR-ml-100k-.../logs/metrics.csv")   # doctest: +SKIP
        >>> table[["epoch", "train_loss", "valid_ndcg@10"]].tail(1)         # doctest: +SKIP
    """
    raw = pd.read_csv(lightning_csv)
    if "epoch" not in raw.columns:
        return pd.DataFrame()
    keys = [c for c in raw.columns if c not in ("epoch", "step") and not c.startswith("test/")]
    rows = raw.dropna(subset=keys, how="all") if keys else raw.iloc[0:0]
    if rows.empty:
        return pd.DataFrame()
    # the last value of each column within an epoch (a resumed run may repeat an epoch)
    table = rows.groupby(rows["epoch"].astype(int))[keys].last().reset_index()
    table = table.dropna(axis=1, how="all")
    table.columns = [_column_name(c) for c in table.columns]
    order = sorted(table.columns, key=lambda c: (c != "epoch", c != "train_loss", not c.startswith("train_"),
                                                 not c.startswith("valid_"), c == WALL_TIME_COLUMN))
    return table[order]
