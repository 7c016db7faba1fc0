"""The feature pipeline for tables of mixed features (CTR data): fitted on the training split only,
saved with the model (:meth:`FeaturePipeline.state_dict`) and applied identically at serving time.

- :class:`Categorical`: vocabulary, ``min_freq`` -> OOV bucket (id 1), growth by ``partial_fit``;
  :class:`Hashed`: the hashing trick into ``buckets``;
- :class:`Numeric`: standard / min-max scaling with running statistics, log transform;
  :class:`Bucketized`: equal-frequency / equal-width buckets as a token field;
- :class:`TokenSeq`: variable-length token sequences, latest-first, 0-padded at the end, truncated,
  optionally weighted; :class:`recstudio.model.module.SequencePooling` pools them (mean / sum / attention);
- :func:`grow_embedding` / :func:`grow_field_embedding`: grow embedding tables after the vocabulary grew;
- :func:`pipeline_split`: frames through a fitted pipeline -> a DataSplit any feature model trains on
  (``recstudio.fit_table``, ``model.update``).

See ``docs/feature_pipeline.md``.
"""
from recstudio.data.features.base import Feature
from recstudio.data.features.categorical import (Categorical, Hashed, Hasher, Vocabulary, grow_embedding,
                                                 grow_field_embedding)
from recstudio.data.features.numeric import Bucketized, Numeric, RunningStats, signed_log1p
from recstudio.data.features.pipeline import FEATURE_KINDS, FeaturePipeline
from recstudio.data.features.sequence import TokenSeq, explode_cells, scatter_latest_first
from recstudio.data.features.dataset import pipeline_split  # noqa: E402 (needs the pipeline above)

__all__ = [
    "Feature", "Categorical", "Hashed", "Hasher", "Vocabulary", "grow_embedding", "grow_field_embedding",
    "Bucketized", "Numeric", "RunningStats", "signed_log1p", "FEATURE_KINDS", "FeaturePipeline",
    "TokenSeq", "explode_cells", "scatter_latest_first", "pipeline_split",
]
