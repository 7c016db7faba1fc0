"""``recstudio.run``: train and evaluate a zoo model on a dataset in one call."""
from typing import Any, Dict, Optional, Tuple


def format_metrics(metrics: Dict[str, float], title: str = "test") -> str:
    """A two-row table of metrics, e.g. ``recall@10  ndcg@10`` over their values."""
    if not metrics:
        return f"{title}: no metrics"
    width = max(max(len(k) for k in metrics), 8)
    head = "  ".join(k.rjust(width) for k in metrics)
    vals = "  ".join(f"{v:.4f}".rjust(width) for v in metrics.values())
    return f"{title}\n{head}\n{vals}"


def run(model: Optional[str] = None, dataset: Any = None, config_file: Optional[str] = None,
        resume: Optional[str] = None, **overrides) -> Tuple[Any, Dict[str, float]]:
    """Train ``model`` on ``dataset`` with early stopping and return ``(model, test_metrics)``.

    Args:
        model: a registered model name (case-insensitive), default ``"BPR"``.
        dataset: a registered dataset name (default ``"ml-100k"``), a ``RecDataset`` or a ``DataSplit``.
        config_file: an optional YAML file of config keys.
        resume: a run folder or checkpoint to continue (``docs/checkpoints.md``): the run's model,
            dataset and config are used, in its own folder; ``model`` / ``dataset`` may be left out,
            and overrides may change only :data:`~recstudio.train.checkpoint.RESUMABLE_KEYS`.
        **overrides: any config key (data, training or the model's own).

    Raises:
        ConfigError: unknown model, dataset or key, or a bad value — before any training starts.
        DataError: ``resume`` names no readable checkpoint, or different data.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="BPR", dataset="ml-100k", epochs=20)  # doctest: +SKIP
        >>> metrics["ndcg@10"]
    """
    from recstudio.model.base.config import read_config_file
    from recstudio.model.registry import get_model
    file_cfg = read_config_file(config_file) if config_file else {}
    settings = {**file_cfg, **overrides}
    plan = None
    if resume is not None:  # the run's own model, dataset and config; only safe keys may change
        from recstudio.train.checkpoint import plan_resume
        plan = plan_resume(resume, model, dataset, settings)
        model, dataset, settings = plan.model_name, plan.dataset, plan.config
    model = "BPR" if model is None else model
    dataset = "ml-100k" if dataset is None else dataset
    cls = get_model(model)
    dataset_config = None
    if isinstance(dataset, str):
        from recstudio.data.registry import get_spec
        dataset_config = get_spec(dataset, data_dir=settings.get("data_dir")).config
    if settings.get("mode") == "tune" and plan is None:  # an NNI trial: the tuner's parameters win (docs/tuning.md)
        from recstudio.tune.trial import trial_overrides
        settings = trial_overrides(cls, settings)
    instance = cls(dataset_config=dataset_config, **settings)
    from recstudio.train.distributed import is_global_zero
    quiet = instance.config["quiet"] or not is_global_zero()  # under DDP only global rank 0 prints
    detail = instance.config["mode"] == "detail" and not quiet
    split = instance.prepare_data_split(dataset)
    if plan is not None:
        plan.check_data(split)
    if not quiet:
        print(f"{cls.model_name} on {split.dataset!r}")
        if plan is not None:
            print(f"resuming {plan.checkpoint} (saved after epoch {plan.epoch})")
        if detail:
            print("config:\n" + "\n".join(f"  {k}: {v}" for k, v in instance.config.items()))
            print(split.dataset.statistics().table())
        s = split.summary()
        print("split: " + ", ".join(f"{p} {s[p + '_interactions']}" for p in ("train", "valid", "test")))
    from recstudio.train.trainer import fit_model
    reporting = []
    if instance.config["mode"] == "tune":  # an NNI trial: report validation / test metrics to the tuner
        from recstudio.tune.trial import TrialReporter
        reporting.append(TrialReporter(instance.config["early_stop_metric"]))
    metrics = fit_model(instance, split, None if plan is None else plan.run_dir, resume=plan, callbacks=reporting)
    if not quiet:
        print(format_metrics(metrics, f"test metrics ({instance.run_dir})"))
    return instance, metrics

