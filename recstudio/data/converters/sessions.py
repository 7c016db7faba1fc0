"""Session-data converters: anonymous click sessions -> ``.inter`` with ``session_id:token`` and no user id.

- :func:`convert_diginetica`: the CIKM Cup 2016 (DIGINETICA) ``train-item-views.csv``
  (``sessionId;userId;itemId;timeframe;eventdate``, ``;``-separated, one header line);
- :func:`convert_yoochoose`: the RecSys Challenge 2015 ``yoochoose-clicks.dat``
  (``session,timestamp,item,category``, ``,``-separated, no header, ISO-8601 times);
- :func:`derived_sessions`: sessions cut from another dataset's user histories at inactivity gaps
  (e.g. ``ml-100k-sessions``: MovieLens rating bursts). Such sessions are **derived, not real** click
  sessions; the user id is dropped so the data is anonymous.

Output: ``session_id:token item_id:token timestamp:float`` (Unix seconds), plus ``category:token`` for
yoochoose. Use them with ``session_field: session_id`` (see :mod:`recstudio.data.sessions`). The public
files' checksums are not known to this project, so the converters verify the format instead (header /
column count / parseable times) and raise a :class:`DataError` naming the file and what differs.

A registry YAML for a local copy (no download address is registered: the files need a login / a 7z tool):

.. code-block:: yaml

    name: diginetica
    url: null
    bundled: /path/to/folder/with/train-item-views.csv
    converter: "recstudio.data.converters.sessions:convert_diginetica"
    config: {session_field: session_id, user_field: session_id, rating_field: null, dedup: all,
             split_mode: session, split_order: time, session_test_days: 7, split_ratio: [0.9, 0.1]}
"""
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from recstudio.data.converters._common import FLOAT, TOKEN, find_file, table
from recstudio.utils.errors import DataError

SESSION_TYPES = {"session_id": TOKEN, "item_id": TOKEN, "timestamp": FLOAT}


def _check_columns(path: Path, df: pd.DataFrame, expected, what: str) -> None:
    if list(df.columns) != list(expected):
        raise DataError(f"{path} is not the {what} file: its columns are {list(df.columns)}, expected "
                        f"{list(expected)}. Check that the file is the original, unmodified release.")


def convert_diginetica(source, filename: str = "train-item-views.csv", subdir: Optional[str] = None):
    """Convert DIGINETICA's ``train-item-views.csv`` (views; the user id, mostly empty, is dropped).

    The timestamp is ``eventdate`` (a day) plus ``timeframe`` (milliseconds since the session's start),
    so sessions end on their event day and their views keep their order.

    Raises:
        DataError: the file is missing or not in the DIGINETICA format.

    Example:
        >>> tables = convert_diginetica("raw/")        # doctest: +SKIP
    """
    path = find_file(source, filename, subdir)
    expected = ["sessionId", "userId", "itemId", "timeframe", "eventdate"]
    df = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    _check_columns(path, df, expected, "DIGINETICA train-item-views.csv")
    try:
        day = pd.to_datetime(df["eventdate"], format="%Y-%m-%d", utc=True)
        frame_ms = pd.to_numeric(df["timeframe"]).astype(np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: eventdate must be YYYY-MM-DD and timeframe a number of milliseconds ({e}).") \
            from None
    seconds = (day - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1) + frame_ms / 1000.0
    out = pd.DataFrame({"session_id": df["sessionId"], "item_id": df["itemId"], "timestamp": seconds})
    return {"inter": table(out, SESSION_TYPES)}


def convert_yoochoose(source, filename: str = "yoochoose-clicks.dat", subdir: Optional[str] = None):
    """Convert the RecSys Challenge 2015 ``yoochoose-clicks.dat`` (clicks; ``category`` kept as a token).

    Raises:
        DataError: the file is missing or not in the yoochoose format.

    Example:
        >>> tables = convert_yoochoose("raw/")         # doctest: +SKIP
    """
    path = find_file(source, filename, subdir)
    names = ["session_id", "timestamp", "item_id", "category"]
    df = pd.read_csv(path, sep=",", header=None, dtype=str, keep_default_na=False)
    if df.shape[1] != 4:
        raise DataError(f"{path} is not yoochoose-clicks.dat: it has {df.shape[1]} columns, expected 4 "
                        "(session, timestamp, item, category) without a header.")
    df.columns = names
    try:
        t = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: the second column must hold ISO-8601 times such as 2014-04-07T10:51:09.277Z "
                        f"({e}).") from None
    df["timestamp"] = (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return {"inter": table(df, {**SESSION_TYPES, "category": TOKEN})}


def derived_sessions(source, base: str, base_args: Optional[dict] = None, gap_seconds: float = 1800.0):
    """Cut another dataset's user histories into sessions at gaps longer than ``gap_seconds``.

    A user's interactions in time order start a new session after each gap ``> gap_seconds``; the
    session id is ``<user>-<k>``; the user id and the other interaction columns (the rating) are dropped,
    so the sessions are anonymous; an ``.item`` table of the base is kept (``.user`` is not).

    Args:
        source: the raw folder of the base dataset.
        base: the base converter (e.g. ``movielens_100k``).
        base_args: its arguments.
        gap_seconds: the inactivity gap that ends a session (30 minutes by default, the usual web-log cut).

    Raises:
        DataError: the base's interactions have no user or time column.

    Example:
        >>> tables = derived_sessions("datasets/ml-100k", "movielens_100k")     # doctest: +SKIP
        >>> tables["inter"].types
        {'session_id': ..., 'item_id': ..., 'timestamp': ...}
    """
    from recstudio.data.converters import get_converter
    tables = get_converter(base)(Path(source), **(base_args or {}))
    inter = tables["inter"].frame
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in inter.columns]
    if missing:
        raise DataError(f"derived_sessions needs user_id, item_id and timestamp in {base}'s interactions; it lacks "
                        f"{missing}.")
    if not gap_seconds > 0:
        raise DataError(f"gap_seconds must be > 0, got {gap_seconds}.")
    df = pd.DataFrame({"user": inter["user_id"].astype(str).to_numpy(), "item_id": inter["item_id"].to_numpy(),
                       "timestamp": inter["timestamp"].to_numpy(dtype=np.float64)})
    df = df.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    user = df["user"].to_numpy()
    t = df["timestamp"].to_numpy()
    new = np.r_[True, (user[1:] != user[:-1]) | (np.diff(t) > gap_seconds)]
    k = np.cumsum(new) - 1  # global session counter
    first_of_user = np.r_[True, user[1:] != user[:-1]]
    user_start = np.maximum.accumulate(np.where(first_of_user, k, 0))
    df["session_id"] = [f"{u}-{n}" for u, n in zip(user, k - user_start)]
    out = {"inter": table(df, SESSION_TYPES)}
    if "item" in tables:
        out["item"] = tables["item"]
    return out


__all__ = ["convert_diginetica", "convert_yoochoose", "derived_sessions", "SESSION_TYPES"]
