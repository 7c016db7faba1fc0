"""Amazon product data, 2014 release (McAuley et al.): per-category reviews and ratings-only files.

- reviews (``reviews_<Category>_5.json.gz``, one JSON object per line):
  ``reviewerID -> user_id``, ``asin -> item_id``, ``overall -> rating``,
  ``unixReviewTime -> timestamp``. Review text is left out.
- ratings only (``ratings_<Category>.csv``: ``user,item,rating,timestamp``, no header).

Atomic output: ``.inter`` with ``user_id:token item_id:token rating:float timestamp:float``.
"""
import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import FLOAT, TOKEN, find_file, frame, read_delimited, table
from recstudio.utils.errors import DataError

INTER_TYPES = {"user_id": TOKEN, "item_id": TOKEN, "rating": FLOAT, "timestamp": FLOAT}
_JSON_FIELDS = {"reviewerID": "user_id", "asin": "item_id", "overall": "rating", "unixReviewTime": "timestamp"}
_SCHEMA = pa.schema([("reviewerID", pa.string()), ("asin", pa.string()), ("overall", pa.float64()),
                     ("unixReviewTime", pa.float64())])


def _read_reviews_python(path) -> pd.DataFrame:
    """Slow but tolerant path: ``json.loads`` per line, with the line number on errors."""
    rows = []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                rows.append((str(obj["reviewerID"]), str(obj["asin"]), float(obj["overall"]),
                             float(obj["unixReviewTime"])))
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}, line {number}: not a review record with reviewerID, asin, overall and "
                                f"unixReviewTime ({type(e).__name__}: {e}). The file may be damaged; delete it "
                                "to download it again.") from e
    return pd.DataFrame(rows, columns=list(INTER_TYPES))


@register_converter("amazon_reviews")
def convert_amazon_reviews(source, filename: str):
    """Convert a 2014 Amazon reviews file (``reviews_<Category>[_5].json.gz``).

    Args:
        source: the folder holding the file.
        filename: the file's name.

    Returns:
        ``{'inter'}``.

    Example:
        >>> t = convert_amazon_reviews("/data/amazon-musical-instruments-5core/raw",
        ...                            "reviews_Musical_Instruments_5.json.gz")     # doctest: +SKIP
        >>> len(t["inter"])                                                          # doctest: +SKIP
        10261
    """
    path = find_file(source, filename)
    try:
        tab = pajson.read_json(str(path), parse_options=pajson.ParseOptions(
            explicit_schema=_SCHEMA, unexpected_field_behavior="ignore"))
        df = frame(tab, _JSON_FIELDS)
        missing = df[list(INTER_TYPES)].isna().any()
        if missing.any():
            raise DataError(f"{path}: some reviews lack {[c for c in missing.index if missing[c]]}; every review "
                            "needs reviewerID, asin, overall and unixReviewTime.")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        df = _read_reviews_python(path)
    return {"inter": table(df, INTER_TYPES)}


@register_converter("amazon_ratings")
def convert_amazon_ratings(source, filename: str):
    """Convert a 2014 Amazon ratings-only file (``ratings_<Category>.csv``, no header).

    Args:
        source: the folder holding the file.
        filename: the file's name.

    Returns:
        ``{'inter'}``.

    Example:
        >>> convert_amazon_ratings("/data/amazon-books-ratings/raw", "ratings_Books.csv")   # doctest: +SKIP
    """
    path = find_file(source, filename)
    tab = read_delimited(path, list(INTER_TYPES), ",", {"user_id": pa.string(), "item_id": pa.string(),
                                                        "rating": pa.float64(), "timestamp": pa.float64()})
    return {"inter": table(frame(tab), INTER_TYPES)}
