"""Lightning callbacks that make a run resumable (see ``docs/checkpoints.md``).

- :class:`ResumeState` saves the random state in every checkpoint and, when a run resumes,
  restores it, gives the loaders their epoch and applies the run's current early-stopping patience.
- :class:`FlushLogsOnCheckpoint` and :class:`ResumedCSVLogger` keep ``logs/metrics.csv`` complete
  across a kill and a resume.
"""
import csv
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, EarlyStopping
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from recstudio.train.checkpoint import RANDOM_STATE_KEY, capture_random_state, restore_random_state
from recstudio.utils.io import atomic_path


class ResumeState(Callback):
    """Saves and restores what Lightning's checkpoints leave out, and adapts a resumed run.

    Every checkpoint gets the random state (:func:`capture_random_state`, under
    :data:`RANDOM_STATE_KEY`). When ``Trainer.fit(ckpt_path=...)`` resumes:

    - at the start of training, early stopping gets the run's current ``early_stop_patience``
      (Lightning restores the old one) and the run stops at once if it had already stopped early
      under it;
    - at the start of the first resumed epoch it restores the random state, tells the training
      loaders Lightning cannot (e.g. WRMF's alternating loader) the epoch, and remakes the training
      iterator Lightning made before the epoch was known (a resumed Lightning run reuses the one
      made when the loaders were set up, and our loaders draw an epoch's order and negatives when
      the iterator is made).

    Args:
        patience: the run's ``early_stop_patience``.

    Example:
        >>> trainer = pl.Trainer(callbacks=[ResumeState(patience=10)])   # doctest: +SKIP
        >>> trainer.fit(model, datamodule=dm, ckpt_path="runs/x/checkpoints/last.ckpt")  # doctest: +SKIP
    """

    def __init__(self, patience: int):
        self.patience = int(patience)
        self._random_state: Optional[Dict[str, Any]] = None
        self._resumed_start = self._resumed_epoch = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        checkpoint[RANDOM_STATE_KEY] = capture_random_state(pl_module)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        self._random_state = checkpoint.get(RANDOM_STATE_KEY)
        self._resumed_start = self._resumed_epoch = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._resumed_start:
            return
        self._resumed_start = False
        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping):
                callback.patience = self.patience
                if callback.wait_count >= self.patience:  # it had stopped, and the patience is not raised
                    trainer.should_stop = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._resumed_epoch:
            return
        self._resumed_epoch = False
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if callable(getattr(loader, "set_epoch", None)):
                loader.set_epoch(trainer.current_epoch)
        if self._random_state is not None:
            restore_random_state(self._random_state, pl_module)
            self._random_state = None
        fit_loop = trainer.fit_loop
        fetcher = getattr(fit_loop, "_data_fetcher", None)
        if fetcher is not None and (fit_loop.is_resuming or fit_loop.epoch_loop.restarting):
            iter(fetcher)  # what Lightning does at the start of every epoch it does not resume into


# ---- the metrics CSV of a resumed run -----------------------------------------------------
class _KeptRowsWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps the rows of a resumed run's epochs up to its checkpoint
    (Lightning's deletes the file); later rows and test rows are dropped, they are logged again."""

    def __init__(self, log_dir: str, through_epoch: int):
        self._through_epoch = through_epoch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if _kept_row(r, self._through_epoch)]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        self.metrics_keys = fields


def _kept_row(row: Mapping[str, str], through_epoch: int) -> bool:
    if any(v not in (None, "") for k, v in row.items() if k and k.startswith("test/")):
        return False
    try:
        return int(float(row.get("epoch") or 0)) <= through_epoch
    except ValueError:
        return False


class ResumedCSVLogger(CSVLogger):
    """``CSVLogger`` of a resumed run: appends to ``metrics.csv`` after the rows of the epochs
    the checkpoint covers (``epoch <= through_epoch``).

    Args:
        save_dir, name, version: as for ``CSVLogger``.
        through_epoch: the epoch the resumed checkpoint was saved in.
    """

    def __init__(self, save_dir, name: str, version: str, through_epoch: int):
        super().__init__(save_dir, name=name, version=version)
        self.through_epoch = int(through_epoch)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptRowsWriter(self.log_dir, self.through_epoch)
        return self._experiment


class FlushLogsOnCheckpoint(Callback):
    """Writes the loggers' buffered rows whenever a checkpoint is saved and when an epoch starts
    (after the previous epoch's training loss was logged), so the metrics CSV of a killed run
    holds the epochs its last checkpoint covers (Lightning writes every 100 steps)."""

    def _flush(self, trainer: pl.Trainer) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.save()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        self._flush(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)


__all__ = ["ResumeState", "FlushLogsOnCheckpoint", "ResumedCSVLogger"]
