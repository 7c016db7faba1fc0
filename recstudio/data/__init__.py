"""RecStudio's data layer: load, preprocess, cache, split and batch recommendation data.

Example:
    >>> from recstudio.data import load_dataset
    >>> ds = load_dataset("ml-100k")                 # bundled, no network  # doctest: +SKIP
    >>> split = ds.split()                           # 8:1:1 per user, seeded
    >>> print(ds.statistics().table())
"""
from recstudio.data.atomic import (AtomicTable, read_atomic, read_atomic_folder, write_atomic,
                                   write_atomic_folder)
from recstudio.data.config import DATA_OPTIONS, resolve_data_config
from recstudio.data.dataset import RecDataset
from recstudio.data.fields import FieldType
from recstudio.data.sources import from_atomic, from_csr, from_csv, from_dataframe, load_dataset
from recstudio.data.split import DataSplit, split_dataset
from recstudio.data.table import FeatureTable, IdMap

__all__ = [
    "AtomicTable", "read_atomic", "read_atomic_folder", "write_atomic", "write_atomic_folder",
    "DATA_OPTIONS", "resolve_data_config", "RecDataset", "FieldType", "from_atomic", "from_csr", "from_csv",
    "from_dataframe", "load_dataset", "DataSplit", "split_dataset", "FeatureTable", "IdMap",
]
