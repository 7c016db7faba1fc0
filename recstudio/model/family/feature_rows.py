"""The labelled rows a feature model trains and is evaluated on: only the fields it uses, no feature
table joined, optionally negative-down-sampled and with each row's position in its user's history."""
from typing import List, Optional, Tuple

import numpy as np
import torch

from recstudio.data.types.triplet import NEG_ITEM, TripletDataset
from recstudio.utils.errors import ConfigError, DataError

#: batch key of a row's position in its user's time-ordered interactions (models declaring ``history_seq``)
HISTORY_POS = "history_pos"


class FieldRowsDataset(TripletDataset):
    """A :class:`TripletDataset` of a phase's rows that keeps only ``keep_fields`` (plus the user and
    item ids) and joins no feature table: the model gathers user / item features by id.

    Example:
        >>> ds = FieldRowsDataset(split, "valid", keep_fields=["label", "weekday"])   # doctest: +SKIP
        >>> sorted(next(iter(ds.loader(4)))) == sorted(["user_id", "item_id", "label", "weekday"])  # doctest: +SKIP
        True
    """

    def __init__(self, split, phase: str = "train", keep_fields: Optional[List[str]] = None,
                 history_position: bool = False, neg_sample_rate: float = 1.0,
                 label: Optional[Tuple[str, Optional[float]]] = None, **kwargs):
        kwargs["join_features"] = False
        super().__init__(split, phase, **kwargs)
        if neg_sample_rate != 1.0:
            self._down_sample(float(neg_sample_rate), label)
        if keep_fields is not None:
            keep = set(keep_fields) | {self.uid, self.iid, NEG_ITEM}
            missing = sorted(set(keep_fields) - set(self.columns))
            if missing:
                raise DataError(f"the {phase} rows lack the columns {missing} the model uses; interaction columns "
                                f"are {sorted(self.columns)}.")
            for key in [k for k in self.columns if k not in keep]:
                del self.columns[key]
                self.field_types.pop(key, None)
        if history_position:  # ``HISTORY_POS``: the row's index among its user's (user-, time-sorted) rows
            ds = self.dataset
            rows = np.asarray(self.rows, dtype=np.int64)
            self.columns[HISTORY_POS] = self.tensor(rows - ds.user_offsets[ds.users[rows]])
            self.field_types[HISTORY_POS] = None

    def _down_sample(self, rate: float, label: Optional[Tuple[str, Optional[float]]]) -> None:
        """Keep every positive row and each negative one with probability ``rate``: one uniform draw per row
        from the dataset's seed, so the kept rows depend only on (data, seed, rate)."""
        from recstudio.data.types.base import torch_generator
        if label is None:
            raise ConfigError("FieldRowsDataset: neg_sample_rate needs label=(column, threshold or None).")
        col, threshold = label
        values = self.columns[col].detach().cpu().double()
        y = (values >= float(threshold)).double() if threshold is not None else values
        if not bool(((y == 0) | (y == 1)).all()):
            raise DataError(f"neg_sample_rate keeps a share of the negative rows, which needs 0/1 labels; column "
                            f"{col!r} holds soft labels. Set neg_sample_rate to 1.")
        u = torch.rand(len(y), generator=torch_generator(self.seed, 0x4E5352), dtype=torch.float64)
        keep = (y == 1) | (u < rate)
        if not bool((keep & (y == 0)).any()):
            raise DataError(f"neg_sample_rate {rate} keeps none of the {int((y == 0).sum())} negative {self.phase} "
                            "rows; raise it.")
        idx = torch.nonzero(keep).squeeze(1)
        self.kept_fraction = float(keep.double().mean())
        self.rows = np.asarray(self.rows)[idx.numpy()]
        for key in list(self.columns):
            self.columns[key] = self.columns[key][idx.to(self.columns[key].device)]
