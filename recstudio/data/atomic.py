"""Atomic files: RecBole-compatible tab-separated tables with typed headers.

A dataset is a folder of up to six files named ``<name>.<suffix>``:

====== =============================================================
suffix  content
====== =============================================================
inter   user-item interactions (user, item, rating, timestamp, ...)
user    user features, keyed by the user field
item    item features, keyed by the item field
kg      knowledge-graph triples (head_id, relation_id, tail_id)
link    item -> knowledge-graph entity links
net     user -> user social links
====== =============================================================

The first line is the header ``name:type`` per column (see :mod:`recstudio.data.fields`).
Values of ``token_seq`` / ``float_seq`` fields are separated by ``seq_separator``
(a space by default).

In memory an :class:`AtomicTable` holds a pandas DataFrame: ``token`` columns are
``category`` dtype (fast remapping), ``float`` columns ``float64``, sequence columns
raw strings until preprocessing splits them.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recstudio.data.fields import FieldType, parse_header
from recstudio.utils.errors import DataError
from recstudio.utils.io import atomic_path

SUFFIXES = ("inter", "user", "item", "kg", "link", "net")


@dataclass
class AtomicTable:
    """One atomic file in memory.

    Args:
        frame: the table; token columns are ``category``, floats ``float64``,
            sequence columns strings (or lists, for tables built in Python).
        types: field name -> :class:`FieldType`, in column order.
    """

    frame: pd.DataFrame
    types: Dict[str, FieldType]

    def __len__(self) -> int:
        return len(self.frame)


def _read_header(path: Path, field_separator: str, encoding: str) -> List[str]:
    with open(path, "r", encoding=encoding, errors="strict", newline="") as f:
        line = f.readline()
    line = line.rstrip("\r\n")
    if not line:
        raise DataError(f"{path}: the file is empty; an atomic file starts with a 'name:type' header line.")
    return line.split(field_separator)


def read_atomic(
    path,
    field_separator: str = "\t",
    seq_separator: str = " ",
    encoding: str = "utf-8",
    fields: Optional[Sequence[str]] = None,
) -> AtomicTable:
    """Read one atomic file.

    Args:
        path: the ``.inter`` / ``.user`` / ``.item`` / ... file.
        field_separator: column separator (tab in RecBole's files).
        seq_separator: separator inside ``token_seq`` / ``float_seq`` cells; kept for
            validation here, applied in preprocessing.
        encoding: text encoding of the file.
        fields: load only these field names (all when ``None``).

    Returns:
        An :class:`AtomicTable`.

    Raises:
        DataError: missing file, bad header (see :func:`parse_header`), a row with the
            wrong number of columns, or a non-numeric value in a ``float`` column.

    Example:
        >>> table = read_atomic("ml-100k/ml-100k.inter")     # doctest: +SKIP
        >>> table.types["rating"]
        <FieldType.FLOAT: 'float'>
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"atomic file {path} does not exist; check the path or the dataset's data_dir.")
    try:
        cells = _read_header(path, field_separator, encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: cannot decode the header as {encoding!r} ({e}); set encoding.") from e
    header = parse_header(cells, str(path), field_separator)
    names = [n for n, _ in header]
    types = dict(header)
    if fields is not None:
        unknown = [f for f in fields if f not in types]
        if unknown:
            raise DataError(f"{path}: fields {unknown} are not in the header {names}.")
        keep = [n for n in names if n in set(fields)]
    else:
        keep = names
    column_types = {}
    for name in keep:
        t = types[name]
        if t == FieldType.TOKEN:
            column_types[name] = pa.dictionary(pa.int32(), pa.string())
        elif t == FieldType.FLOAT:
            column_types[name] = pa.float64()
        else:
            column_types[name] = pa.string()
    read_opts = pacsv.ReadOptions(column_names=names, skip_rows=1, encoding=encoding, block_size=1 << 24)
    parse_opts = pacsv.ParseOptions(delimiter=field_separator, quote_char=False, escape_char=False,
                                    newlines_in_values=False)
    convert_opts = pacsv.ConvertOptions(column_types=column_types, include_columns=keep,
                                        strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, read_options=read_opts, parse_options=parse_opts,
                               convert_options=convert_opts)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(_describe_bad_row(path, names, types, keep, field_separator, encoding)
                        or f"{path}: cannot parse the file: {' '.join(str(e).split())}") from e
    frame = table.to_pandas()
    for name in keep:
        if types[name].is_seq:
            frame[name] = frame[name].astype(object)
    return AtomicTable(frame=frame, types={n: types[n] for n in keep})


def _describe_bad_row(path: Path, names: List[str], types: Dict[str, FieldType], keep: List[str],
                      field_separator: str, encoding: str) -> Optional[str]:
    """A one-line message naming the first line of ``path`` that does not parse, or ``None``.

    Only run after pyarrow refused the file, to say where and why: a row with another number
    of columns than the header (a wrong ``field_separator``), or a non-numeric ``float`` value.
    """
    floats = [i for i, n in enumerate(names) if types[n] == FieldType.FLOAT and n in keep]
    with open(path, "r", encoding=encoding, errors="replace", newline="") as f:
        f.readline()
        for number, line in enumerate(f, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split(field_separator)
            if len(cells) != len(names):
                return (f"{path}, line {number}: {len(cells)} columns, a different number of columns than the "
                        f"header's {len(names)} ({_short(line)}); check field_separator (now {field_separator!r}).")
            for i in floats:
                value = cells[i].strip()
                if value == "":
                    continue
                try:
                    float(value)
                except ValueError:
                    return (f"{path}, line {number}: field {names[i]!r} is 'float' but holds the non-numeric "
                            f"value {_short(cells[i])}; fix the value or declare the field as 'token'.")
    return None


def _cell_text(value, seq_separator: str) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return seq_separator.join(str(v) for v in value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _unencodable(path, row: int, name: str, value, why: str) -> DataError:
    return DataError(f"cannot write {path}: row {row + 1} (line {row + 2}), field {name!r}: the value "
                     f"{_short(value)} {why}, which an atomic file cannot hold (it has no quoting); "
                     "clean the value before writing.")


def _text_column(path, name: str, t: FieldType, col: pd.Series, field_separator: str,
                 seq_separator: str) -> pa.Array:
    """One non-float column as an arrow string array, refusing values that could not be read back."""
    if t.is_seq:
        for row, value in enumerate(col):  # a list element holding the separator would split on reading
            if isinstance(value, (list, tuple, np.ndarray)):
                for v in value:
                    if seq_separator in str(v):
                        raise _unencodable(path, row, name, str(v),
                                           f"(an element of a {t.value} list) contains the seq_separator "
                                           f"{seq_separator!r}")
        text = pd.Series([_cell_text(v, seq_separator) for v in col], dtype=object)
    try:
        if not t.is_seq:
            text = col.astype(str)
        text = text.astype(object).where(col.notna().to_numpy(), "")
        values = text.to_numpy(dtype=object)
        arr = pa.array(values, type=pa.string())
    except (UnicodeEncodeError, pa.ArrowException) as e:  # e.g. a lone surrogate from a bad decode
        for row, value in enumerate(col.to_numpy(dtype=object)):
            try:
                _cell_text(value, seq_separator).encode("utf-8")
            except UnicodeEncodeError:
                raise _unencodable(path, row, name, value, f"is not valid Unicode ({e})") from e
        raise DataError(f"cannot write {path}: field {name!r}: {e}") from e
    bad = pc.match_substring_regex(arr, f"[{_regex_escape(field_separator)}\\n\\r]")
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise _unencodable(path, row, name, values[row],
                           f"contains the field separator {field_separator!r} or a line break")
    return arr


def _lines(columns: List[pa.Array], field_separator: str) -> bytes:
    """The rows of equally long string columns as ``a<sep>b<sep>c\\n`` lines (UTF-8 bytes)."""
    joined = pc.binary_join_element_wise(*columns, field_separator) if len(columns) > 1 else columns[0]
    lines = pc.binary_join_element_wise(joined, pa.scalar(""), "\n")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return data.to_pybytes()[bounds[0]:bounds[1]] if data is not None else b""


def write_atomic(path, table: AtomicTable, field_separator: str = "\t", seq_separator: str = " ") -> Path:
    """Write an :class:`AtomicTable` to ``path`` atomically (temp file + rename).

    Values are written as they are, without quoting, as RecBole's reader (and
    :func:`read_atomic`) expect: double quotes, commas, ``|``, ``::`` and any Unicode text
    round-trip unchanged. Sequence cells may be lists (joined with ``seq_separator``) or strings.

    Raises:
        DataError: a column missing from ``types``, or a value that cannot be read back: it
            contains the field separator or a line break, a list element contains
            ``seq_separator``, or the text is not valid Unicode. The message names the row
            (and file line), the field and the value.

    Example:
        >>> t = AtomicTable(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}),
        ...                 {"user_id": FieldType.TOKEN, "item_id": FieldType.TOKEN})
        >>> write_atomic("/tmp/demo/demo.inter", t)            # doctest: +SKIP
    """
    path = Path(path)
    frame = table.frame
    missing = [c for c in frame.columns if c not in table.types]
    if missing:
        raise DataError(f"cannot write {path}: columns {missing} have no field type.")
    columns = []
    for name in frame.columns:
        t = FieldType(table.types[name])
        if t == FieldType.FLOAT:
            try:
                numbers = pd.to_numeric(frame[name]).to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise DataError(f"cannot write {path}: float field {name!r}: {e}") from e
            columns.append(pc.cast(pa.array(numbers), pa.string()))
        else:
            columns.append(_text_column(path, name, t, frame[name], field_separator, seq_separator))
    if len(columns) == 1 and len(frame) and pc.any(pc.equal(pc.utf8_length(columns[0]), 0)).as_py():
        row = pc.index(pc.equal(pc.utf8_length(columns[0]), 0), True).as_py()
        raise _unencodable(path, row, frame.columns[0], "", "is empty in a one-column table (an empty line, which readers skip)")
    header = field_separator.join(f"{n}:{FieldType(table.types[n]).value}" for n in frame.columns)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write((header + "\n").encode("utf-8"))
            step = 1 << 20
            for lo in range(0, len(frame), step):
                f.write(_lines([c.slice(lo, step) for c in columns], field_separator))
    return path


def _regex_escape(s: str) -> str:
    return "".join("\\" + c if c in "\\^]-[" else c for c in s)


def find_atomic_files(folder, name: Optional[str] = None) -> Dict[str, Path]:
    """Map suffix -> path of the atomic files in ``folder``.

    Files are ``<name>.<suffix>``; ``name`` defaults to the folder's name, or to the
    stem of the only ``.inter`` file in the folder.

    Raises:
        DataError: the folder does not exist or holds no ``.inter`` file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"atomic dataset folder {folder} does not exist.")
    if name is None:
        if (folder / f"{folder.name}.inter").is_file():
            name = folder.name
        else:
            inters = sorted(folder.glob("*.inter"))
            if len(inters) != 1:
                raise DataError(
                    f"{folder}: expected one '<name>.inter' file, found {[p.name for p in inters]}; "
                    "pass the dataset name explicitly."
                )
            name = inters[0].stem
    files = {s: folder / f"{name}.{s}" for s in SUFFIXES if (folder / f"{name}.{s}").is_file()}
    if "inter" not in files:
        raise DataError(f"{folder}: no {name}.inter file; an atomic dataset needs at least the .inter file.")
    return files


def read_atomic_folder(folder, name: Optional[str] = None, field_separator: str = "\t",
                       seq_separator: str = " ", encoding: str = "utf-8") -> Dict[str, AtomicTable]:
    """Read every atomic file of a dataset folder: suffix -> :class:`AtomicTable`."""
    return {s: read_atomic(p, field_separator, seq_separator, encoding)
            for s, p in find_atomic_files(folder, name).items()}


def write_atomic_folder(folder, name: str, tables: Dict[str, AtomicTable], field_separator: str = "\t",
                        seq_separator: str = " ") -> Dict[str, Path]:
    """Write each table as ``folder/<name>.<suffix>``; returns suffix -> path."""
    bad = [s for s in tables if s not in SUFFIXES]
    if bad:
        raise DataError(f"unknown atomic suffixes {bad}; use {list(SUFFIXES)}.")
    return {s: write_atomic(Path(folder) / f"{name}.{s}", t, field_separator, seq_separator)
            for s, t in tables.items()}
