"""Wiring a model to a Lightning Trainer: loaders, callbacks, loggers, checkpoints, test."""
import json
import logging
import sys
import warnings
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from recstudio.data.split import DataSplit
from recstudio.model.base.config import portable_config
from recstudio.train.distributed import (RunFolder, ShardedDataModule, check_distributed_support,
                                              epoch_mean_loss, ignore_reduced_metric_warnings, phase_results)
from recstudio.train.checkpoint import AtomicCheckpointIO, LastCheckpoint, ResumePlan
from recstudio.train.callbacks import (FlushLogsOnCheckpoint, ResumedCSVLogger,
                                                   ResumeState)
from recstudio.reporting.epochs import EpochClock
from recstudio.utils.errors import ConfigError
from recstudio.utils.io import atomic_path


class EpochPrinter(Callback):
    """Prints one line per validation (train loss, validation metrics, time) unless quiet."""

    def __init__(self, out=None):
        self.out = out  # None: sys.stdout when printing (a stream cannot be pickled into ddp_spawn workers)
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):  # after the module's on_validation_epoch_end
        if trainer.sanity_checking or pl_module.config["quiet"]:
            return
        loss = epoch_mean_loss(trainer, pl_module)  # every process takes part (a collective under DDP)
        if not trainer.is_global_zero:
            return
        vals = pl_module.eval_phase_results.get("valid", {})
        text = "  ".join(f"{k} {v:.4f}" for k, v in vals.items())
        loss_text = f"train loss {loss:.4f}  " if loss is not None else ""
        print(f"epoch {trainer.current_epoch:3d}  {loss_text}valid {text}  "
              f"({time.perf_counter() - self.start:.1f} s)", file=self.out or sys.stdout, flush=True)


def _run_dir(model, split: DataSplit, run_dir: Optional[Union[str, Path]]) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path(model.config["run_dir"]) / f"{model.model_name}-{split.dataset.name}-{stamp}"


def quiet_lightning(detail: bool) -> None:
    """Keep Lightning's banners, tips and known-harmless warnings out of light-mode output."""
    level = logging.INFO if detail else logging.WARNING
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(level)
    if not detail:
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        warnings.filterwarnings("ignore", message=".*returned `None`, this fit will run with no optimizer.*")


def make_trainer(model, run_dir: Path, has_valid: bool, callbacks: Sequence[Callback] = (),
                 resumed_epoch: Optional[int] = None) -> pl.Trainer:
    """A Trainer configured from ``model.config`` (``callbacks``: more callbacks to add).

    Checkpoints are written atomically (:class:`~recstudio.train.checkpoint.AtomicCheckpointIO`)
    and carry the random state (:class:`~recstudio.train.callbacks.ResumeState`);
    ``resumed_epoch`` (a resumed run's checkpoint epoch) keeps ``logs/metrics.csv``'s rows up to it.
    """
    cfg = model.config
    quiet_lightning(cfg["mode"] == "detail" and not cfg["quiet"])
    ignore_reduced_metric_warnings()
    callbacks = [EpochPrinter(), EpochClock(), ResumeState(cfg["early_stop_patience"]), FlushLogsOnCheckpoint(),
                 *callbacks]
    # last.ckpt after every validation (every epoch without a valid phase), for resuming; after best,
    # so that it holds best's state (a hard link to best.ckpt when that was written at the same step)
    best = None
    if has_valid:
        best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=model.monitor,
                               mode=model.monitor_mode, save_top_k=1)
        callbacks += [best, EarlyStopping(monitor=model.monitor, mode=model.monitor_mode,
                                          patience=cfg["early_stop_patience"], check_on_train_epoch_end=False)]
    last = LastCheckpoint(best, dirpath=run_dir / "checkpoints", filename="last", save_top_k=1)
    checkpoint = last if best is None else best
    callbacks.append(last)
    loggers = [CSVLogger(str(run_dir), name="", version="logs") if resumed_epoch is None
               else ResumedCSVLogger(str(run_dir), name="", version="logs", through_epoch=resumed_epoch)]
    if resumed_epoch is not None:  # a resumed run writes into its own checkpoints folder on purpose
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    try:
        from pytorch_lightning.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tensorboard"))
    except ImportError:
        pass
    detail = cfg["mode"] == "detail" and not cfg["quiet"]
    trainer = pl.Trainer(
        max_epochs=cfg["epochs"], accelerator=cfg["accelerator"], devices=cfg["devices"], strategy=cfg["strategy"],
        num_nodes=cfg.get("num_nodes", 1),
        precision=cfg["precision"], gradient_clip_val=cfg["gradient_clip"], check_val_every_n_epoch=cfg["val_every"],
        callbacks=callbacks, logger=loggers, enable_progress_bar=detail, enable_model_summary=detail,
        use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=str(run_dir),
        log_every_n_steps=1, deterministic=False, plugins=[AtomicCheckpointIO()],
        # evaluation under no_grad, not inference_mode: models cache what they compute while evaluating
        # (graph vectors, attention, index plans), and inference tensors could not enter a later training step
        inference_mode=False)
    trainer.recstudio_checkpoint = checkpoint
    return trainer


def fit_model(model, split: DataSplit, run_dir: Optional[Union[str, Path]] = None,
              resume: Optional["ResumePlan"] = None, callbacks: Sequence[Callback] = ()) -> Dict[str, float]:
    """Build ``model`` for ``split``, train it with early stopping and test its best checkpoint, with
    torch's intra-op threads set to ``num_threads`` meanwhile (see :func:`_fit_model`)."""
    threads = model.config.get("num_threads")
    if threads is None:
        return _fit_model(model, split, run_dir, resume, callbacks)
    if threads < 1:
        raise ConfigError(f"num_threads must be >= 1 (or null for torch's default), got {threads}.")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit_model(model, split, run_dir, resume, callbacks)
    finally:
        torch.set_num_threads(before)


def _fit_model(model, split: DataSplit, run_dir: Optional[Union[str, Path]] = None,
               resume: Optional["ResumePlan"] = None, callbacks: Sequence[Callback] = ()) -> Dict[str, float]:
    """Build ``model`` for ``split``, train it with early stopping and test its best checkpoint.

    Writes ``<run_dir>/config.yaml`` (the resolved config), ``logs/metrics.csv``, checkpoints
    ``best.ckpt`` / ``last.ckpt``, ``test_metrics.json``, and the per-epoch ``metrics.csv`` and
    ``curves.png`` (:func:`recstudio.reporting.curves.write_run_report`; see ``docs/runs.md``).

    Under several processes (``devices`` x ``num_nodes`` > 1, e.g. ``strategy: ddp``) every process
    runs this: each trains on its shard of the rows and evaluates its share of the users, the
    metric sums are all-reduced, global rank 0 writes the files into its run folder, and every
    process (and, for ``ddp_spawn``, the calling one) returns the same test metrics. See
    ``docs/distributed.md``.

    ``resume`` (:func:`~recstudio.train.checkpoint.plan_resume`) continues a run from its
    checkpoint in its own folder: weights, optimizer, scheduler, early stopping, best checkpoint,
    epoch and random state (see ``docs/checkpoints.md``).

    ``callbacks`` are added to the Trainer: the caller's reporting (an NNI trial passes
    :class:`~recstudio.tune.trial.TrialReporter`), so that training never imports ``tune``.
    """
    cfg = model.config
    if cfg["mode"] == "tune" and not any(getattr(c, "reports_trial", False) for c in callbacks):
        raise ConfigError("mode 'tune' reports metrics to an NNI trial, but no reporting callback was passed: run "
                          "it with recstudio.run(..., mode='tune') or python run.py --mode tune (they fetch the "
                          "trial's parameters and report), started only inside an NNI trial by bash tune.sh "
                          "config.yaml; or pass callbacks=[recstudio.tune.TrialReporter(metric)] to fit.")
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    folder = RunFolder(_run_dir(model, split, run_dir),
                       {"model": model.model_name, "dataset": split.dataset.name, **portable_config(cfg)})
    model.build(model.context_from(split))
    from recstudio.data.sessions import check_session_model  # [session-data] anonymous sessions: no user tables
    check_session_model(model, split)
    data = ShardedDataModule.for_split(model, split)  # loaders built per process, once the rank is known
    has_valid = len(split.valid) > 0
    model.eval_phase_results.pop("test", None)
    if model.fit_mode == "closed_form":
        if resume is not None:
            raise ConfigError(f"{model.model_name} is fitted in closed form: there is nothing to resume.")
        trainer = make_trainer(model, folder.run_dir, has_valid=False, callbacks=[folder, *callbacks])
        check_distributed_support(model, trainer)
        model.fit_closed_form(split)
        if has_valid:
            trainer.validate(model, datamodule=data, verbose=False)
        trainer.test(model, datamodule=data, verbose=False)
        trainer.save_checkpoint(folder.run_dir / "checkpoints" / "last.ckpt")
    else:
        trainer = make_trainer(model, folder.run_dir, has_valid, callbacks=[folder, *callbacks],
                               resumed_epoch=None if resume is None else resume.epoch)
        check_distributed_support(model, trainer)
        from recstudio.train.fused import fused_epoch_blockers
        fused, automatic = not fused_epoch_blockers(model, trainer), model.automatic_optimization
        model._fused_epochs, model.automatic_optimization = fused, automatic and not fused
        try:
            trainer.fit(model, datamodule=data, ckpt_path=None if resume is None else str(resume.checkpoint))
        finally:
            model._fused_epochs, model.automatic_optimization = False, automatic
        ckpt = trainer.recstudio_checkpoint
        best = ckpt.best_model_path if has_valid and ckpt.best_model_path else None
        trainer.test(model, datamodule=data, ckpt_path=best, verbose=False)
    results = phase_results(model, trainer, "test")
    if trainer.is_global_zero:
        with atomic_path(folder.run_dir / "test_metrics.json") as tmp:
            tmp.write_text(json.dumps(results, indent=1))
        from recstudio.reporting.curves import write_run_report  # matplotlib only when a run ends
        write_run_report(folder.run_dir, cfg["early_stop_metric"], model.monitor_mode)
    model.run_dir = folder.run_dir
    return results
