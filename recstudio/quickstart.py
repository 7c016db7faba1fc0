"""``recstudio.run``: train and evaluate a zoo model on a dataset in one call."""
from typing import Any, Dict, Optional, Tuple

from recstudio.utils.errors import ConfigError


def format_metrics(metrics: Dict[str, float], title: str = "test") -> str:
    """A two-row table of metrics, e.g. ``recall@10  ndcg@10`` over their values."""
    if not metrics:
        return f"{title}: no metrics"
    width = max(max(len(k) for k in metrics), 8)
    head = "  ".join(k.rjust(width) for k in metrics)
    vals = "  ".join(f"{v:.4f}".rjust(width) for v in metrics.values())
    return f"{title}\n{head}\n{vals}"


def run(model: str = "BPR", dataset: Any = "ml-100k", config_file: Optional[str] = None,
        **overrides) -> Tuple[Any, Dict[str, float]]:
    """Train ``model`` on ``dataset`` with early stopping and return ``(model, test_metrics)``.

    Args:
        model: a registered model name (case-insensitive), e.g. ``"BPR"``.
        dataset: a registered dataset name, a ``RecDataset`` or a ``DataSplit``.
        config_file: an optional YAML file of config keys.
        **overrides: any config key (data, training or the model's own).

    Raises:
        ConfigError: unknown model, dataset or key, or a bad value — before any training starts.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="BPR", dataset="ml-100k", epochs=20)  # doctest: +SKIP
        >>> metrics["ndcg@10"]
    """
    from recstudio.model.base.config import read_config_file
    from recstudio.model.registry import get_model
    cls = get_model(model)
    dataset_config = None
    if isinstance(dataset, str):
        from recstudio.data.registry import get_spec
        dataset_config = get_spec(dataset).config
    file_cfg = read_config_file(config_file) if config_file else {}
    instance = cls(dataset_config=dataset_config, **{**file_cfg, **overrides})
    from recstudio.model.base.distributed import is_global_zero
    quiet = instance.config["quiet"] or not is_global_zero()  # under DDP only global rank 0 prints
    detail = instance.config["mode"] == "detail" and not quiet
    split = instance.prepare_data_split(dataset)
    if not quiet:
        print(f"{cls.model_name} on {split.dataset!r}")
        if detail:
            print("config:\n" + "\n".join(f"  {k}: {v}" for k, v in instance.config.items()))
            print(split.dataset.statistics().table())
        s = split.summary()
        print("split: " + ", ".join(f"{p} {s[p + '_interactions']}" for p in ("train", "valid", "test")))
    metrics = instance.fit(split)
    if not quiet:
        print(format_metrics(metrics, f"test metrics ({instance.run_dir})"))
    return instance, metrics

