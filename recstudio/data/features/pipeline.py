"""FeaturePipeline: fit feature transforms on the training split, apply them identically everywhere."""
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from recstudio.data.features.base import Feature
from recstudio.data.features.categorical import Categorical, Hashed
from recstudio.data.features.numeric import Bucketized, Numeric, numeric_values
from recstudio.data.features.sequence import TokenSeq
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

FEATURE_KINDS = {cls.kind_name: cls for cls in (Categorical, Hashed, Numeric, Bucketized, TokenSeq)}
STATE_VERSION = 1


class FeaturePipeline:
    """An ordered set of features plus label columns, fitted on training data only.

    ``fit(train)`` learns vocabularies, statistics and bucket edges; ``partial_fit(more)`` updates them with
    later data (vocabularies only grow, so old ids keep their meaning; see :func:`grow_field_embedding`);
    ``transform(frame)`` gives a dict of numpy arrays (``to_tensors`` of torch tensors) whose keys and
    shapes :meth:`specs` describes in the ``(type, size)`` form of
    :class:`~recstudio.model.module.field_embedding.FieldEmbedding` (``seq_weights()`` gives its weight
    pairing). ``state_dict()`` is plain JSON-able data: save it with the model (``torch.save`` or
    :meth:`save`) and rebuild the identical pipeline at serving time with :meth:`from_state`.

    Args:
        features: the :class:`Feature` objects (output keys must be unique).
        labels: label columns, passed through as ``float32 [N]`` when present in the frame.

    Raises:
        ConfigError: duplicate output keys, a ``vocab_of`` that names no Categorical feature.

    Example:
        >>> pipe = FeaturePipeline([Categorical("user"), Numeric("price", log=True),
        ...                         TokenSeq("hist", max_len=3, sep="|")], labels=["click"])
        >>> train = pd.DataFrame({"user": ["u1", "u2"], "price": [1.0, 9.0], "hist": ["a|b", "c"],
        ...                       "click": [1, 0]})
        >>> batch = pipe.fit(train).transform(train)
        >>> batch["user"].tolist(), batch["hist"].tolist()
        ([2, 3], [[3, 2, 0], [4, 0, 0]])
    """

    def __init__(self, features: Sequence[Feature], labels: Sequence[str] = ()):
        features = list(features)
        if not features:
            raise ConfigError("FeaturePipeline needs at least one feature.")
        for f in features:
            if not isinstance(f, Feature):
                raise ConfigError(f"FeaturePipeline takes Feature objects (Categorical, Hashed, Numeric, "
                                  f"Bucketized, TokenSeq), got {f!r}.")
        self.features = features
        self.labels = [str(x) for x in labels]
        seen: Dict[str, str] = {}
        for f in features:
            for key in f.specs():
                if key in seen or key in self.labels:
                    raise ConfigError(f"FeaturePipeline: output key {key!r} is produced twice "
                                      f"(by {seen.get(key, 'a label')!r} and {f.name!r}); set output=... to rename.")
                seen[key] = f.name
        self._link()

    def _link(self) -> None:
        by_output = {f.output: f for f in self.features}
        for f in self.features:
            if isinstance(f, TokenSeq) and f.vocab_of:
                src = by_output.get(f.vocab_of)
                if not isinstance(src, Categorical):
                    raise ConfigError(f"TokenSeq {f.name!r}: vocab_of={f.vocab_of!r} must name a Categorical "
                                      f"feature's output key; Categorical keys: "
                                      f"{[k for k, g in by_output.items() if isinstance(g, Categorical)]}.")
                f.link(src.vocab)

    # -- inputs --------------------------------------------------------------------------------------------
    @property
    def columns(self) -> List[str]:
        """Input columns the pipeline reads (features and their weight columns), labels excluded."""
        cols = []
        for f in self.features:
            for c in (f.columns if isinstance(f, TokenSeq) else [f.name]):
                if c not in cols:
                    cols.append(c)
        return cols

    def feature(self, key: str) -> Feature:
        """The feature whose output key or input column is ``key``.

        Raises:
            DataError: no such field.
        """
        for f in self.features:
            if key in (f.output, f.name):
                return f
        names = [f.output for f in self.features]
        raise DataError(f"the fitted pipeline has no field {key!r}; fields: {names}." + did_you_mean(key, names))

    def _check(self, frame: pd.DataFrame, strict: bool, need_labels: bool) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"FeaturePipeline takes a pandas DataFrame, got {type(frame).__name__}.")
        if strict:
            known = set(self.columns) | set(self.labels)
            unknown = [c for c in frame.columns if c not in known]
            if unknown:
                raise DataError(f"unknown fields {unknown}: the fitted pipeline knows {sorted(known)}."
                                + did_you_mean(str(unknown[0]), sorted(known)))
        missing = [c for c in self.columns if c not in frame.columns]
        if need_labels:
            missing += [c for c in self.labels if c not in frame.columns]
        if missing:
            hints = "".join(did_you_mean(m, [str(c) for c in frame.columns]) for m in missing[:3])
            raise DataError(f"the frame lacks columns {missing} that the pipeline needs "
                            f"(frame columns: {list(frame.columns)[:20]}).{hints}")

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "FeaturePipeline":
        """Forget any previous fit and learn from ``frame`` (the training split only); returns self."""
        for f in self.features:
            f.reset()
        return self.partial_fit(frame)

    def partial_fit(self, frame: pd.DataFrame) -> "FeaturePipeline":
        """Update the vocabularies (they grow), the running statistics and the bucket edges; returns self."""
        self._check(frame, strict=False, need_labels=False)
        owners = [f for f in self.features if not (isinstance(f, TokenSeq) and f.shared)]
        for f in owners + [f for f in self.features if f not in owners]:
            f.partial_fit(frame[f.name])
        return self

    def fit_chunks(self, chunks: Iterable[pd.DataFrame]) -> "FeaturePipeline":
        """``fit`` on a stream of frames (e.g. ``pd.read_csv(..., chunksize=...)``) without holding them."""
        for f in self.features:
            f.reset()
        for chunk in chunks:
            self.partial_fit(chunk)
        return self

    @property
    def fitted(self) -> bool:
        return all(f.fitted for f in self.features)

    # -- applying ------------------------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame, strict: bool = False, labels: Optional[bool] = None
                  ) -> Dict[str, np.ndarray]:
        """``frame`` -> ``key -> array`` (``[N]`` or ``[N, max_len]``), labels as ``float32 [N]``.

        Args:
            strict: a column the pipeline does not know raises (use at serving time).
            labels: require the label columns (``True``), skip them (``False``), or pass those present
                (``None``).

        Raises:
            DataError: not fitted, a missing or (strict) unknown column, a value of the wrong type.
        """
        if not self.fitted:
            raise DataError("the FeaturePipeline is not fitted; call fit(train_frame) first, or load a state.")
        self._check(frame, strict, need_labels=bool(labels))
        out: Dict[str, np.ndarray] = {}
        for f in self.features:
            if isinstance(f, TokenSeq):
                out.update(f.transform_columns(frame[f.name], frame[f.weight] if f.weight else None))
            else:
                out.update(f.transform(frame[f.name]))
        if labels is not False:
            for c in self.labels:
                if c in frame.columns:
                    out[c] = numeric_values(frame[c], c).astype(np.float32)
        return out

    def to_tensors(self, frame: pd.DataFrame, **kwargs) -> Dict[str, torch.Tensor]:
        """:meth:`transform` as torch tensors (no copy)."""
        return {k: torch.from_numpy(v) for k, v in self.transform(frame, **kwargs).items()}

    def transform_records(self, records: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]
                          ) -> Dict[str, torch.Tensor]:
        """Rows of raw values (dicts, e.g. a serving request) -> tensors; unknown keys raise, labels not needed.

        Raises:
            DataError: an unknown field, a missing field, a value of the wrong type.
        """
        if isinstance(records, Mapping):
            records = [records]
        return self.to_tensors(pd.DataFrame.from_records(list(records)), strict=True, labels=False)

    # -- description ---------------------------------------------------------------------------------------
    def specs(self) -> Dict[str, tuple]:
        """``key -> (type, size)`` of every output (the ``fields`` argument of ``FieldEmbedding``)."""
        out = {}
        for f in self.features:
            out.update(f.specs())
        return out

    def sizes(self) -> Dict[str, int]:
        """``key -> embedding rows`` of the token outputs (grow the model's tables to these after a
        ``partial_fit``)."""
        return {k: size for k, (t, size) in self.specs().items() if t in ("token", "token_seq")}

    def seq_weights(self) -> Dict[str, str]:
        """``token_seq key -> weight key`` (the ``seq_weights`` argument of ``FieldEmbedding``)."""
        return {f.output: f.weight_output for f in self.features if isinstance(f, TokenSeq) and f.weight}

    def read_dtypes(self) -> Dict[str, str]:
        """``column -> dtype`` for ``pd.read_csv(dtype=...)``: string-fitted token columns read as strings,
        so a chunk whose values all look like numbers does not change their type."""
        out = {}
        for f in self.features:
            lookup = getattr(f, "vocab", None) or getattr(f, "hasher", None) or getattr(f, "lookup", None)
            if isinstance(f, TokenSeq) or getattr(lookup, "kind", None) == "str":
                out[f.name] = "str"
                if isinstance(f, TokenSeq) and f.weight:
                    out[f.weight] = "str"
        return out

    # -- persistence ---------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to rebuild the fitted pipeline: plain lists / numbers / strings (JSON-able)."""
        return {"version": STATE_VERSION, "labels": list(self.labels),
                "features": [f.state_dict() for f in self.features]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "FeaturePipeline":
        """Rebuild a pipeline from :meth:`state_dict`.

        Raises:
            DataError: a state of another version or an unknown feature kind.
        """
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise DataError(f"not a FeaturePipeline state of version {STATE_VERSION} "
                            f"(got version {getattr(state, 'get', lambda k: None)('version')!r}).")
        feats = []
        for entry in state["features"]:
            kind = entry.get("kind")
            if kind not in FEATURE_KINDS:
                raise DataError(f"unknown feature kind {kind!r} in the state; known: {sorted(FEATURE_KINDS)}.")
            feats.append(FEATURE_KINDS[kind](**entry["config"]))
        pipe = cls(feats, labels=state["labels"])
        for f, entry in zip(pipe.features, state["features"]):
            f.load_state(entry)
        return pipe

    def save(self, path: str) -> None:
        """Write :meth:`state_dict` as JSON."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.state_dict(), fh)

    @classmethod
    def load(cls, path: str) -> "FeaturePipeline":
        with open(path, encoding="utf-8") as fh:
            return cls.from_state(json.load(fh))

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(f) for f in self.features)
        return f"FeaturePipeline([\n  {inner}\n], labels={self.labels})"
