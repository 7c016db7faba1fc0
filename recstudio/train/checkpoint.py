"""Checkpoints: atomic writes, the state Lightning's checkpoints leave out, finding and resuming runs.

- :class:`AtomicCheckpointIO` is the Trainer's checkpoint plugin: every ``last.ckpt`` /
  ``best.ckpt`` is written to a temporary file beside it, flushed to disk and renamed over the
  old one, so a crash (even ``SIGKILL``) while saving leaves the previous checkpoint intact.
- :func:`capture_random_state` / :func:`restore_random_state` cover every random number
  generator a training step may draw from (torch, CUDA, numpy, python, and each
  ``torch.Generator`` a module keeps, e.g. a sampler's); the callbacks of
  :mod:`recstudio.train.callbacks` save them in each checkpoint and put them back
  when a run resumes, so a resumed run draws what the uninterrupted one would have drawn.
- :func:`find_checkpoint`, :func:`read_checkpoint` and :func:`plan_resume` turn a run folder or
  checkpoint file into what ``python run.py --resume`` / ``recstudio.run(resume=...)`` needs.

See ``docs/checkpoints.md``.
"""
import logging
import random
from weakref import proxy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.io import atomic_path

log = logging.getLogger(__name__)

#: checkpoint key of the random state (saved by ``resume_callbacks.ResumeState``)
RANDOM_STATE_KEY = "recstudio_random_state"

#: config keys a resumed run may change: they change how a run is executed, never the model, its
#: data or its optimisation (everything else must equal the checkpoint's config)
RESUMABLE_KEYS = frozenset({"epochs", "early_stop_patience", "quiet", "mode", "num_workers", "devices",
                            "accelerator", "strategy", "num_nodes", "eval_batch_size", "num_threads",
                            "train_loop"})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose saves are atomic and durable.

    The checkpoint goes to a temporary ``.<name>.<random>.part`` file in the same folder, which is
    ``fsync``-ed and renamed over ``path`` (:func:`recstudio.utils.io.atomic_path` with
    ``durable=True``); if anything fails the temporary file is removed and ``path`` keeps its
    previous content. A process killed mid-save may leave a ``.part`` file, never a partial
    checkpoint (:func:`remove_partial_files` clears them when the run resumes).

    Example:
        >>> trainer = pl.Trainer(plugins=[AtomicCheckpointIO()])    # doctest: +SKIP
    """

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r}).")
        with atomic_path(path, durable=True) as tmp:
            torch.save(checkpoint, tmp)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every validation (every epoch without a valid phase), for resuming.

    Lightning's ``save_last`` writes it only when the monitored checkpoint improves; this writes it at
    every check. When ``best`` (the monitored :class:`ModelCheckpoint`) has just written its file at
    this same step, the two would hold the same state, so ``last.ckpt`` becomes a hard link to that
    file — put in place atomically — instead of a second serialisation: half the checkpoint writes of
    an improving run. A later ``best.ckpt`` is renamed over its own name, so the linked ``last.ckpt``
    keeps its content, as a copy would. Where the filesystem has no hard links, it is written in full.

    Args:
        best: the monitored checkpoint callback, or ``None`` (every save is written in full).
        **kwargs: :class:`ModelCheckpoint`'s arguments.

    Example:
        >>> best = ModelCheckpoint(dirpath="ckpts", filename="best", monitor="valid/mrr@10", mode="max")
        >>> last = LastCheckpoint(best, dirpath="ckpts", filename="last", save_top_k=1)
    """

    def __init__(self, best: Optional[ModelCheckpoint] = None, **kwargs):
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(**kwargs)
        self.best = best

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        best = self.best
        source = getattr(best, "_last_checkpoint_saved", "") if best is not None else ""
        if (source and trainer.world_size == 1 and not self.save_weights_only
                and getattr(best, "_last_global_step_saved", None) == trainer.global_step
                and Path(source).is_file() and _link_atomically(source, filepath)):
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = filepath
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
            return
        super()._save_checkpoint(trainer, filepath)


def _link_atomically(source: Union[str, Path], path: Union[str, Path]) -> bool:
    """Make ``path`` a hard link to ``source`` (a temporary link renamed over ``path``); ``False``
    where hard links are not possible (then nothing changed)."""
    import os
    import secrets
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.part"  # cleared by remove_partial_files
    try:
        os.link(source, tmp)
    except OSError:
        return False
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def remove_partial_files(folder: Union[str, Path]) -> None:
    """Delete the temporary ``.*.part`` files an interrupted atomic save left in ``folder``."""
    for part in Path(folder).glob(".*.part"):
        part.unlink(missing_ok=True)


# ---- random state -------------------------------------------------------------------------
def _module_generators(module: torch.nn.Module) -> Dict[str, torch.Generator]:
    """``"<module path>.<attribute>" -> generator`` for every ``torch.Generator`` a submodule holds."""
    found = {}
    for name, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                found[f"{name}.{attr}" if name else attr] = value
    return found


def capture_random_state(module: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
    """The state of every random number generator a training step may draw from.

    Args:
        module: also capture the ``torch.Generator`` attributes of its submodules (samplers).

    Returns:
        plain types and tensors only (loadable with ``torch.load(weights_only=True)``).

    Example:
        >>> state = capture_random_state(); a = torch.rand(2)
        >>> restore_random_state(state); bool((torch.rand(2) == a).all())
        True
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "generators": {k: g.get_state() for k, g in _module_generators(module).items()} if module else {}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: Mapping[str, Any], module: Optional[torch.nn.Module] = None) -> None:
    """Put back what :func:`capture_random_state` captured (module generators by their path).

    Raises:
        DataError: ``module`` lacks a generator the state holds (a different model).
    """
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if module is not None:
        generators = _module_generators(module)
        missing = sorted(set(state["generators"]) - set(generators))
        if missing:
            raise DataError(f"the checkpoint holds random generators {missing} that {type(module).__name__} "
                            "does not have: it was written by a different model.")
        for name, gen_state in state["generators"].items():
            generators[name].set_state(gen_state)


# ---- finding and reading checkpoints ------------------------------------------------------
def find_checkpoint(path: Union[str, Path], prefer: Sequence[str] = ("last.ckpt",)) -> Path:
    """The checkpoint file ``path`` names: the file itself, or in a run folder (or its
    ``checkpoints/`` folder) the first of ``prefer`` that exists.

    Raises:
        DataError: ``path`` does not exist, or the folder holds none of ``prefer``.

    Example:
        >>> find_checkpoint("runs/BPR-ml-100k-...", prefer=("best.ckpt", "last.ckpt"))   # doctest: +SKIP
        PosixPath('runs/BPR-ml-100k-.../checkpoints/best.ckpt')
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(f"checkpoint or run folder {path} does not exist.")
    for folder in (path / "checkpoints", path):
        for name in prefer:
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"run folder {path} has no {' or '.join(prefer)} in {path / 'checkpoints'}: the run "
                    "stopped before its first checkpoint (written after each validation). Start it again.")


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """A RecStudio checkpoint's contents (tensors on the CPU).

    Raises:
        DataError: missing, unreadable or truncated, or not written by RecStudio.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file
        raise DataError(f"cannot read checkpoint {path} (corrupt or not a checkpoint): {e}") from e
    if not isinstance(ckpt, dict) or "recstudio" not in ckpt:
        raise DataError(f"{path} is not a RecStudio checkpoint (no 'recstudio' section).")
    return ckpt


def resumed_model_name(path: Union[str, Path]) -> str:
    """The model name of the run ``path`` (a run folder or checkpoint) names; cheap when the run
    folder's ``config.yaml`` is there (used to build the command line's options)."""
    ckpt = find_checkpoint(path)
    doc = _run_config_doc(ckpt)
    return doc.get("model") or read_checkpoint(ckpt)["recstudio"]["model"]


def _is_registered_dataset(name: str) -> bool:
    from recstudio.data.registry import get_spec
    from recstudio.utils.errors import DatasetNotFoundError
    try:
        get_spec(name)
    except DatasetNotFoundError:
        return False
    return True


def _run_config_doc(ckpt: Path) -> Dict[str, Any]:
    config_file = ckpt.resolve().parent.parent / "config.yaml"
    if not config_file.is_file():
        return {}
    try:
        doc = yaml.safe_load(config_file.read_text())
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


# ---- resuming ----------------------------------------------------------------------------
def resume_config(saved: Mapping[str, Any], overrides: Mapping[str, Any], model_name: str) -> Dict[str, Any]:
    """The saved config with ``overrides`` applied, where only :data:`RESUMABLE_KEYS` may change.

    Raises:
        ConfigError: an override of any other key with a different value, or an unknown key.

    Example:
        >>> resume_config({"epochs": 10, "embed_dim": 64}, {"epochs": 50}, "BPR")["epochs"]
        50
    """
    from recstudio.utils.suggest import did_you_mean
    unknown = [k for k in overrides if k not in saved]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} for {model_name}." + did_you_mean(unknown[0], saved))
    changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE_KEYS and saved[k] != v)
    if changed:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {overrides[k]!r}" for k in changed)
        raise ConfigError(f"a resumed run cannot change {detail}: it would change the model, its data or its "
                          f"training. A resumed run may change only {sorted(RESUMABLE_KEYS)}; start a new run "
                          "for the others.")
    return {**saved, **overrides}


@dataclass
class ResumePlan:
    """What resuming a run needs, read from its checkpoint (see :func:`plan_resume`).

    Args:
        checkpoint: the checkpoint file training continues from.
        run_dir: the run folder (the checkpoint's ``checkpoints/`` parent), written to again.
        model_name: the run's registered model.
        dataset: a dataset name (the run's), or the dataset object the caller passed.
        config: the run's config with the allowed overrides.
        epoch: the epoch the checkpoint was saved in.
        meta_state: the data facts the model was built from (to check the data is the same).
    """

    checkpoint: Path
    run_dir: Path
    model_name: str
    dataset: Any
    config: Dict[str, Any]
    epoch: int
    meta_state: Dict[str, Any] = field(repr=False)

    def check_data(self, split) -> None:
        """Raise ``DataError`` unless ``split`` is the data the run was trained on (same users,
        items, id maps and training interactions per item)."""
        from recstudio.model.base.context import ModelContext
        now, then = ModelContext.from_split(split), self.meta_state
        same = (now.num_users == then["num_users"] and now.num_items == then["num_items"]
                and now.user_tokens.tolist() == list(then["user_tokens"])
                and now.item_tokens.tolist() == list(then["item_tokens"])
                and torch.equal(now.item_counts, then["item_counts"]))
        if not same:
            raise DataError(f"the data given to resume {self.checkpoint} differs from the data the run was "
                            f"trained on ({then['num_users'] - 1} users, {then['num_items'] - 1} items before; "
                            f"now {now.num_users - 1} users, {now.num_items - 1} items, or other ids / training "
                            "rows). Resume with the run's own dataset and data keys.")


def plan_resume(resume: Union[str, Path], model: Optional[str] = None, dataset: Any = None,
                overrides: Optional[Mapping[str, Any]] = None) -> ResumePlan:
    """Check that the run ``resume`` names can continue, and say how.

    Args:
        resume: a run folder (its ``checkpoints/last.ckpt`` is used) or a checkpoint file in a run
            folder's ``checkpoints/``.
        model: if given, must be the run's model.
        dataset: ``None`` (the run's registered dataset, from its ``config.yaml``), the same
            name, or a ``RecDataset`` / ``DataSplit`` (data that was not loaded by name).
        overrides: config keys to change; only :data:`RESUMABLE_KEYS` may differ.

    Raises:
        DataError: no checkpoint, a corrupt one, a weights-only file, no run folder around it.
        ConfigError: a closed-form model, a different model or dataset, a key that may not change.

    Example:
        >>> plan = plan_resume("runs/BPR-ml-100k-...", overrides={"epochs": 50})   # doctest: +SKIP
        >>> plan.checkpoint, plan.epoch                                              # doctest: +SKIP
    """
    from recstudio.model.registry import get_model
    ckpt_path = find_checkpoint(resume)
    ckpt = read_checkpoint(ckpt_path)
    info = ckpt["recstudio"]
    cls = get_model(info["model"])
    if model is not None and get_model(model) is not cls:
        raise ConfigError(f"{ckpt_path} is a run of {cls.model_name}, not {model}; leave the model out to resume it.")
    if cls.fit_mode == "closed_form":
        raise ConfigError(f"{cls.model_name} is fitted in closed form (fit_mode 'closed_form') in one step: its "
                          f"checkpoint {ckpt_path} is the finished model and there is nothing to resume. Load it "
                          "with recstudio.load(...) or train it again.")
    if "loops" not in ckpt or "optimizer_states" not in ckpt:
        raise DataError(f"{ckpt_path} holds weights only (written by Recommender.save), not a training state; "
                        "resume from a run folder or its checkpoints/last.ckpt.")
    if ckpt_path.resolve().parent.name != "checkpoints":
        raise DataError(f"{ckpt_path} is not inside a run folder's checkpoints/ folder, so there is no run to "
                        "continue; give the run folder (runs/<model>-<dataset>-<time>) instead.")
    config = resume_config(info["config"], dict(overrides or {}), cls.model_name)
    run_dir = ckpt_path.resolve().parent.parent
    run_dataset = _run_config_doc(ckpt_path).get("dataset")
    if dataset is None:
        if run_dataset is None or not _is_registered_dataset(run_dataset):
            raise DataError(f"the run in {run_dir} was not trained on a registered dataset "
                            f"({run_dataset or 'no config.yaml names it'}); pass its data to resume: "
                            "recstudio.run(resume=..., dataset=<the RecDataset or DataSplit>).")
        dataset = run_dataset
    elif isinstance(dataset, str) and run_dataset is not None and dataset.lower() != str(run_dataset).lower():
        raise ConfigError(f"{run_dir} is a run on dataset {run_dataset!r}, not {dataset!r}; leave the dataset "
                          "out to resume it.")
    remove_partial_files(ckpt_path.parent)
    return ResumePlan(checkpoint=ckpt_path, run_dir=run_dir, model_name=cls.model_name, dataset=dataset,
                      config=config,
                      epoch=int(ckpt.get("epoch", 0)), meta_state=info["meta"])


def load_model(path: Union[str, Path]):
    """Rebuild a model from a file written by :meth:`Recommender.save`, a Lightning checkpoint
    of a RecStudio run, or a run folder (its ``checkpoints/best.ckpt``, else ``last.ckpt``): its
    class, config, data meta (id maps included) and weights.

    Raises:
        DataError: a missing file, a run folder without checkpoints, or a file that is not a
            (complete) RecStudio checkpoint.

    Example:
        >>> model = recstudio.load("runs/BPR-ml-100k-.../checkpoints/best.ckpt")   # doctest: +SKIP
        >>> model = recstudio.load("runs/BPR-ml-100k-...")                          # doctest: +SKIP
        >>> model.recommend(["196"], k=10)
    """
    from recstudio.model.base.context import ModelContext
    from recstudio.model.registry import get_model
    ckpt = read_checkpoint(find_checkpoint(path, prefer=("best.ckpt", "last.ckpt")))
    info = ckpt["recstudio"]
    cls = get_model(info["model"])
    model = cls(config=_loadable_config(cls, info["config"]))  # the subclass's own construction
    model.build(ModelContext.from_state(info["meta"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model


def _loadable_config(cls, saved: Mapping[str, Any]) -> Dict[str, Any]:
    """The saved config minus keys this version no longer has (a checkpoint of an older release must
    still load); every kept value is validated again by the constructor."""
    from recstudio.model.base.config import all_options
    known = all_options(cls)
    dropped = sorted(k for k in saved if k not in known)
    if dropped:
        log.warning("ignoring config keys %s of the checkpoint, unknown to this version of %s", dropped, cls.__name__)
    return {k: v for k, v in saved.items() if k in known}


__all__ = ["AtomicCheckpointIO", "ResumePlan", "RANDOM_STATE_KEY", "RESUMABLE_KEYS", "capture_random_state",
           "restore_random_state", "remove_partial_files", "find_checkpoint", "read_checkpoint",
           "resumed_model_name", "resume_config", "plan_resume", "load_model"]
