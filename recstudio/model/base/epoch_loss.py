"""The training-loss bookkeeping every model shares: the epoch's weighted mean loss logged once per epoch,
solver steps counted in ``global_step``, and the fused-epoch blockers hook (mixed into
:class:`~recstudio.model.base.recommender.Recommender`)."""
from typing import List, Optional

import torch


class EpochLossMixin:
    """Mixin of :class:`~recstudio.model.base.recommender.Recommender` (before ``LightningModule``)."""

    def on_train_epoch_start(self):
        self._loss_sum, self._loss_count = 0.0, 0
        self._loss_weighted_sum, self._loss_examples = 0.0, 0

    def fused_epoch_blockers(self) -> List[str]:
        """Reasons this model must keep Lightning's per-step loop (see :mod:`recstudio.train.fused`); none here."""
        return []

    def _log_train_loss(self, value: float, batch_size: int, batch_idx: int, last: Optional[bool] = None) -> None:
        """Accumulate the epoch's training loss and hand Lightning one value per epoch.

        ``train/loss`` is the batch-size weighted mean of the epoch (reduced over DDP processes the
        same way). Lightning's ``self.log`` costs about half a millisecond per call, a sixth of a BPR
        step on ml-100k, so the weighted sum is kept here and logged once, at the epoch's last batch;
        when the number of batches is unknown (an iterable dataset) every step is logged instead.
        ``last`` says whether this is the epoch's last batch (default: from the trainer's batch count).
        """
        self._loss_sum += value
        self._loss_count += 1
        self._loss_weighted_sum = getattr(self, "_loss_weighted_sum", 0.0) + value * batch_size
        self._loss_examples = getattr(self, "_loss_examples", 0) + batch_size
        mean, examples = self._loss_weighted_sum / self._loss_examples, self._loss_examples
        if last is None:  # Lightning's per-step loop: the epoch ends at its number of batches
            batches = getattr(self._trainer, "num_training_batches", None) if self._trainer is not None else None
            if not isinstance(batches, int):  # unknown: log every step, Lightning takes the weighted mean
                mean, examples, last = value, batch_size, True
            else:
                last = batch_idx + 1 >= batches
        if not last:
            return
        self.log("train/loss", torch.tensor(mean), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=examples, sync_dist=True)

    def _count_solver_step(self) -> None:
        """Count an alternating batch as a step of Lightning's manual optimisation: ``global_step``
        counts optimizer steps, so without this it stays 0 for models without an optimizer and
        ``ModelCheckpoint`` (which skips a save when the step has not moved) never writes their
        checkpoints. The count is part of the loops' state, so it resumes too."""
        if self._trainer is None:
            return
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    @property
    def epoch_train_loss(self) -> Optional[float]:
        """Mean training loss of the current epoch so far (``None`` before any step)."""
        count = getattr(self, "_loss_count", 0)
        return self._loss_sum / count if count else None

    @staticmethod
    def _batch_size(batch) -> int:
        first = next(iter(batch.values()))
        return int(first.shape[0]) if first.ndim else 1
