"""Helpers shared by the converters: locating raw files, fast delimited reads, tables."""
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recstudio.data.atomic import AtomicTable
from recstudio.data.fields import FieldType
from recstudio.utils.errors import DataError

TOKEN, TOKEN_SEQ, FLOAT = FieldType.TOKEN, FieldType.TOKEN_SEQ, FieldType.FLOAT


def find_file(root, filename: str, subdir: Optional[str] = None, required: bool = True) -> Optional[Path]:
    """Locate ``filename`` under ``root``: ``root/subdir/filename``, ``root/filename``, then any depth.

    Hidden entries (temporary folders) are skipped.

    Args:
        root: the folder holding the raw files (extracted archives may add a level or two).
        filename: the file's name.
        subdir: a folder inside ``root`` to try first (e.g. ``ml-10M100K``).
        required: raise when missing (else return ``None``).

    Raises:
        DataError: the file is missing (the message lists what is there), or several
            files of that name sit at the same depth.

    Example:
        >>> find_file("/data/ml-1m/raw", "ratings.dat")        # doctest: +SKIP
        PosixPath('/data/ml-1m/raw/ml-1m/ml-1m/ratings.dat')
    """
    root = Path(root)
    for candidate in ([root / subdir / filename] if subdir else []) + [root / filename]:
        if candidate.is_file():
            return candidate
    hits = [p for p in root.rglob(filename)
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if hits:
        hits.sort(key=lambda p: (len(p.parts), str(p)))
        if len(hits) > 1 and len(hits[0].parts) == len(hits[1].parts):
            raise DataError(f"several files named {filename!r} under {root}: {[str(h) for h in hits[:5]]}; "
                            "keep only one, or set 'subdir' in converter_args.")
        return hits[0]
    if not required:
        return None
    present = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())[:20] if root.is_dir() else []
    raise DataError(f"the raw file {filename!r} was not found under {root} (files there: {present}). Put the "
                    "original file there, or delete the folder to download it again.")


def read_delimited(path, names: Sequence[str], delimiter: str, keep: Dict[str, pa.DataType],
                   skip_header: bool = False, encoding: str = "utf-8", quoted: bool = False,
                   fallback: Optional[str] = None) -> pa.Table:
    """Read a delimited text file (optionally ``.gz``) with pyarrow.

    Args:
        path: the file; ``.gz`` is decompressed on the fly.
        names: every column's name, in order.
        delimiter: one character.
        keep: the columns to return and their arrow types (``pa.string()`` for ids).
        skip_header: the first line is a header.
        encoding: the text encoding.
        quoted: honour double quotes (CSV: ``""`` inside a quoted value is a quote, and a quoted
            value may span lines); ``False`` reads quotes as text.
        fallback: an encoding to read the file with when it is not valid ``encoding`` text
            (``latin-1`` decodes any bytes).

    Raises:
        DataError: a row with a different number of columns or an unparsable value.
    """
    read = pacsv.ReadOptions(column_names=list(names), skip_rows=1 if skip_header else 0, encoding=encoding,
                             block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False, double_quote=quoted,
                               newlines_in_values=quoted)
    convert = pacsv.ConvertOptions(include_columns=list(keep), column_types=dict(keep),
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        return pacsv.read_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as e:
        if fallback and fallback != encoding and ("UTF8" in str(e) or isinstance(e, UnicodeDecodeError)):
            return read_delimited(path, names, delimiter, keep, skip_header, fallback, quoted)
        detail = " ".join(str(e).split())
        raise DataError(f"{path}: cannot parse as {delimiter!r}-separated columns {list(names)}: {detail}. "
                        "The file may be damaged or of another release; delete it to download it again.") from e


def read_double_colon(path, names: Sequence[str], keep: Dict[str, pa.DataType], encoding: str = "utf-8") -> pa.Table:
    """Read a MovieLens ``a::b::c`` file fast by splitting on ':' and keeping every other column.

    Only for files whose values hold no ':' (ratings.dat, users.dat; not movies.dat).
    """
    split = []
    for i, n in enumerate(names):
        split.append(n)
        if i < len(names) - 1:
            split.append(f"_gap{i}")
    return read_delimited(path, split, ":", keep, encoding=encoding)


def frame(table: pa.Table, rename: Optional[Dict[str, str]] = None) -> pd.DataFrame:
    """Arrow table -> DataFrame (strings stay arrow-backed, which writes fast), columns renamed."""
    df = table.to_pandas()
    return df.rename(columns=rename) if rename else df


def as_float(series: pd.Series) -> pd.Series:
    """A numeric column as float64."""
    return series.astype("float64")


_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def clean_text(text: str) -> str:
    """Collapse ASCII whitespace (tabs, line breaks, runs of spaces) to single spaces, so that the
    text fits an atomic cell; other characters (quotes, ``\\xa0``, ``\\x85``) are kept as they are."""
    return _SPACES.sub(" ", str(text)).strip()


def seq_tokens(values: Sequence[str]) -> str:
    """Join tokens for a ``token_seq`` cell; whitespace inside a token becomes ``_``."""
    return " ".join("_".join(clean_text(v).split(" ")) for v in values if clean_text(v))


_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")


def split_title_year(title: str):
    """``'Toy Story (1995)'`` -> ``('Toy Story', '1995')``; no year -> ``(title, '')``."""
    title = clean_text(title)
    m = _YEAR.match(title)
    return (m.group(1), m.group(2)) if m else (title, "")


def table(df: pd.DataFrame, types: Dict[str, FieldType]) -> AtomicTable:
    """An :class:`AtomicTable` with the columns of ``types`` in that order."""
    missing = [c for c in types if c not in df.columns]
    if missing:
        raise DataError(f"converter bug: columns {missing} missing from {list(df.columns)}.")
    return AtomicTable(frame=df[list(types)].reset_index(drop=True), types=dict(types))


def read_lines(path, fallback: str = "latin-1") -> List[str]:
    """Non-blank lines of a small text file: UTF-8 when valid, else ``fallback`` (latin-1 never fails).

    Lines end at ``\\n`` (``\\r\\n``) only: a latin-1 byte 0x85 or a Unicode line separator inside a
    value does not split it, as :meth:`str.splitlines` would.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode(fallback, errors="replace")
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line.strip()]
