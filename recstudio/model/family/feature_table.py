"""Feature models trained from raw tables through a :class:`~recstudio.data.features.FeaturePipeline`.

:class:`TableMixin` is a base of :class:`~recstudio.model.family.feature.FeatureRecommender`: a model
trained by ``recstudio.fit_table`` (or ``model.fit(pipeline_split(...))``) keeps the fitted pipeline's state
in its context (``meta.context_encoding['pipeline']``, saved in every checkpoint), so that

- :attr:`feature_pipeline` rebuilds the pipeline (``recstudio.load`` needs no data);
- :meth:`predict_table` scores raw rows (a DataFrame) through it: unseen values -> the OOV bucket;
- :meth:`update` continues training on new data: ``partial_fit`` of a copy of the pipeline (vocabularies only
  append, statistics follow), a split of the new rows, and a rebuild whose tables have the grown sizes with
  every trained row carried over (``grow_field_embedding``'s rule, applied to every parameter: the leading
  slice of a grown tensor is the old tensor; the new rows keep the model's own initialisation).
- ``recstudio serve`` answers ``/score`` through the pipeline (:mod:`recstudio.serving.features`).

Example:
    >>> model = recstudio.fit_table("DeepFM", train=week1, pipeline=pipe, label="click")   # doctest: +SKIP
    >>> model.predict_table(rows)                      # click probabilities [N]            # doctest: +SKIP
    >>> model.update(week2, epochs=2)                  # grown tables, old rows kept        # doctest: +SKIP
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from recstudio.utils.errors import ConfigError


def carry_state(module: torch.nn.Module, old: Dict[str, torch.Tensor]) -> list:
    """Copy ``old`` (a state dict of the same model before its tables grew) into ``module``: equal shapes
    whole, a grown tensor into its leading slice (``new[:n0, :n1, ...] = old``). Returns the grown names.

    Raises:
        ConfigError: a tensor of ``old`` that is missing, shrank or changed rank (another model or config).
    """
    grown = []
    with torch.no_grad():
        for name, new in module.state_dict().items():
            if name not in old:
                raise ConfigError(f"update: the rebuilt model has a tensor {name!r} the trained one lacks; the "
                                  "model's configuration must not change between updates.")
            src = old[name]
            if src.shape == new.shape:
                new.copy_(src)
                continue
            if src.dim() != new.dim() or any(a > b for a, b in zip(src.shape, new.shape)):
                raise ConfigError(f"update: tensor {name!r} would change from {tuple(src.shape)} to "
                                  f"{tuple(new.shape)}; vocabularies only grow, so this is another model.")
            new[tuple(slice(0, n) for n in src.shape)] = src
            grown.append(name)
    return grown


class TableMixin:
    """Pipeline-trained feature models: :attr:`feature_pipeline`, :meth:`predict_table`, :meth:`update`
    (see the module docstring)."""

    _carried_state: Optional[Dict[str, torch.Tensor]] = None
    _pipeline_cache = None

    # ---- the pipeline ------------------------------------------------------------------------------
    @property
    def feature_pipeline(self):
        """The fitted :class:`~recstudio.data.features.FeaturePipeline` the model was trained through
        (``None`` for a model trained on a registered dataset)."""
        meta = getattr(self, "meta", None)
        state = (getattr(meta, "context_encoding", None) or {}).get("pipeline") if meta is not None else None
        if state is None:
            return None
        cached = self._pipeline_cache
        if cached is None or cached[0] is not state:
            from recstudio.data.features import FeaturePipeline
            cached = self._pipeline_cache = (state, FeaturePipeline.from_state(state))
        return cached[1]

    def _require_pipeline(self, what: str):
        pipe = self.feature_pipeline
        if pipe is None:
            trained = "is not trained" if getattr(self, "meta", None) is None else \
                "was trained on a dataset, not through a FeaturePipeline"
            raise ConfigError(f"{what} needs a model trained from a table (recstudio.fit_table); {self.model_name} "
                              f"{trained}. Score dataset-trained models with /score or forward().")
        return pipe

    def transform_table(self, frame) -> Dict[str, torch.Tensor]:
        """Raw rows (a DataFrame) -> the model's batch (CPU tensors), exactly as in training.

        Raises:
            DataError: an unknown or missing column, a value of the wrong type (see ``FeaturePipeline``).
        """
        from recstudio.data.features.dataset import encode_table
        pipe = self._require_pipeline("transform_table")
        cols = encode_table(pipe, frame, self.meta.uid_field, self.meta.iid_field, strict=True)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in cols.items()}

    def predict_table(self, frame, batch_size: Optional[int] = None) -> np.ndarray:
        """Click probabilities of raw rows: ``float [N]`` (``[N, T]`` for a multi-task model); unseen
        values fall into the out-of-vocabulary bucket."""
        batch = self.transform_table(frame)
        n = len(frame)
        size = int(batch_size or self.config["eval_batch_size"])
        self.eval()
        out = []
        with torch.no_grad():
            for lo in range(0, n, size):
                part = {k: v[lo:lo + size].to(self.device) for k, v in batch.items()}
                out.append(torch.sigmoid(self.forward(part)).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    # ---- continued training --------------------------------------------------------------------------
    def update(self, train, valid=None, test=None, epochs: Optional[int] = None, run_dir=None,
               callbacks: Sequence[Any] = ()) -> Dict[str, float]:
        """Continue training on new rows: ``partial_fit`` a copy of the pipeline on ``train``, grow every
        table to the new vocabulary sizes (trained rows kept, new rows initialised as the model initialises
        them; a new optimizer), train ``epochs`` epochs (default: the config's) with early stopping on
        ``valid`` when given, and test on ``test`` (else ``valid``, else ``train``). The pipeline saved with
        the model is the updated one.

        Returns:
            The test metrics of the best checkpoint (as ``fit``).

        Raises:
            ConfigError: a model not trained from a table, a bad ``epochs``.
            DataError: a frame the pipeline cannot read (missing columns, wrong types).
        """
        from recstudio.data.features import FeaturePipeline
        from recstudio.data.features.dataset import pipeline_split
        old = self._require_pipeline("update")
        if epochs is not None:
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ConfigError(f"update: epochs must be a positive integer, got {epochs!r}.")
            self.config["epochs"] = epochs
        pipe = FeaturePipeline.from_state(old.state_dict()).partial_fit(train)
        split = pipeline_split(pipe, train, valid, test if test is not None else valid, user=self.meta.uid_field,
                               item=self.meta.iid_field, labels=pipe.labels,
                               name=getattr(self, "_table_name", "table"), seed=int(self.config.get("seed", 2020)))
        if test is None and valid is None:
            split.test = split.train  # nothing held out: the reported metrics are the training rows'
        self._carried_state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.train()
        try:
            self.table_metrics = self.fit(split, run_dir, callbacks=callbacks)
        finally:
            self._carried_state = None
        return self.table_metrics

    def build(self, meta):
        """As every model, then (inside :meth:`update`) the trained weights carried into the grown tables."""
        super().build(meta)
        if self._carried_state is not None:
            self.grown_tensors = carry_state(self, self._carried_state)
        return self


def check_table_labels(model_cls, labels: Sequence[str]) -> Dict[str, Any]:
    """The config keys that make ``model_cls`` train on the label columns ``labels``: ``label_field`` for a
    single-task model, ``tasks`` for a multi-task one.

    Raises:
        ConfigError: no label, or several for a single-task model.
    """
    labels = list(labels)
    if not labels:
        raise ConfigError("fit_table needs label= (the 0/1 click column, or a list for a multi-task model).")
    from recstudio.model.family.multitask import MultiTaskFeatureRecommender
    if issubclass(model_cls, MultiTaskFeatureRecommender):
        if len(labels) < 2:
            raise ConfigError(f"{model_cls.__name__} is multi-task: give label=[...] with two or more 0/1 columns "
                              f"(earliest event first), got {labels}.")
        return {"tasks": labels}
    if len(labels) != 1:
        raise ConfigError(f"{model_cls.__name__} predicts one label; got {labels} (pick one, or use a multi-task "
                        "model such as MMoE).")
    return {"label_field": labels[0]}


__all__ = ["TableMixin", "carry_state", "check_table_labels"]
