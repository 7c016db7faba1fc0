"""Field types of atomic files and the typed headers that declare them.

An atomic-file header cell is ``name:type`` with ``type`` one of ``token``,
``token_seq``, ``float``, ``float_seq`` (RecBole's convention).
"""
from enum import Enum
from typing import List, Tuple

from recstudio.utils.errors import DataError
from recstudio.utils.suggest import did_you_mean


class FieldType(str, Enum):
    """The four atomic-file field types.

    - ``token``: a categorical id (user id, item id, a category); remapped to 1..n, 0 = padding.
    - ``token_seq``: a list of tokens in one cell (genres), split on the sequence separator.
    - ``float``: a number (rating, timestamp, price).
    - ``float_seq``: a list of numbers in one cell (a pre-computed embedding).
    """

    TOKEN = "token"
    TOKEN_SEQ = "token_seq"
    FLOAT = "float"
    FLOAT_SEQ = "float_seq"

    @property
    def is_seq(self) -> bool:
        return self in (FieldType.TOKEN_SEQ, FieldType.FLOAT_SEQ)

    @property
    def is_token(self) -> bool:
        return self in (FieldType.TOKEN, FieldType.TOKEN_SEQ)


def parse_header(cells: List[str], where: str, field_separator: str = "\t") -> List[Tuple[str, FieldType]]:
    """Parse the typed header cells of an atomic file.

    Args:
        cells: the header line split on the field separator.
        where: the file path, used in error messages.
        field_separator: the separator that was used, for the error message.

    Returns:
        ``[(name, FieldType), ...]`` in column order.

    Raises:
        DataError: one column only (a wrong separator), a cell without ``:type``,
            an unknown type, or a duplicated field name.

    Example:
        >>> parse_header(["user_id:token", "rating:float"], "x.inter")
        [('user_id', <FieldType.TOKEN: 'token'>), ('rating', <FieldType.FLOAT: 'float'>)]
    """
    if len(cells) == 1:
        line = cells[0]
        for sep, label in ((",", "','"), (";", "';'"), ("\t", "a tab"), ("|", "'|'"), (" ", "a space")):
            if sep != field_separator and sep in line:
                raise DataError(
                    f"{where}: the header has one column ({line[:80]!r}) with field separator "
                    f"{field_separator!r}; the file looks separated by {label}. Set field_separator "
                    f"to {sep!r} or convert the file to tab-separated atomic format."
                )
    fields = []
    seen = set()
    valid = [t.value for t in FieldType]
    for cell in cells:
        cell = cell.strip()
        if ":" not in cell:
            raise DataError(
                f"{where}: header cell {cell!r} has no type; atomic headers are 'name:type' "
                f"with type one of {valid}."
            )
        name, _, type_name = cell.rpartition(":")
        if type_name not in valid:
            raise DataError(
                f"{where}: header cell {cell!r} has unknown type {type_name!r}; use one of {valid}."
                + did_you_mean(type_name, valid)
            )
        if not name:
            raise DataError(f"{where}: header cell {cell!r} has an empty field name.")
        if name in seen:
            raise DataError(f"{where}: field name {name!r} appears twice in the header; names must be unique.")
        seen.add(name)
        fields.append((name, FieldType(type_name)))
    return fields
