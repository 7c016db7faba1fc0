"""Wiring a model to a Lightning Trainer: loaders, callbacks, loggers, checkpoints, test."""
import json
import logging
import sys
import warnings
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional, Union

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from recstudio.data.split import DataSplit
from recstudio.model.base.config import portable_config
from recstudio.model.base.meta import DataMeta


class EpochPrinter(Callback):
    """Prints one line per validation (train loss, validation metrics, time) unless quiet."""

    def __init__(self, out=sys.stdout):
        self.out = out
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):  # after the module's on_validation_epoch_end
        if trainer.sanity_checking or pl_module.config["quiet"]:
            return
        loss = pl_module.epoch_train_loss
        vals = pl_module.eval_phase_results.get("valid", {})
        text = "  ".join(f"{k} {v:.4f}" for k, v in vals.items())
        loss_text = f"train loss {loss:.4f}  " if loss is not None else ""
        print(f"epoch {trainer.current_epoch:3d}  {loss_text}valid {text}  "
              f"({time.perf_counter() - self.start:.1f} s)", file=self.out, flush=True)


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


def make_trainer(model, run_dir: Path, has_valid: bool) -> pl.Trainer:
    """A Trainer configured from ``model.config``."""
    cfg = model.config
    quiet_lightning(cfg["mode"] == "detail" and not cfg["quiet"])
    callbacks = [EpochPrinter()]
    checkpoint = None
    if has_valid:
        checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=model.monitor,
                                     mode=model.monitor_mode, save_top_k=1, save_last=True)
        callbacks += [checkpoint, EarlyStopping(monitor=model.monitor, mode=model.monitor_mode,
                                                patience=cfg["early_stop_patience"], check_on_train_epoch_end=False)]
    else:
        checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=0,
                                     save_last=True)
        callbacks.append(checkpoint)
    loggers = [CSVLogger(str(run_dir), name="", version="logs")]
    try:
        from pytorch_lightning.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tensorboard"))
    except ImportError:
        pass
    detail = cfg["mode"] == "detail" and not cfg["quiet"]
    trainer = pl.Trainer(
        max_epochs=cfg["epochs"], accelerator=cfg["accelerator"], devices=cfg["devices"], strategy=cfg["strategy"],
        precision=cfg["precision"], gradient_clip_val=cfg["gradient_clip"], check_val_every_n_epoch=cfg["val_every"],
        callbacks=callbacks, logger=loggers, enable_progress_bar=detail, enable_model_summary=detail,
        use_distributed_sampler=False, num_sanity_val_steps=0, default_root_dir=str(run_dir),
        log_every_n_steps=1, deterministic=False)
    trainer.recstudio_checkpoint = checkpoint
    return trainer


def fit_model(model, split: DataSplit, run_dir: Optional[Union[str, Path]] = None) -> Dict[str, float]:
    """Build ``model`` for ``split``, train it with early stopping and test its best checkpoint.

    Writes ``<run_dir>/config.yaml`` (the resolved config), ``logs/metrics.csv``, checkpoints
    ``best.ckpt`` / ``last.ckpt`` and ``test_metrics.json``.
    """
    cfg = model.config
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    run_dir = _run_dir(model, split, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"model": model.model_name, "dataset": split.dataset.name,
                                                         **portable_config(cfg)}, sort_keys=False))
    model.build(DataMeta.from_split(split))
    train_loader = None
    if model.fit_mode != "closed_form":
        train_set = model._get_dataset_class()(split, "train", seed=cfg["seed"], **model._dataset_kwargs())
        train_loader = train_set.loader(cfg["batch_size"], shuffle=True, seed=cfg["seed"],
                                        num_workers=cfg["num_workers"])
    has_valid = len(split.valid) > 0
    valid_loader = model._eval_dataset(split, "valid").loader(cfg["eval_batch_size"]) if has_valid else None
    test_loader = model._eval_dataset(split, "test").loader(cfg["eval_batch_size"])
    if model.fit_mode == "closed_form":
        model.fit_closed_form(split)
        trainer = make_trainer(model, run_dir, has_valid=False)
        if has_valid:
            trainer.validate(model, valid_loader, verbose=False)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")
        trainer.test(model, test_loader, verbose=False)
    else:
        trainer = make_trainer(model, run_dir, has_valid)
        trainer.fit(model, train_loader, valid_loader)
        ckpt = trainer.recstudio_checkpoint
        best = ckpt.best_model_path if has_valid and ckpt.best_model_path else None
        trainer.test(model, test_loader, ckpt_path=best, verbose=False)
    results = dict(model.eval_phase_results.get("test", {}))
    (run_dir / "test_metrics.json").write_text(json.dumps(results, indent=1))
    model.run_dir = run_dir
    return results
