"""Column tables of processed data and the maps between original and inner ids."""
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

import numpy as np
import pandas as pd

from recstudio.data.fields import FieldType
from recstudio.utils.errors import DataError


@dataclass
class FeatureTable:
    """Processed columns, all of the same length.

    ``token`` columns hold inner ids (int64, 0 = padding); ``token_seq`` columns a 2-D
    int64 array padded with 0; ``float`` columns float32 (time float64); ``float_seq`` a
    2-D float32 array padded with 0.

    Args:
        columns: field name -> array.
        types: field name -> :class:`FieldType`.

    Example:
        >>> t = FeatureTable({"item_id": np.array([1, 2])}, {"item_id": FieldType.TOKEN})
        >>> len(t.take(np.array([1])))
        1
    """

    columns: Dict[str, np.ndarray]
    types: Dict[str, FieldType] = field(default_factory=dict)

    def __post_init__(self):
        lengths = {k: len(v) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"columns of a FeatureTable differ in length: {lengths}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    @property
    def names(self):
        return list(self.columns)

    def take(self, index: np.ndarray) -> "FeatureTable":
        """Rows at ``index`` (an integer array or boolean mask) as a new table."""
        return FeatureTable({k: v[index] for k, v in self.columns.items()}, dict(self.types))

    def to_frame(self) -> pd.DataFrame:
        """A pandas view (sequence columns become lists)."""
        return pd.DataFrame({k: (list(v) if v.ndim > 1 else v) for k, v in self.columns.items()})


class IdMap:
    """Original tokens <-> inner ids ``1..n`` (0 is padding).

    Args:
        tokens: the original token of inner id ``i`` at position ``i - 1``.
        name: what the ids are (for error messages), e.g. ``"user"``.

    Example:
        >>> m = IdMap(np.array(["u7", "u3"]), "user")
        >>> m.encode(["u3"]), m.decode([1])
        (array([2]), array(['u7'], dtype='<U2'))
    """

    def __init__(self, tokens: np.ndarray, name: str = "id"):
        self.tokens = np.asarray(tokens)
        self.name = name
        self._index: Optional[pd.Index] = None

    def __len__(self) -> int:
        """Number of real ids (padding excluded)."""
        return len(self.tokens)

    @property
    def index(self) -> pd.Index:
        if self._index is None:
            self._index = pd.Index(self.tokens)
        return self._index

    def encode(self, originals: Iterable, missing: str = "raise") -> np.ndarray:
        """Inner ids of original tokens.

        Args:
            originals: original ids (any iterable; numbers and strings are matched as given,
                and strings are also tried against numeric vocabularies).
            missing: ``"raise"`` (DataError naming the unknown ids) or ``"zero"`` (map to 0).
        """
        values = np.asarray(list(originals) if not isinstance(originals, (np.ndarray, pd.Series, pd.Index))
                            else originals)
        pos = self.index.get_indexer(values)
        if (pos < 0).any() and values.dtype.kind in "OUS" and self.tokens.dtype.kind in "iuf":
            try:
                pos = self.index.get_indexer(values.astype(self.tokens.dtype))
            except (ValueError, TypeError):
                pass
        if (pos < 0).any() and values.dtype.kind in "iuf" and self.tokens.dtype.kind in "OUS":
            pos = self.index.get_indexer(values.astype(str))
        if missing == "raise" and (pos < 0).any():
            bad = values[pos < 0][:5].tolist()
            raise DataError(f"unknown {self.name} ids {bad} ({int((pos < 0).sum())} unknown); they are not in "
                            f"this dataset's {len(self)} {self.name}s (after filtering).")
        return (pos + 1).astype(np.int64)

    def decode(self, inner) -> np.ndarray:
        """Original tokens of inner ids (``0``, padding, is an error)."""
        inner = np.asarray(inner, dtype=np.int64)
        if ((inner < 1) | (inner > len(self))).any():
            bad = inner[(inner < 1) | (inner > len(self))][:5].tolist()
            raise DataError(f"inner {self.name} ids {bad} are out of range 1..{len(self)}.")
        return self.tokens[inner - 1]


def portable_tokens(values) -> np.ndarray:
    """Original tokens as a numpy array that ``np.save`` writes without pickle."""
    arr = np.asarray(values)
    if arr.dtype.kind == "O" or arr.dtype.kind not in "iufUSb":
        arr = np.asarray(pd.Index(values).astype(str), dtype=str)
    return arr
