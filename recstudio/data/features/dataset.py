"""Tables through a fitted :class:`FeaturePipeline` -> a :class:`~recstudio.data.split.DataSplit` the
training engine trains any feature (CTR) model on (``recstudio.fit_table``, ``model.update``).

The pipeline's ids become the dataset's inner ids unchanged: a token output of size ``S`` gets an
:class:`~recstudio.data.table.IdMap` of ``S - 1`` tokens (id ``k`` -> token ``k - 1``), so the model's tables
have exactly the pipeline's sizes and a later ``partial_fit`` only appends rows. For a
:class:`~recstudio.data.features.Categorical` field the tokens are ``OOV_TOKEN`` (id 1) followed by its
vocabulary, so ``recommend(["u7"])`` and ``decode_items`` speak the original values; other token fields
use their ids as tokens.

The user and item fields are two of the pipeline's token outputs (the model embeds them as every feature
model does, and DIN-like models read each user's rows in order as its history); a table without them gets
a constant placeholder (``PLACEHOLDER_USER`` / ``PLACEHOLDER_ITEM``, id 1) that the caller leaves out of
``feature_fields``.

Rows keep the order of ``train``, then ``valid``, then ``test`` within each user (a stable sort by user):
give the frames in time order for models that read a history.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from recstudio.data.features.categorical import Categorical
from recstudio.data.features.pipeline import FeaturePipeline
from recstudio.data.fields import FieldType
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

#: the token of id 1 (out of vocabulary) of a Categorical field's IdMap
OOV_TOKEN = "<oov>"
#: batch keys of the constant user / item fields of a table that has none
PLACEHOLDER_USER, PLACEHOLDER_ITEM = "__user__", "__item__"
PLACEHOLDERS = (PLACEHOLDER_USER, PLACEHOLDER_ITEM)


def _tokens(pipeline: FeaturePipeline, key: str, size: int) -> np.ndarray:
    """Original token of ids ``1 .. size - 1`` of the token output ``key``."""
    feat = next((f for f in pipeline.features if f.output == key), None)
    if isinstance(feat, Categorical):
        values = list(np.asarray(feat.vocab.values).tolist())
        return np.asarray([OOV_TOKEN] + values, dtype=object)
    return np.arange(1, size, dtype=np.int64)


def id_fields(pipeline: FeaturePipeline, user: Optional[str], item: Optional[str]):
    """``(user key, item key)``: the given keys checked (token outputs of the pipeline), ``user_id`` /
    ``item_id`` when the pipeline has them, else the placeholders.

    Raises:
        ConfigError: a key that is not one of the pipeline's token outputs.
    """
    specs = pipeline.specs()
    out = []
    for role, given, default, placeholder in (("user", user, "user_id", PLACEHOLDER_USER),
                                               ("item", item, "item_id", PLACEHOLDER_ITEM)):
        if given is None or given == placeholder:
            given = default if specs.get(default, ("",))[0] == "token" else placeholder
        elif given not in specs or specs[given][0] != "token":
            tokens = [k for k, (t, _) in specs.items() if t == "token"]
            raise ConfigError(f"{role}={given!r} must name a token output of the pipeline (a Categorical or Hashed "
                              f"feature); token outputs: {tokens}." + did_you_mean(str(given), tokens))
        out.append(given)
    if out[0] == out[1] and out[0] not in PLACEHOLDERS:
        raise ConfigError(f"user and item are both {out[0]!r}; name two different fields.")
    return tuple(out)


def encode_table(pipeline: FeaturePipeline, frame: pd.DataFrame, user: str, item: str,
                 labels: Sequence[str] = (), strict: bool = False) -> Dict[str, np.ndarray]:
    """``frame`` -> the model's columns: the pipeline's outputs, the ``labels`` (required when given, the
    pipeline's other labels dropped) and the placeholder id fields.

    Raises:
        DataError: from the pipeline (a missing or, ``strict``, unknown column, a value of the wrong type).
    """
    missing = [c for c in labels if isinstance(frame, pd.DataFrame) and c not in frame.columns]
    if missing:
        raise DataError(f"the frame lacks the label columns {missing} (frame columns: {list(frame.columns)[:20]}).")
    out = pipeline.transform(frame, strict=strict, labels=None if labels else False)
    for c in pipeline.labels:
        if c not in labels:
            out.pop(c, None)
    for key in (user, item):
        if key in PLACEHOLDERS:
            out[key] = np.ones(len(frame), dtype=np.int64)
    return out


def _field_type(kind: str, array: np.ndarray) -> FieldType:
    if kind in ("token", "token_seq", "float", "float_seq"):
        return FieldType(kind)
    return FieldType.FLOAT_SEQ if array.ndim > 1 else FieldType.FLOAT


def pipeline_split(pipeline: FeaturePipeline, train: pd.DataFrame, valid: Optional[pd.DataFrame] = None,
                   test: Optional[pd.DataFrame] = None, user: Optional[str] = None, item: Optional[str] = None,
                   labels: Sequence[str] = (), name: str = "table", seed: int = 2020):
    """A :class:`~recstudio.data.split.DataSplit` of the frames through the fitted ``pipeline`` (train /
    valid / test rows as given, no filtering, no remapping); the dataset keeps the pipeline as
    ``feature_pipeline`` and the model's context saves its state (``ModelContext.context_encoding``).

    Args:
        pipeline: a fitted pipeline (fit it on ``train`` only).
        train, valid, test: DataFrames of raw columns and labels; ``valid`` / ``test`` may be ``None``.
        user, item: token output keys of the user / item ids (see :func:`id_fields`).
        labels: the label columns every frame must carry (members of ``pipeline.labels``).
        name: the dataset name (run folders, reports).
        seed: the data seed (row shuffling of the loaders).

    Raises:
        DataError: an unfitted pipeline, a frame that is not a DataFrame or lacks a column, no training rows.
        ConfigError: a label the pipeline does not declare, a bad ``user`` / ``item``.

    Example:
        >>> pipe = FeaturePipeline([Categorical("user_id"), Categorical("item_id")], labels=["click"])
        >>> frame = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": [1, 2, 2], "click": [1, 0, 1]})
        >>> split = pipeline_split(pipe.fit(frame), frame, labels=["click"])
        >>> split.dataset.num_users, split.dataset.num_items, len(split.train)
        (4, 4, 3)
    """
    from recstudio.data.config import SPLIT_KEYS, resolve_data_config
    from recstudio.data.dataset import RecDataset
    from recstudio.data.split import DataSplit
    from recstudio.data.table import FeatureTable, IdMap
    if not isinstance(pipeline, FeaturePipeline):
        raise ConfigError(f"pipeline must be a FeaturePipeline, got {type(pipeline).__name__}.")
    if not pipeline.fitted:
        raise DataError("the FeaturePipeline is not fitted; fit it on the training frame first.")
    unknown = [c for c in labels if c not in pipeline.labels]
    if unknown:
        raise ConfigError(f"labels {unknown} are not labels of the pipeline (its labels: {pipeline.labels}); "
                          f"create it with FeaturePipeline(features, labels={list(labels)}).")
    user, item = id_fields(pipeline, user, item)
    frames = [("train", train), ("valid", valid), ("test", test)]
    parts, phases = [], []
    for k, (phase, frame) in enumerate(frames):
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{phase} must be a pandas DataFrame, got {type(frame).__name__}.")
        parts.append(encode_table(pipeline, frame, user, item, labels))
        phases.append(np.full(len(frame), k, dtype=np.int8))
    phase = np.concatenate(phases)
    if not (phase == 0).any():
        raise DataError("the training frame has no rows.")
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.argsort(columns[user], kind="stable")   # user-sorted, frame order within each user
    columns = {key: v[order] for key, v in columns.items()}
    phase = phase[order]
    specs = pipeline.specs()
    specs.update({key: ("token", 2) for key in (user, item) if key in PLACEHOLDERS})
    types = {key: _field_type(specs.get(key, ("label",))[0], v) for key, v in columns.items()}
    id_maps, field_vocab = {}, {}
    for key, (kind, size) in specs.items():
        if kind not in ("token", "token_seq"):
            continue
        vocab = "user" if key == user else "item" if key == item else key
        tokens = (np.asarray(["<all>"], dtype=object) if key in PLACEHOLDERS else _tokens(pipeline, key, size))
        id_maps[vocab] = IdMap(tokens, vocab)
        field_vocab[key] = vocab
    config = resolve_data_config({"user_field": user, "item_field": item, "rating_field": None,
                                  "time_field": None, "cache": False, "seed": int(seed)},
                                 where="pipeline_split")
    ds = RecDataset(name, config, FeatureTable(columns, types), id_maps, field_vocab)
    ds.feature_pipeline = pipeline
    rows = [np.flatnonzero(phase == k) for k in range(3)]
    return DataSplit(ds, rows[0], rows[1], rows[2], rows[0], np.flatnonzero(phase <= 1),
                     {k: config[k] for k in SPLIT_KEYS if k in config})


__all__ = ["OOV_TOKEN", "PLACEHOLDER_USER", "PLACEHOLDER_ITEM", "PLACEHOLDERS", "id_fields", "encode_table",
           "pipeline_split"]
