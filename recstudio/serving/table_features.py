"""``POST /score`` and ``/rank`` for a feature model trained through a FeaturePipeline (``recstudio.fit_table``).

The request rows are encoded by the pipeline saved in the checkpoint, exactly as the training frames were
(``model.transform_table``): every pipeline input column is required, an unknown field or a value of the
wrong type is a :class:`~recstudio.serving.features.FeatureInputError` (422), and an unseen categorical value
falls into the out-of-vocabulary bucket (id 1), listed per row in ``oov``.
"""
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, DataError

#: id of the out-of-vocabulary bucket of a Categorical / TokenSeq output
OOV_ID = 1


class PipelineRowEncoder:
    """Raw request rows -> the model's batch through its :attr:`feature_pipeline`."""

    def __init__(self, model):
        from recstudio.data.features import Categorical, TokenSeq
        from recstudio.data.features.dataset import PLACEHOLDERS
        self.model = model
        self.pipeline = model.feature_pipeline
        self.uid, self.iid = model.meta.uid_field, model.meta.iid_field
        self.placeholders = PLACEHOLDERS
        self.fields = list(self.pipeline.columns)
        #: output keys whose id 1 is the OOV bucket
        self.oov_keys = [f.output for f in self.pipeline.features if isinstance(f, (Categorical, TokenSeq))]

    def describe(self) -> Dict[str, Any]:
        """The raw fields a request sends (``GET /fields``): the pipeline's input columns."""
        fields = {}
        for f in self.pipeline.features:
            kind, size = f.specs()[f.output]
            role = "user id" if f.output == self.uid else "item id" if f.output == self.iid else "context"
            entry = {"type": kind, "role": role, "feature": type(f).__name__}
            if kind in ("token", "token_seq"):
                entry["vocabulary_size"] = size
            fields[f.name] = entry
        return {"fields": fields, "from_ids": {}, "servable": True, "unavailable": None,
                "pipeline": True}

    def _encode(self, rows: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        import pandas as pd
        from recstudio.serving.features import FeatureInputError
        from recstudio.utils.suggest import did_you_mean
        allowed = set(self.fields) | set(self.pipeline.labels)
        for r, row in enumerate(rows):
            if not isinstance(row, dict):
                raise FeatureInputError(f"row {r} must be an object of field -> value, got {type(row).__name__}.")
            unknown = [k for k in row if k not in allowed]
            if unknown:
                raise FeatureInputError(f"row {r}: unknown field {str(unknown[0])[:60]!r}; the model's fields are "
                                        f"{self.fields}." + did_you_mean(str(unknown[0]), self.fields))
            missing = [k for k in self.fields if k not in row]
            if missing:
                raise FeatureInputError(f"row {r}: missing fields {missing}; every row needs {self.fields}.")
        try:
            return self.model.transform_table(pd.DataFrame.from_records(rows, columns=self.fields))
        except DataError as e:
            raise FeatureInputError(f"rows: {e}") from None
        except (TypeError, ValueError, OverflowError) as e:  # a value pandas / numpy cannot hold
            raise FeatureInputError(f"rows: a value the pipeline cannot read ({type(e).__name__}: {e}).") from None

    def _oov(self, batch: Dict[str, torch.Tensor], n: int) -> List[List[str]]:
        hit = {}
        for key in self.oov_keys:
            col = batch[key]
            mask = (col == OOV_ID) if col.dim() == 1 else (col == OOV_ID).any(-1)
            hit[key] = mask.numpy()
        return [[k for k in self.oov_keys if hit[k][r]] for r in range(n)]

    def encode_rows(self, rows: List[Dict[str, Any]]) -> Tuple[Dict[str, torch.Tensor], List[List[str]]]:
        """``(batch, oov)`` of ``POST /score`` rows."""
        if not rows:
            return {}, []
        batch = self._encode(list(rows))
        return batch, self._oov(batch, len(rows))

    def encode_candidates(self, user, context: Dict[str, Any], items: Sequence
                          ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """``(batch, oov)`` of ``POST /rank``: one row per candidate, ``user`` and ``context`` repeated (every
        context field of the pipeline is required); an item outside the vocabulary is an error."""
        from recstudio.model.base.inference import UnknownIdsError
        from recstudio.serving.features import FeatureInputError
        if self.iid in self.placeholders:
            raise ConfigError("this model was trained on a table without an item field: /rank has no items to "
                              "rank; use /score.")
        if not isinstance(context, dict):
            raise FeatureInputError(f"context must be an object of field -> value, got {type(context).__name__}.")
        for name in (self.uid, self.iid):
            if name in context:
                raise FeatureInputError(f"context: field {name!r} is given by {'user' if name == self.uid else 'items'}"
                                        f", not in context.")
        seen: Dict[Any, int] = {}
        for j, item in enumerate(items):
            if item in seen:
                raise FeatureInputError(f"items[{j}]: item {item!r} is already a candidate (items[{seen[item]}]); "
                                        f"list each candidate once.")
            seen[item] = j
        ids = {} if self.uid in self.placeholders else {self.uid: user}
        rows = [{**context, **ids, self.iid: item} for item in items]
        if not rows:
            return {}, []
        batch = self._encode(rows)
        unknown = np.flatnonzero(batch[self.iid].numpy() == OOV_ID)
        if len(unknown):
            bad = [items[j] for j in unknown]
            raise UnknownIdsError(f"unknown item ids {bad[:10]}: they are not in the vocabulary the model was "
                                  f"trained on, and /rank ranks known items only (score a new item with POST /score).",
                                  bad[:10], len(bad))
        return batch, [k for k in self._oov(batch, 1)[0] if k != self.iid]


__all__ = ["PipelineRowEncoder"]
