"""Numeric features: scaling with incrementally updated statistics, log transform, discretisation.

Statistics merge exactly across chunks: the mean and variance with Chan et al.'s parallel formula
(``M2 = M2_a + M2_b + delta^2 n_a n_b / n``), min and max by comparison, so feeding the data in any
number of pieces gives the statistics of the whole (up to float rounding).
"""
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recstudio.data.features.base import Feature, _check_scalars
from recstudio.utils.errors import ConfigError, DataError


def numeric_values(col: pd.Series, field: str) -> np.ndarray:
    """A column -> ``float64 [N]`` with NaN for missing values.

    Raises:
        DataError: a value that is not a number (a non-numeric string, a list).
    """
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(col) and col.dtype != object:
        try:                                               # an Arrow string column: cast in Arrow
            arr = pa.array(col, from_pandas=True)
            return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            pass                                           # fall through for the error message
    _check_scalars(col, field)
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy(bool) & col.notna().to_numpy(bool)
    if bad.any():
        raise DataError(f"field {field!r} is numeric but got {col[bad].iloc[0]!r} "
                        f"({type(col[bad].iloc[0]).__name__}); pass numbers (missing values may be None/NaN).")
    return num.to_numpy(dtype=np.float64, na_value=np.nan)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log(1 + |x|)``: the log transform, defined for negative values too."""
    return np.sign(x) * np.log1p(np.abs(x))


class RunningStats:
    """Count, mean, variance (``M2``), min and max of a stream of numbers, merged chunk by chunk.

    Example:
        >>> s = RunningStats().update(np.array([1.0, 2.0])).update(np.array([3.0]))
        >>> s.mean, round(s.var, 4), s.min, s.max
        (2.0, 0.6667, 1.0, 3.0)
    """

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = float("inf"), float("-inf")

    def update(self, x: np.ndarray) -> "RunningStats":
        """Merge the finite values of ``x``; returns self."""
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        nb = int(x.size)
        if not nb:
            return self
        mb = float(x.mean())
        m2b = float(((x - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        return self

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Merge another stream's statistics into this one; returns self."""
        if other.n:
            n = self.n + other.n
            delta = other.mean - self.mean
            self.mean += delta * other.n / n
            self.m2 += other.m2 + delta * delta * self.n * other.n / n
            self.n = n
            self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        return self

    @property
    def var(self) -> float:
        """Population variance (``ddof=0``)."""
        return self.m2 / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var))

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "min": self.min, "max": self.max}

    def load(self, state: dict) -> None:
        self.n, self.mean, self.m2 = int(state["n"]), float(state["mean"]), float(state["m2"])
        self.min, self.max = float(state["min"]), float(state["max"])


class Numeric(Feature):
    """A float field: optional log transform, then ``'standard'`` (``(x - mean) / std``), ``'minmax'``
    (``(x - min) / (max - min)``) or no scaling. Statistics are of the (log-transformed) training values and
    follow later data through :meth:`partial_fit`. Missing values become ``fill`` after scaling (default 0:
    the mean under standard scaling).

    Output: ``float32 [N]``.

    Args:
        name: the column.
        scaling: ``'standard' | 'minmax' | None``.
        log: apply :func:`signed_log1p` first.
        fill: the output of a missing value.
        clip: (minmax) clip the output to ``[0, 1]`` (values outside the seen range).
    """

    kind_name = "numeric"
    type = "float"
    size = 1

    def __init__(self, name: str, scaling: Optional[str] = "standard", log: bool = False, fill: float = 0.0,
                 clip: bool = False, output: str = None):
        super().__init__(name, output)
        if scaling not in ("standard", "minmax", None):
            raise ConfigError(f"field {name!r}: scaling must be 'standard', 'minmax' or None, got {scaling!r}.")
        self.scaling, self.log, self.fill, self.clip = scaling, bool(log), float(fill), bool(clip)
        self.stats = RunningStats()

    def reset(self):
        super().reset()
        self.stats = RunningStats()

    def _values(self, col):
        x = numeric_values(col, self.name)
        return signed_log1p(x) if self.log else x

    def _partial_fit(self, col):
        self.stats.update(self._values(col))

    def _transform(self, col):
        x = self._values(col)
        s = self.stats
        if self.scaling == "standard":
            x = (x - s.mean) / (s.std if s.std > 0 else 1.0)
        elif self.scaling == "minmax" and s.n:
            span = s.max - s.min
            x = (x - s.min) / (span if span > 0 else 1.0)
            if self.clip:
                x = np.clip(x, 0.0, 1.0)
        x = np.where(np.isnan(x), self.fill, x)
        return {self.output: x.astype(np.float32)}

    def config(self):
        return {**super().config(), "scaling": self.scaling, "log": self.log, "fill": self.fill, "clip": self.clip}

    def _state(self):
        return self.stats.state()

    def _load(self, state):
        self.stats.load(state)


class Bucketized(Feature):
    """A float field discretised into ``bins`` buckets that become a token field.

    ``strategy='uniform'`` (equal width) cuts ``[min, max]`` of the training values into equal intervals
    (the running min/max follow later data); ``'quantile'`` (equal frequency) cuts at the quantiles of a
    uniform reservoir sample of ``sample_size`` training values (exact while fewer values were seen).
    Edges are recomputed at every ``partial_fit`` unless ``freeze=True`` (then fixed after the first fit,
    so a bucket id keeps its meaning for a trained embedding). Equal quantiles merge, so a field with few
    distinct values uses fewer buckets.

    Output: ``int64 [N]``: 0 = missing, ``1..bins`` the bucket (values beyond the edges go to the first /
    last one); size ``bins + 1``.
    """

    kind_name = "bucketized"

    def __init__(self, name: str, bins: int = 10, strategy: str = "quantile", log: bool = False,
                 sample_size: int = 100_000, freeze: bool = False, seed: int = 0, output: str = None):
        super().__init__(name, output)
        if not isinstance(bins, int) or bins < 2:
            raise ConfigError(f"field {name!r}: bins must be an integer >= 2, got {bins!r}.")
        if strategy not in ("quantile", "uniform"):
            raise ConfigError(f"field {name!r}: strategy must be 'quantile' or 'uniform', got {strategy!r}.")
        if not isinstance(sample_size, int) or sample_size < bins:
            raise ConfigError(f"field {name!r}: sample_size must be an integer >= bins, got {sample_size!r}.")
        self.bins, self.strategy, self.log, self.freeze = bins, strategy, bool(log), bool(freeze)
        self.sample_size, self.seed = sample_size, int(seed)
        self.reset()

    size = property(lambda self: self.bins + 1)

    def reset(self):
        super().reset()
        self.stats = RunningStats()
        self.sample = np.empty(0, dtype=np.float64)
        self.edges = np.empty(0, dtype=np.float64)        # the bins - 1 inner edges
        self._rng = np.random.default_rng(self.seed)

    def _values(self, col):
        x = numeric_values(col, self.name)
        return signed_log1p(x) if self.log else x

    def _reservoir(self, x: np.ndarray) -> None:
        """Vectorised reservoir sampling (Algorithm R): the ``i``-th value overall replaces a random slot
        with probability ``k / i``; numpy's last-write-wins on repeated slots matches the sequential order."""
        k, seen = self.sample_size, self.stats.n - x.size          # stats already include x
        take = max(0, min(k - self.sample.size, x.size))
        if take:
            self.sample = np.concatenate([self.sample, x[:take]])
        rest = x[take:]
        if rest.size:
            pos = seen + take + np.arange(rest.size)                 # 0-based global position
            slot = (self._rng.random(rest.size) * (pos + 1)).astype(np.int64)
            keep = slot < k
            self.sample[slot[keep]] = rest[keep]

    def _partial_fit(self, col):
        if self.freeze and self.fitted:
            return
        x = self._values(col)
        x = x[np.isfinite(x)]
        self.stats.update(x)
        if self.strategy == "quantile":
            self._reservoir(x)
            if self.sample.size:
                qs = np.quantile(self.sample, np.linspace(0, 1, self.bins + 1)[1:-1])
                self.edges = np.unique(qs)
        elif self.stats.n:
            self.edges = np.linspace(self.stats.min, self.stats.max, self.bins + 1)[1:-1]

    def _transform(self, col):
        x = self._values(col)
        ids = np.searchsorted(self.edges, x, side="right").astype(np.int64) + 1
        ids[np.isnan(x)] = 0
        return {self.output: ids}

    def config(self):
        return {**super().config(), "bins": self.bins, "strategy": self.strategy, "log": self.log,
                "sample_size": self.sample_size, "freeze": self.freeze, "seed": self.seed}

    def _state(self):
        return {"stats": self.stats.state(), "sample": self.sample.tolist(), "edges": self.edges.tolist(),
                "rng": self._rng.bit_generator.state}

    def _load(self, state):
        self.stats.load(state["stats"])
        self.sample = np.asarray(state["sample"], dtype=np.float64)
        self.edges = np.asarray(state["edges"], dtype=np.float64)
        self._rng = np.random.default_rng(self.seed)
        self._rng.bit_generator.state = state["rng"]
