"""Fused epochs: one Lightning step per training epoch, the epoch's batches stepped in a tight loop.

Lightning's per-batch machinery (the automatic-optimisation closure, every callback's per-batch hooks,
the logger connector, progress tracking) costs a few milliseconds per step on a CPU. For a small model
that is more than the step itself: BPR on ml-100k does 40 steps of about 3 ms per epoch. When nothing
in the run needs Lightning's per-batch hooks, :func:`fused_epoch_blockers` finds no blocker and the
trainer runs each epoch as **one** Lightning batch (:class:`FusedEpoch`) under manual optimisation:
:func:`run_fused_epoch` then does, for every batch of the epoch, what Lightning's automatic
optimisation does (the model's ``on_train_batch_start``, ``training_loss``, ``zero_grad``,
``backward``, the model's ``optimizer_step`` with that closure, the model's ``on_train_batch_end``)
and counts each optimizer step in ``global_step``. Batches, their order, the random draws and the
updates are the same as Lightning's per-step loop, so the parameters and metrics are identical
(``tests/train/test_fused_epochs.py`` checks it); validation, checkpoints, early stopping, resuming
and logging stay Lightning's, once per epoch.

A run keeps Lightning's per-step loop when any of these holds (each is a blocker):
the model is not optimised automatically (closed-form, alternating or manual models), several
processes train (DDP), a scheduler, gradient clipping, gradient accumulation or a precision other than
32-bit is configured, the model overrides ``training_step`` or a backward / zero-grad / optimizer-step
hook other than ``optimizer_step`` itself, a callback acts on a per-batch hook, the model declares a
blocker (:meth:`~recstudio.model.base.recommender.Recommender.fused_epoch_blockers`), or the config
says ``train_loop: per_step``.

A model's own ``on_train_batch_start`` / ``on_train_batch_end`` run for every batch of the epoch;
Lightning also calls them once per epoch with the :class:`FusedEpoch` as the batch, so they must do
nothing harmful for that call (the bases' cache invalidations are idempotent) or declare a blocker.

Example:
    >>> fused_epoch_blockers(model, trainer)        # doctest: +SKIP
    []
"""
from typing import Any, List

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

#: LightningModule hooks a fused epoch does not call per batch; a model overriding one keeps the per-step loop
UNFUSED_MODULE_HOOKS = ("training_step", "backward", "optimizer_zero_grad", "on_before_backward",
                        "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
                        "configure_gradient_clipping", "lr_scheduler_step", "on_before_batch_transfer",
                        "on_after_batch_transfer", "transfer_batch_to_device")
#: Callback hooks Lightning calls per batch; a callback acting on one keeps the per-step loop
PER_BATCH_CALLBACK_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward",
                            "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


class FusedEpoch:
    """The training batches of one epoch, handed to ``training_step`` as one Lightning batch.

    Args:
        loader: the epoch's training loader (iterating it draws the epoch's order and negatives).
    """

    def __init__(self, loader):
        self.loader = loader

    def train_epoch(self, model) -> None:
        """Called by ``Recommender.training_step`` with itself (see :func:`run_fused_epoch`)."""
        run_fused_epoch(model, self)


class FusedEpochLoader:
    """A training loader seen by Lightning as one batch per epoch.

    ``sampler`` is the inner loader's, so Lightning's ``set_epoch`` reaches it as before.

    Args:
        loader: the training loader (an :class:`~recstudio.data.types.base.EpochLoader`).
    """

    def __init__(self, loader):
        self.loader = loader
        self.sampler = getattr(loader, "sampler", None)
        self.dataset = getattr(loader, "dataset", None)

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield FusedEpoch(self.loader)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.loader, "set_epoch", None)):
            self.loader.set_epoch(epoch)


def _overrides(obj: Any, base: type, hook: str) -> bool:
    return getattr(type(obj), hook, None) is not getattr(base, hook, None)


def _callback_acts_per_batch(callback: Callback) -> bool:
    if isinstance(callback, ModelCheckpoint):  # its batch hook only saves on a step or time trigger
        return bool(callback._every_n_train_steps) or callback._train_time_interval is not None
    return any(_overrides(callback, Callback, hook) for hook in PER_BATCH_CALLBACK_HOOKS)


def fused_epoch_blockers(model, trainer: pl.Trainer) -> List[str]:
    """Why ``model`` cannot train with fused epochs under ``trainer`` (empty: it can).

    Args:
        model: a built :class:`~recstudio.model.base.recommender.Recommender`.
        trainer: the Trainer that will fit it.
    """
    from recstudio.model.base.recommender import Recommender
    cfg = model.config
    out = []
    if cfg.get("train_loop", "auto") == "per_step":
        out.append("train_loop is 'per_step'")
    if model.fit_mode != "gradient" or not model.automatic_optimization:
        out.append(f"{type(model).__name__} is not optimised automatically")
    if trainer.world_size > 1:
        out.append("several processes train")
    for key in ("scheduler", "gradient_clip"):
        if cfg.get(key) is not None:
            out.append(f"{key} is set")
    if trainer.accumulate_grad_batches != 1:
        out.append("gradients are accumulated")
    if str(trainer.precision) not in ("32-true", "32"):
        out.append(f"precision is {trainer.precision}")
    out += [f"{type(model).__name__} overrides {hook}" for hook in UNFUSED_MODULE_HOOKS
            if _overrides(model, Recommender, hook)]
    out += [f"callback {type(c).__name__} acts on every batch" for c in trainer.callbacks if _callback_acts_per_batch(c)]
    out += list(model.fused_epoch_blockers())
    return out


def run_fused_epoch(model, epoch: FusedEpoch) -> None:
    """Train ``model`` on every batch of ``epoch``, step by step, as Lightning's automatic optimisation would."""
    trainer = model.trainer
    optimizer = model.optimizers(use_pl_optimizer=False)
    strategy = trainer.strategy
    on_cpu = strategy.root_device.type == "cpu"
    batches = iter(epoch.loader)
    upcoming, i = next(batches, None), -1
    while upcoming is not None:  # one batch ahead, as Lightning's fetcher, to know the epoch's last
        batch, upcoming, i = upcoming, next(batches, None), i + 1
        if not on_cpu:
            batch = strategy.batch_to_device(batch)
        model.on_train_batch_start(batch, i)
        out = {}

        def closure():
            loss = model.training_loss(batch)
            optimizer.zero_grad()
            if loss is not None:
                loss.backward()
            out["loss"] = loss
            return loss

        model.optimizer_step(trainer.current_epoch, i, optimizer, closure)
        model._count_solver_step()
        loss = out.get("loss")
        if loss is not None:
            model._log_train_loss(float(loss.detach()), model._batch_size(batch), i, last=upcoming is None)
        model.on_train_batch_end(loss, batch, i)
    if i > 0:  # the loggers' step axis counts batches: Lightning adds the one it saw, this adds the rest
        trainer.fit_loop.epoch_loop._batches_that_stepped += i


__all__ = ["FusedEpoch", "FusedEpochLoader", "fused_epoch_blockers", "run_fused_epoch",
           "UNFUSED_MODULE_HOOKS", "PER_BATCH_CALLBACK_HOOKS"]
