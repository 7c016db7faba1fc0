"""ALSDataset: the train matrix by user rows and by item rows, for alternating solvers (WRMF, iALS)."""
from typing import Iterator, Optional

import numpy as np
import scipy.sparse as sp

from recstudio.data.fields import FieldType
from recstudio.data.types.base import Batch, BatchDataset, Device, EpochLoader, TorchCSR
from recstudio.utils.errors import ConfigError


class CSRRowsDataset(BatchDataset):
    """Rows ``1..n-1`` of a sparse matrix as batches: ``{id_key, 'indptr', 'indices', 'values'}``.

    ``indptr`` is ``[B+1]``; ``indices`` (int64) / ``values`` (float32) hold the nonzeros of the
    batch rows (sorted by column within a row). Rows without nonzeros are included (empty
    segments), so a solver also updates ids never seen in training.
    """

    phases = ("train",)

    def __init__(self, split, matrix: sp.csr_matrix, id_key: str, col_key: str,
                 resident_device: Device = None, seed: Optional[int] = None):
        super().__init__(split, "train", resident_device, seed)
        self.matrix = TorchCSR(matrix, self.device)
        self.id_key = id_key
        self.columns[id_key] = self.tensor(np.arange(1, matrix.shape[0], dtype=np.int64))
        self.field_types = {id_key: FieldType.TOKEN, "indptr": None, "indices": FieldType.TOKEN,
                            "values": FieldType.FLOAT}
        self.sources["indices"] = col_key

    def extend(self, idx, batch: Batch) -> None:
        batch["indptr"], batch["indices"], batch["values"] = self.matrix.rows(batch[self.id_key])


class AlternatingLoader:
    """One epoch = every user batch, then every item batch (each from its own :class:`EpochLoader`)."""

    def __init__(self, users: EpochLoader, items: EpochLoader):
        self.users, self.items = users, items

    def set_epoch(self, epoch: int) -> None:
        self.users.set_epoch(epoch)
        self.items.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.users) + len(self.items)

    def __iter__(self) -> Iterator[Batch]:
        yield from self.users
        yield from self.items


class ALSDataset(CSRRowsDataset):
    """The train interactions as a users x items CSR and its transpose, for WRMF / iALS / CML.

    The dataset itself iterates over user rows (users ``1..num_users-1``, including users without
    train items); :attr:`item_rows` is the same over item rows. Batches:

    - user side: the user field (int64 ``[B]``), ``indptr`` (``[B+1]``), ``indices`` (item ids),
      ``values`` (float32: 1.0, or the ``value`` field);
    - item side: the item field, ``indptr``, ``indices`` (user ids), ``values``.

    A solver tells the sides apart by the id key (``ds.uid_field in batch``). For closed-form
    steps on the whole matrix use :attr:`user_matrix` / :attr:`item_matrix` (scipy CSR).

    Args:
        split: the split (``phase`` must be ``'train'``).
        value: a float interaction field for the values (e.g. the rating); ``None`` = 1.0.
        resident_device, seed: see :class:`~recstudio.data.types.base.BatchDataset`.

    Example:
        >>> als = ALSDataset(split)                                       # doctest: +SKIP
        >>> for batch in als.loader(1024):  # doctest: +SKIP
        ...     side = "user" if split.dataset.uid_field in batch else "item"  # user batches, then item
    """

    def __init__(self, split, phase: str = "train", value: Optional[str] = None,
                 resident_device: Device = None, seed: Optional[int] = None):
        if phase != "train":
            raise ConfigError(f"ALSDataset fits on the train matrix (phase='train'), got {phase!r}.")
        ds = split.dataset
        if value is not None and value not in ds.inter:
            raise ConfigError(f"value={value!r} is not an interaction field; fields: {ds.inter.names}.")
        self.user_matrix = ds.interaction_matrix(split.train, value).tocsr()
        self.item_matrix = self.user_matrix.T.tocsr()
        super().__init__(split, self.user_matrix, ds.uid_field, ds.iid_field, resident_device, seed)
        self.item_rows = CSRRowsDataset(split, self.item_matrix, ds.iid_field, ds.uid_field, resident_device, seed)

    def users_loader(self, batch_size: int, shuffle: bool = False, **kwargs) -> EpochLoader:
        """Batches of user rows (see :meth:`BatchDataset.loader` for the options)."""
        return BatchDataset.loader(self, batch_size, shuffle=shuffle, **kwargs)

    def items_loader(self, batch_size: int, shuffle: bool = False, **kwargs) -> EpochLoader:
        """Batches of item rows."""
        return self.item_rows.loader(batch_size, shuffle=shuffle, **kwargs)

    def loader(self, batch_size: int, shuffle: Optional[bool] = False, **kwargs) -> AlternatingLoader:
        """Alternating epochs: all user batches, then all item batches."""
        return AlternatingLoader(self.users_loader(batch_size, shuffle=bool(shuffle), **kwargs),
                                 self.items_loader(batch_size, shuffle=bool(shuffle), **kwargs))
