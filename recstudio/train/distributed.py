"""Data-parallel (DDP) runs: per-process data shards, one run folder, files written by rank 0.

Under a multi-process strategy (``strategy: ddp`` and ``devices`` x ``num_nodes`` > 1) every
process runs the same :func:`~recstudio.train.trainer.fit_model`. This module holds what
makes that right (see ``docs/distributed.md``):

- :class:`ShardedDataModule` builds the loaders inside Lightning's ``*_dataloader()`` hooks, when
  the Trainer knows the world size and this process's rank: training rows are sharded
  (``IndexSampler(shard='rows')``), evaluation batches are dealt out whole
  (``shard='batches'``) and the metric sums are all-reduced by the accumulators.
- :class:`RunFolder` makes every process use global rank 0's run folder and writes
  ``config.yaml`` from rank 0 only.
- :func:`check_distributed_support` refuses ``fit_mode='alternating'`` models under DDP.
- :func:`phase_results` returns exact test metrics in the calling process, also when the
  run happened in spawned worker processes (``ddp_spawn`` / ``ddp_notebook``).
"""
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback

from recstudio.data.split import DataSplit
from recstudio.utils.errors import ConfigError
from recstudio.utils.io import atomic_path


class ShardedDataModule(pl.LightningDataModule):
    """The loaders of a run, built when Lightning asks for them (after the processes exist).

    Args:
        model: a built :class:`~recstudio.model.base.recommender.Recommender`.
        split: the data split it is trained and evaluated on.

    Each process trains on its own shard of every epoch's (shared, seeded) permutation of the
    training rows, ``batch_size`` rows per step *per process*; each evaluates every
    ``world_size``-th batch of ``eval_batch_size`` users, so the union over processes is exactly
    the single-process evaluation.

    Example:
        >>> dm = ShardedDataModule.for_split(model.build(DataMeta.from_split(split)), split)  # doctest: +SKIP
        >>> trainer.fit(model, datamodule=dm)
    """

    def __init__(self, model, split: DataSplit):
        super().__init__()
        self.model, self.split = model, split
        self._train_set = None

    def _replica(self) -> Dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def train_dataloader(self):
        model, cfg = self.model, self.model.config
        if self._train_set is None:
            self._train_set = model._get_dataset_class()(self.split, "train", seed=cfg["seed"],
                                                          **model._dataset_kwargs())
        loader = self._train_set.loader(cfg["batch_size"], shuffle=True, seed=cfg["seed"],
                                        num_workers=cfg["num_workers"], shard="rows", **self._replica())
        if getattr(model, "_fused_epochs", False):  # one Lightning batch per epoch (recstudio.train.fused)
            from recstudio.train.fused import FusedEpochLoader
            return FusedEpochLoader(loader)
        return loader

    def _eval_loader(self, phase: str):
        dataset = self.model._eval_dataset(self.split, phase)
        return dataset.loader(self.model.config["eval_batch_size"], shard="batches", **self._replica())

    def test_dataloader(self):
        return self._eval_loader("test")

    @staticmethod
    def for_split(model, split: DataSplit) -> "ShardedDataModule":
        """The data module of ``split``: with a validation loader only when the split has a valid phase
        (Lightning validates whenever a data module defines ``val_dataloader``)."""
        return (ValidatedDataModule if len(split.valid) > 0 else ShardedDataModule)(model, split)


class ValidatedDataModule(ShardedDataModule):
    """:class:`ShardedDataModule` with the valid phase's loader (sharded like the test loader)."""

    def val_dataloader(self):
        return self._eval_loader("valid")


class RunFolder(Callback):
    """One run folder for every process (global rank 0's), ``config.yaml`` written by rank 0.

    Each process of a ``ddp`` run started from the command line (or by ``torchrun`` / SLURM)
    computes its own time-stamped folder name; in :meth:`setup`, after the process group exists,
    rank 0's name is broadcast, given to the module as ``run_dir``, created and filled by rank 0.

    Args:
        run_dir: this process's candidate folder.
        config_doc: what ``config.yaml`` holds (model, dataset and the portable config).

    Example:
        >>> folder = RunFolder(Path("runs/BPR-ml-100k-..."), {"model": "BPR", "embed_dim": 64})  # doctest: +SKIP
        >>> pl.Trainer(callbacks=[folder]).fit(model, datamodule=dm); folder.run_dir
    """

    def __init__(self, run_dir: Union[str, Path], config_doc: Mapping[str, Any]):
        self.run_dir = Path(run_dir)
        self.config_doc = dict(config_doc)
        self._written = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        ignore_reduced_metric_warnings()  # again here: spawned workers start with fresh warning filters
        self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir)))
        pl_module.run_dir = self.run_dir
        if trainer.is_global_zero and not self._written:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.run_dir / "config.yaml") as tmp:
                Path(tmp).write_text(yaml.safe_dump(self.config_doc, sort_keys=False))
            self._written = True


def check_distributed_support(model, trainer: pl.Trainer) -> None:
    """Refuse, before anything runs, what is wrong under several processes.

    ``fit_mode='alternating'`` models (e.g. WRMF) update their own parameters in place, batch by
    batch, without gradients: DDP would let each process solve for a different shard and never
    merge them. Closed-form models are supported (every process solves the same problem; the
    evaluation is sharded).

    Raises:
        ConfigError: an alternating model with ``devices`` x ``num_nodes`` > 1.
    """
    if trainer.world_size > 1 and model.fit_mode == "alternating":
        raise ConfigError(f"{model.model_name} trains by alternating least squares (fit_mode 'alternating'), "
                          f"which does not run data-parallel: {trainer.world_size} processes would each update "
                          f"their own shard. Train it in one process (devices=1, num_nodes=1, strategy=auto).")


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (the one that prints), also before a Trainer exists:
    Lightning reads the rank from ``RANK`` / ``LOCAL_RANK`` / ``SLURM_PROCID`` and updates it when a
    strategy starts.

    Example:
        >>> is_global_zero()   # a plain single-process run
        True
    """
    from lightning_fabric.utilities.rank_zero import rank_zero_only
    return getattr(rank_zero_only, "rank", 0) == 0


def epoch_mean_loss(trainer: pl.Trainer, module) -> Optional[float]:
    """Mean training loss of the current epoch over every process's steps (``None`` before any step).

    A collective under DDP: every process must call it (the epoch printer does, before it checks
    whether it is the one that prints).
    """
    total, count = float(getattr(module, "_loss_sum", 0.0)), float(getattr(module, "_loss_count", 0))
    if trainer.world_size > 1:
        both = torch.tensor([total, count], dtype=torch.float64, device=trainer.strategy.root_device)
        total, count = trainer.strategy.reduce(both, reduce_op="sum").cpu().tolist()
    return total / count if count else None


def phase_results(model, trainer: pl.Trainer, phase: str) -> Dict[str, float]:
    """The metrics of ``phase`` from the last evaluation, in the calling process.

    When the evaluation ran here they are the module's (all-reduced) ``eval_phase_results``.
    When it ran in spawned workers (``ddp_spawn``, ``ddp_notebook``) the module here never saw
    them; Lightning sends ``trainer.callback_metrics`` back, where the module logged the same
    values as float64 tensors, so they come back exactly.

    Example:
        >>> model.eval_phase_results.pop("test", None); trainer.test(model, datamodule=dm)  # doctest: +SKIP
        >>> phase_results(model, trainer, "test")["ndcg@10"]
    """
    if phase in model.eval_phase_results:
        return dict(model.eval_phase_results[phase])
    prefix = f"{phase}/"
    return {k[len(prefix):]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def ignore_reduced_metric_warnings() -> None:
    """Lightning recommends ``sync_dist=True`` for epoch-level logs under DDP; the validation and
    test metrics are already all-reduced sums (identical on every process), so its warning about
    them is noise. Other metrics keep the warning."""
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(valid|test)/")


__all__: List[str] = ["ShardedDataModule", "ValidatedDataModule", "RunFolder", "check_distributed_support",
                      "is_global_zero", "epoch_mean_loss", "phase_results",
                      "ignore_reduced_metric_warnings"]
