"""Shared pieces of the feature pipeline: the feature base class and value-type checks.

Every feature reads one input column of a pandas DataFrame and writes one (or two) output arrays.
Values are checked column-wise (vectorised): a value of the wrong type raises
:class:`~recstudio.utils.errors.DataError` naming the field, the offending value and what to do.
"""
from typing import Any, Dict, List

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from recstudio.utils.errors import ConfigError, DataError


def to_python(value):
    """numpy scalars / arrays -> plain Python (JSON-able) values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def value_kind(col: pd.Series, field: str) -> str:
    """``'int'`` for integer / bool columns (also float columns holding only whole numbers, as a CSV
    column with gaps reads), ``'str'`` for string / object columns of scalars.

    Raises:
        DataError: a column of floats with fractions, or of lists / dicts (categorical values are scalars).
    """
    if ptypes.is_bool_dtype(col) or ptypes.is_integer_dtype(col):
        return "int"
    if ptypes.is_float_dtype(col):
        x = col.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = x[~np.isnan(x)]
        if np.all(finite == np.round(finite)):
            return "int"
        raise DataError(f"field {field!r}: categorical values must be integers or strings, got floats such as "
                        f"{finite[finite != np.round(finite)][0]!r}; discretise it (Bucketized) or cast it.")
    _check_scalars(col, field)
    return "str"


def _check_scalars(col: pd.Series, field: str) -> None:
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("mixed", "mixed-integer"):
        nested = col.map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray))).to_numpy(bool)
        if nested.any():
            raise DataError(f"field {field!r}: expected one scalar value per row, got "
                            f"{type(col[nested].iloc[0]).__name__} {col[nested].iloc[0]!r}; declare a sequence "
                            f"field (TokenSeq) for lists.")


def coerce_values(col: pd.Series, kind: str, field: str) -> pd.Series:
    """Cast a column to the value kind the feature was fitted on (``'int'`` -> nullable Int64, ``'str'`` ->
    object strings), missing values kept as missing.

    Integers given to a string-fitted field are written in decimal (``7 -> '7'``, the way a CSV reads);
    strings given to an integer-fitted field must parse as integers.

    Raises:
        DataError: a value that cannot be read as the fitted kind.
    """
    missing = col.isna().to_numpy(bool)
    if kind == "int":
        if ptypes.is_integer_dtype(col) or ptypes.is_bool_dtype(col):
            return col.astype("Int64")
        _check_scalars(col, field)
        num = pd.to_numeric(col, errors="coerce")
        bad = (num.isna().to_numpy(bool) & ~missing)
        if not bad.any():
            x = num.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isnan(x) & (x != np.round(x))
        if bad.any():
            raise DataError(f"field {field!r} was fitted on integer values but got {col[bad].iloc[0]!r} "
                            f"({type(col[bad].iloc[0]).__name__}); pass integers, or refit the pipeline on strings.")
        return num.astype("Int64")
    if kind == "str":
        if ptypes.is_float_dtype(col):
            x = col.to_numpy(dtype=np.float64, na_value=np.nan)
            frac = ~np.isnan(x) & (x != np.round(x))
            if frac.any():
                raise DataError(f"field {field!r} was fitted on string values but got the number {x[frac][0]!r}; "
                                f"pass strings.")
            col = col.astype("Int64")
        if ptypes.is_integer_dtype(col) or ptypes.is_bool_dtype(col):
            out = col.astype(str).astype(object)
            out[missing] = None
            return out
        if ptypes.is_string_dtype(col) and col.dtype != object:
            return col                                         # a pandas string column: already strings
        _check_scalars(col, field)
        if pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):
            return col
        out = col.astype(object).copy()
        non_str = col.map(lambda v: not isinstance(v, str), na_action="ignore").fillna(False).to_numpy(bool)
        out[non_str] = col[non_str].astype(str)
        return out.where(~missing, None)
    raise ConfigError(f"unknown value kind {kind!r}")


class Feature:
    """One column in, one output array (``[N]`` or ``[N, L]``) out.

    Subclasses define ``type`` (``'token' | 'token_seq' | 'float'``), ``_partial_fit(col)``,
    ``_transform(col) -> dict of arrays``, ``size`` (rows of its embedding table incl. padding 0, or 1),
    and ``_state() / _load(state)``.

    Args:
        name: the input column.
        output: the key of the output array (default ``name``).
    """

    kind_name = "feature"
    type = "token"

    def __init__(self, name: str, output: str = None):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a feature needs a column name (str), got {name!r}.")
        self.name = name
        self.output = output or name
        self.fitted = False

    # -- fitting -------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything learned (``fit`` = ``reset`` + ``partial_fit``)."""
        self.fitted = False

    def partial_fit(self, col: pd.Series) -> "Feature":
        self._partial_fit(col)
        self.fitted = True
        return self

    def transform(self, col: pd.Series) -> Dict[str, np.ndarray]:
        if not self.fitted:
            raise DataError(f"feature {self.name!r} is not fitted; call FeaturePipeline.fit(train_frame) first.")
        return self._transform(col)

    # -- description ---------------------------------------------------------------------------------------
    def specs(self) -> Dict[str, tuple]:
        """``output key -> (type, size)`` as :class:`~recstudio.model.module.field_embedding.FieldEmbedding`
        takes them."""
        return {self.output: (self.type, self.size)}

    @property
    def outputs(self) -> List[str]:
        return list(self.specs())

    def config(self) -> Dict[str, Any]:
        """Constructor arguments (JSON-able)."""
        return {"name": self.name, "output": self.output}

    def state_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind_name, "config": self.config(), "fitted": self.fitted, "state": self._state()}

    def load_state(self, state: Dict[str, Any]) -> None:
        self.fitted = bool(state["fitted"])
        self._load(state["state"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
