"""Where data comes from: the registry, atomic folders, DataFrames, CSV files and CSR matrices.

Each function returns a preprocessed :class:`~recstudio.data.dataset.RecDataset`; keyword
overrides are data-config keys (see :mod:`recstudio.data.config`). File sources are cached
(see :mod:`recstudio.data.cache`); in-memory sources (DataFrame, CSR) are not.
"""
import hashlib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recstudio.data import cache
from recstudio.data.atomic import AtomicTable, find_atomic_files, read_atomic
from recstudio.data.config import preprocess_config, resolve_data_config
from recstudio.data.dataset import RecDataset
from recstudio.data.fields import FieldType
from recstudio.data.preprocess import Preprocessor
from recstudio.utils.errors import ConfigError, DataError  # [session-data] ConfigError
from recstudio.utils.suggest import did_you_mean


def _data_dir(config: Mapping[str, Any]) -> Path:
    from recstudio.data.registry import default_data_dir
    return Path(default_data_dir(config["data_dir"]))


def load_dataset(name: str, **overrides) -> RecDataset:
    """Load a dataset by name: download (once), convert, preprocess, cache.

    Args:
        name: a registry name (case-insensitive), e.g. ``"ml-100k"`` (bundled, no network)
            or ``"ml-1m"`` (downloaded and checksum-verified on first use); or a RecBole atomic
            folder: a name found as ``<data_dir>/<name>/<name>.inter``, or the path of a folder
            holding ``<folder name>.inter`` (loaded as :func:`from_atomic` loads it).
        **overrides: data-config keys overriding the dataset's YAML defaults.

    Example:
        >>> ds = load_dataset("ml-100k")                     # doctest: +SKIP
        >>> ds.num_interactions
        100000
    """
    from recstudio.data.registry import get_spec, prepare_dataset
    spec = get_spec(name, data_dir=overrides.get("data_dir"))
    config = resolve_data_config(spec.config, overrides, where=f"config of dataset {spec.name!r}")
    folder = prepare_dataset(spec, data_dir=config["data_dir"])
    cache_dir = _custom_cache_dir(config, folder, spec.name) if spec.atomic else \
        _data_dir(config) / spec.name / "processed"
    return load_atomic_folder(folder, spec.name, config, cache_dir)


def _custom_cache_dir(config: Mapping[str, Any], folder, name: str) -> Path:
    """The processed cache of a user's atomic folder: ``<data_dir>/custom/<name>-<hash of its path>``."""
    tag = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:10]
    return _data_dir(config) / "custom" / f"{name}-{tag}"


def from_atomic(folder, name: Optional[str] = None, **overrides) -> RecDataset:
    """Load a folder of RecBole-style atomic files (``<name>.inter``, ``.user``, ``.item``, ...).

    Args:
        folder: the folder; ``name`` defaults to the folder name.
        **overrides: data-config keys.

    Example:
        >>> ds = from_atomic("my_data/", min_user_inter=5)    # doctest: +SKIP
    """
    config = resolve_data_config(overrides, where="from_atomic overrides")
    files = find_atomic_files(folder, name)
    name = files["inter"].stem
    return load_atomic_folder(Path(folder), name, config, _custom_cache_dir(config, folder, name))


def load_atomic_folder(folder: Path, name: str, config: Dict[str, Any], cache_dir: Path) -> RecDataset:
    """Read, preprocess and cache the atomic files of ``folder`` (used by the loaders above)."""
    files = find_atomic_files(folder, name)
    load_fields = config["load_fields"] or {}
    unknown = [s for s in load_fields if s not in files]
    if unknown:
        raise DataError(f"load_fields names tables {unknown} that {folder} does not have; it has {list(files)}.")
    key = path = None
    if config["cache"]:
        inputs = cache.fingerprint_files(files.values(), cache_dir / "fingerprints.json")
        key = cache.cache_key(inputs, preprocess_config(config))
        path = cache_dir / f"{key}.npz"
        ds = cache.load_dataset(path, key)
        if ds is not None:
            ds.config = {**ds.config, **{k: v for k, v in config.items() if k not in preprocess_config(config)}}
            return ds
    tables = {s: read_atomic(p, config["field_separator"], config["seq_separator"], config["encoding"],
                             fields=load_fields.get(s)) for s, p in files.items()}
    ds = Preprocessor(dict(config), name).run(tables)
    if config["cache"]:
        cache.save_dataset(ds, path, key)
    return ds


# ---- in-memory sources ---------------------------------------------------------------
def infer_field_type(col: pd.Series) -> FieldType:
    """Guess the atomic type of a DataFrame column: numbers -> float, lists -> *_seq, else token."""
    if pd.api.types.is_bool_dtype(col.dtype):
        return FieldType.TOKEN
    if pd.api.types.is_numeric_dtype(col.dtype):
        return FieldType.FLOAT
    first = col.dropna().head(1)
    if len(first) and isinstance(first.iloc[0], (list, tuple, np.ndarray)):
        inner = [v for v in first.iloc[0]]
        return FieldType.FLOAT_SEQ if inner and all(isinstance(v, (float, np.floating)) for v in inner) \
            else FieldType.TOKEN_SEQ
    return FieldType.TOKEN


def frame_table(df: pd.DataFrame, roles: Dict[str, Optional[str]], types: Optional[Dict[str, Any]] = None,
                what: str = "DataFrame") -> AtomicTable:
    """An :class:`AtomicTable` over a user's DataFrame (which is not modified)."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame for the {what}, got {type(df).__name__}.")
    for role, col in roles.items():
        if col is not None and col not in df.columns:
            raise DataError(f"the {what} has no column {col!r} (given as {role}); its columns are "
                            f"{list(df.columns)}." + did_you_mean(str(col), [str(c) for c in df.columns]))
    types = {k: FieldType(v) for k, v in (types or {}).items()}
    fixed = {roles.get("user"): FieldType.TOKEN, roles.get("item"): FieldType.TOKEN,
             roles.get("rating"): FieldType.FLOAT, roles.get("time"): FieldType.FLOAT}
    out = {}
    for col in df.columns:
        if not isinstance(col, str):
            raise DataError(f"column names must be strings; the {what} has column {col!r}.")
        out[col] = types.get(col) or fixed.get(col) or infer_field_type(df[col])
    return AtomicTable(df, out)


def from_dataframe(df: pd.DataFrame, user: str = "user_id", item: str = "item_id", rating: Optional[str] = None,
                   time: Optional[str] = None, user_features: Optional[pd.DataFrame] = None,
                   item_features: Optional[pd.DataFrame] = None, field_types: Optional[Dict[str, str]] = None,
                   name: str = "custom", **overrides) -> RecDataset:
    """Build a dataset from a pandas DataFrame of interactions.

    Args:
        df: one row per interaction; it is not modified.
        user, item: the user and item id columns (any hashable values; original ids are kept).
        rating: an optional numeric rating column.
        time: an optional time column (numbers = seconds, datetimes, or text parsed with
            ``time_format``).
        user_features, item_features: optional DataFrames keyed by the ``user`` / ``item`` column.
        field_types: column -> ``token`` | ``token_seq`` | ``float`` | ``float_seq`` for columns
            whose type should not be inferred (numbers are floats, lists sequences, else tokens).
        name: a name for reports.
        **overrides: data-config keys (``min_user_inter``, ``split_mode``, ...).

    Example:
        >>> df = pd.DataFrame({"u": [1, 1, 2], "i": ["a", "b", "a"], "r": [5, 3, 4]})
        >>> ds = from_dataframe(df, user="u", item="i", rating="r", rating_threshold=4)
        >>> ds.num_interactions
        2
    """
    if overrides.get("session_field") is not None:  # [session-data] the session column takes the user role
        if user not in ("user_id", overrides["session_field"]):
            raise ConfigError(f"give either user={user!r} or session_field={overrides['session_field']!r}: session "
                              "data has no user role (a user column is then loaded as an ordinary token column).")
        user = overrides["session_field"]
    overrides = {"user_field": user, "item_field": item, "rating_field": rating, "time_field": time,
                 "cache": False, **overrides}
    config = resolve_data_config(overrides, where="from_dataframe arguments")
    roles = {"user": user, "item": item, "rating": rating, "time": time}
    tables = {"inter": frame_table(df, roles, field_types, "interaction DataFrame")}
    if user_features is not None:
        tables["user"] = frame_table(user_features, {"user": user}, field_types, "user_features DataFrame")
    if item_features is not None:
        tables["item"] = frame_table(item_features, {"item": item}, field_types, "item_features DataFrame")
    return Preprocessor(config, name).run(tables)


def from_csv(path, user: str = "user_id", item: str = "item_id", rating: Optional[str] = None,
             time: Optional[str] = None, sep: str = ",", header: Optional[int] = 0, names=None,
             encoding: str = "utf-8", name: Optional[str] = None, **overrides) -> RecDataset:
    """Build a dataset from a CSV (or any delimited) file with a column mapping.

    Args:
        path: the file.
        user, item, rating, time: column names in the file (see :func:`from_dataframe`).
        sep: the delimiter.
        header, names: as in :func:`pandas.read_csv` (``header=None, names=[...]`` for files
            without a header line).
        encoding: the file's text encoding.
        name: a name for reports (default: the file stem).
        **overrides: data-config keys.

    Example:
        >>> ds = from_csv("ratings.csv", user="userId", item="movieId", rating="rating",
        ...               time="timestamp")                    # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist.")
    try:
        df = pd.read_csv(path, sep=sep, header=header, names=names, encoding=encoding,
                         engine="pyarrow" if len(sep) == 1 and names is None else "python")
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as a {sep!r}-separated file: {e}") from e
    if df.shape[1] == 1:
        raise DataError(f"{path}: found one column ({df.columns[0]!r}) with separator {sep!r}; "
                        "pass the file's separator as sep= (e.g. sep='\\t').")
    df.columns = [str(c) for c in df.columns]
    return from_dataframe(df, user=user, item=item, rating=rating, time=time, name=name or path.stem, **overrides)


def from_csr(matrix, user_ids=None, item_ids=None, name: str = "csr", **overrides) -> RecDataset:
    """Build a dataset from a users x items scipy sparse matrix (values become ratings).

    Args:
        matrix: any scipy sparse matrix; stored zeros are dropped.
        user_ids, item_ids: original ids of the rows / columns (default ``0..n-1``).
        name: a name for reports.
        **overrides: data-config keys.

    Example:
        >>> m = sp.csr_matrix(np.array([[1, 0], [1, 1]]))
        >>> from_csr(m).num_interactions
        3
    """
    if not sp.issparse(matrix):
        raise DataError(f"from_csr expects a scipy sparse matrix, got {type(matrix).__name__}.")
    coo = sp.coo_matrix(matrix)
    coo.eliminate_zeros()
    rows, cols = coo.row, coo.col
    for ids, n, what in ((user_ids, coo.shape[0], "user_ids"), (item_ids, coo.shape[1], "item_ids")):
        if ids is not None and len(ids) != n:
            raise DataError(f"{what} has {len(ids)} entries but the matrix has {n} {what[:4]}s.")
    df = pd.DataFrame({
        "user_id": np.asarray(user_ids)[rows] if user_ids is not None else rows,
        "item_id": np.asarray(item_ids)[cols] if item_ids is not None else cols,
        "rating": coo.data.astype(np.float64)})
    return from_dataframe(df, "user_id", "item_id", "rating", name=name, **overrides)
