"""Last.fm from HetRec 2011 (``hetrec2011-lastfm-2k.zip``, GroupLens).

Raw files (tab-separated, each with a header line): ``user_artists.dat``
(``userID artistID weight``), ``user_friends.dat`` (``userID friendID``), ``artists.dat``
(``id name url pictureURL``), ``user_taggedartists.dat`` (``userID artistID tagID day month year``).

Atomic output:

- ``.inter``: ``user_id:token item_id:token weight:float`` (weight = play count; an artist is an item)
- ``.item``: ``item_id:token artist_name:token tag_id:token_seq`` (the tags users gave the
  artist, most frequent first; present only when the files are)
- ``.net``: ``source_id:token target_id:token`` (friendships)
"""
import pandas as pd
import pyarrow as pa

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import (FLOAT, TOKEN, TOKEN_SEQ, clean_text, find_file, frame,
                                               read_delimited, read_lines, table)

S = pa.string()


def _artists(path) -> pd.DataFrame:
    rows = []
    for line in read_lines(path)[1:]:
        parts = line.split("\t")
        rows.append((parts[0].strip(), clean_text(parts[1]) if len(parts) > 1 else ""))
    return pd.DataFrame(rows, columns=["item_id", "artist_name"])


def _artist_tags(path) -> pd.DataFrame:
    tags = frame(read_delimited(path, ["user_id", "item_id", "tag_id", "day", "month", "year"], "\t",
                                {"item_id": S, "tag_id": S}, skip_header=True))
    counts = tags.groupby(["item_id", "tag_id"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["item_id", "n", "tag_id"], ascending=[True, False, True], kind="stable")
    joined = counts.groupby("item_id", sort=False)["tag_id"].agg(" ".join)
    return joined.rename("tag_id").reset_index()


@register_converter("lastfm_hetrec")
def convert_lastfm_hetrec(source, subdir: str = None):
    """Convert the HetRec 2011 Last.fm dataset.

    Args:
        source: the folder holding the extracted files (at any depth).
        subdir: a sub-folder to look in first.

    Returns:
        ``{'inter'[, 'item'][, 'net']}``.

    Example:
        >>> convert_lastfm_hetrec("/data/lastfm-2k/raw")["inter"].types       # doctest: +SKIP
    """
    inter = frame(read_delimited(find_file(source, "user_artists.dat", subdir), ["user_id", "item_id", "weight"],
                                 "\t", {"user_id": S, "item_id": S, "weight": pa.float64()}, skip_header=True))
    tables = {"inter": table(inter, {"user_id": TOKEN, "item_id": TOKEN, "weight": FLOAT})}
    artist_file = find_file(source, "artists.dat", subdir, required=False)
    if artist_file is not None:
        items = _artists(artist_file)
        tag_file = find_file(source, "user_taggedartists.dat", subdir, required=False)
        if tag_file is not None:
            items = items.merge(_artist_tags(tag_file), on="item_id", how="left")
        else:
            items["tag_id"] = ""
        items["tag_id"] = items["tag_id"].fillna("")
        tables["item"] = table(items, {"item_id": TOKEN, "artist_name": TOKEN, "tag_id": TOKEN_SEQ})
    friend_file = find_file(source, "user_friends.dat", subdir, required=False)
    if friend_file is not None:
        net = frame(read_delimited(friend_file, ["source_id", "target_id"], "\t",
                                   {"source_id": S, "target_id": S}, skip_header=True))
        tables["net"] = table(net, {"source_id": TOKEN, "target_id": TOKEN})
    return tables
