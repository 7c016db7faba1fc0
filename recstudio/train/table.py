"""``recstudio.fit_table``: fit a FeaturePipeline on a training DataFrame and train a feature (CTR) model on it."""
from typing import Any, Optional, Sequence, Union

from recstudio.utils.errors import ConfigError, DataError


def fit_table(model: str = "DeepFM", train=None, valid=None, test=None, pipeline=None,
              label: Union[str, Sequence[str]] = "click", user: Optional[str] = None, item: Optional[str] = None,
              run_dir=None, name: str = "table", **overrides: Any):
    """Train a feature model on raw tables through a :class:`~recstudio.data.features.FeaturePipeline`.

    The pipeline is fitted on ``train`` (unless it is already fitted), the frames are encoded by it (ids
    unchanged: :func:`~recstudio.data.features.dataset.pipeline_split`) and the model is trained with the
    usual engine (early stopping on ``valid``'s ``auc``, the best checkpoint tested on ``test``, else on
    ``valid``). The model keeps the pipeline: ``model.predict_table(rows)``, ``model.save(path)`` /
    ``recstudio.load(path)``, ``recstudio serve`` (``/score`` of raw rows) and ``model.update(next_week)``
    work with no other data present.

    Args:
        model: a registered feature model (FM, DeepFM, DCN, DIN, ...).
        train, valid, test: DataFrames of the raw columns the pipeline reads and the label column(s), in
            time order for models that read each user's history (DIN, DIEN, BST).
        pipeline: the features; its ``labels`` (set to ``label`` when empty) must hold ``label``.
        label: the 0/1 label column (a list of them, earliest event first, for a multi-task model).
        user, item: pipeline output keys of the user and item ids (default ``user_id`` / ``item_id`` when
            the pipeline has them; else a constant placeholder the model does not embed).
        run_dir: the run folder (default ``runs/<model>-<name>-<time>``).
        name: the dataset name in reports.
        **overrides: model / training config keys (``epochs``, ``embed_dim``, ``learning_rate``, ...).

    Returns:
        The trained model; its test metrics are ``model.table_metrics``.

    Raises:
        ConfigError: not a feature model, no pipeline, a label the pipeline does not know, ``label_field`` /
            ``tasks`` given (use ``label``).
        DataError: a frame the pipeline cannot read (missing columns, wrong types), labels that are not 0/1.

    Example:
        >>> pipe = FeaturePipeline([Categorical("user_id"), Categorical("item_id"), Numeric("price")],
        ...                        labels=["click"])                                         # doctest: +SKIP
        >>> model = recstudio.fit_table("DeepFM", train=week1, valid=week1_valid, pipeline=pipe,
        ...                             label="click", epochs=5)                             # doctest: +SKIP
    """
    import pandas as pd
    from recstudio.data.features import FeaturePipeline
    from recstudio.data.features.dataset import PLACEHOLDERS, id_fields, pipeline_split
    from recstudio.model.family.feature import FeatureRecommender
    from recstudio.model.family.feature_table import check_table_labels
    from recstudio.model.registry import get_model
    cls = get_model(model)
    if not issubclass(cls, FeatureRecommender):
        raise ConfigError(f"fit_table trains feature (CTR) models; {cls.model_name} is a {cls.base_name} model. "
                          f"Train it with recstudio.run(model={cls.model_name!r}, dataset=...).")
    if not isinstance(pipeline, FeaturePipeline):
        raise ConfigError(f"fit_table needs pipeline=FeaturePipeline([...]), got {type(pipeline).__name__}.")
    if not isinstance(train, pd.DataFrame):
        raise DataError(f"train must be a pandas DataFrame, got {type(train).__name__}.")
    taken = [k for k in ("label_field", "label_threshold", "tasks") if k in overrides]
    if taken:
        raise ConfigError(f"fit_table sets the label from label=...; remove {taken}.")
    labels = [label] if isinstance(label, str) else list(label)
    if not pipeline.labels:
        pipeline.labels = list(labels)
    settings = {**check_table_labels(cls, labels), **overrides}
    if not pipeline.fitted:
        pipeline.fit(train)
    user, item = id_fields(pipeline, user, item)
    if "history_seq" in cls.needs and PLACEHOLDERS[0] == user:
        raise ConfigError(f"{cls.model_name} reads each user's history: name the pipeline's user field (user=...).")
    if "feature_fields" not in settings and (user in PLACEHOLDERS or item in PLACEHOLDERS):
        weights = set(pipeline.seq_weights().values())
        settings["feature_fields"] = [k for k in [user, *pipeline.specs(), item]
                                      if k not in PLACEHOLDERS and k not in weights]
    _check_weight_names(pipeline)
    instance = cls(**settings)
    split = pipeline_split(pipeline, train, valid, test if test is not None else valid, user=user, item=item,
                           labels=labels, name=name, seed=int(instance.config.get("seed", 2020)))
    if test is None and valid is None:
        split.test = split.train  # nothing held out: the reported metrics are the training rows'
    instance._table_name = name
    instance.table_metrics = instance.fit(split, run_dir)
    return instance


def _check_weight_names(pipeline) -> None:
    """A weighted TokenSeq's weights must be named ``<key>_weight``, the pairing the feature models use."""
    from recstudio.model.family.feature import WEIGHT_SUFFIX
    for key, weight in pipeline.seq_weights().items():
        if weight != key + WEIGHT_SUFFIX:
            raise ConfigError(f"TokenSeq {key!r}: the feature models pool a sequence with the weights named "
                              f"{key + WEIGHT_SUFFIX!r}; set weight_output={key + WEIGHT_SUFFIX!r} (got {weight!r}).")


__all__ = ["fit_table"]
