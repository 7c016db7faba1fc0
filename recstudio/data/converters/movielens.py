"""MovieLens (GroupLens) converters: ml-100k, the '::' releases (1M, 10M), the CSV releases (20M, 25M, latest).

Atomic output (RecBole's column names):

- ``.inter``: ``user_id:token item_id:token rating:float timestamp:float``
- ``.item``: ``item_id:token movie_title:token_seq release_year:token`` + genres as ``token_seq``
  (``class`` for ml-100k, ``genre`` for the others, as in RecBole's files)
- ``.user`` (100k, 1M): ``user_id:token age:token gender:token occupation:token zip_code:token``

Titles lose their trailing ``(year)``, which becomes ``release_year``; genre names with
spaces get ``_`` (``(no genres listed)`` becomes an empty list).
"""
from pathlib import Path

import pandas as pd
import pyarrow as pa

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import (FLOAT, TOKEN, TOKEN_SEQ, as_float, find_file, frame,
                                               read_delimited, read_double_colon, read_lines, seq_tokens,
                                               split_title_year, table)

S, F64 = pa.string(), pa.float64()
INTER_TYPES = {"user_id": TOKEN, "item_id": TOKEN, "rating": FLOAT, "timestamp": FLOAT}
USER_TYPES = {"user_id": TOKEN, "age": TOKEN, "gender": TOKEN, "occupation": TOKEN, "zip_code": TOKEN}

#: u.genre's names, used when u.genre is absent
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]


def _inter(tab: pa.Table) -> pd.DataFrame:
    df = frame(tab)
    df["rating"] = as_float(df["rating"])
    df["timestamp"] = as_float(df["timestamp"])
    return df


def _genres(text: str) -> str:
    return seq_tokens(g for g in str(text).split("|") if g and g != "(no genres listed)")


@register_converter("movielens_100k")
def convert_ml100k(source, subdir: str = "ml-100k", encoding: str = "latin-1"):
    """Convert MovieLens 100K (``u.data``, ``u.item``, ``u.user``, ``u.genre``).

    Args:
        source: the folder holding the files (at any depth).
        subdir: a sub-folder to look in first.
        encoding: ``u.item``'s encoding (latin-1 in the original release).

    Returns:
        ``{'inter', 'item', 'user'}`` atomic tables.

    Example:
        >>> tables = convert_ml100k("datasets/ml-100k")         # doctest: +SKIP
        >>> tables["item"].types["class"]                      # doctest: +SKIP
        <FieldType.TOKEN_SEQ: 'token_seq'>
    """
    inter = _inter(read_delimited(find_file(source, "u.data", subdir), list(INTER_TYPES), "\t",
                                  {"user_id": S, "item_id": S, "rating": F64, "timestamp": F64}))
    genre_file = find_file(source, "u.genre", subdir, required=False)
    genres = ML100K_GENRES
    if genre_file is not None:
        genres = [line.split("|")[0] for line in read_lines(genre_file, encoding)]
    names = ["item_id", "title", "release_date", "video_date", "url"] + [f"g{i}" for i in range(len(genres))]
    items = frame(read_delimited(find_file(source, "u.item", subdir), names, "|", {n: S for n in names},
                                 encoding=encoding))
    split = [split_title_year(t) for t in items["title"]]
    date_year = items["release_date"].str[-4:].where(items["release_date"].str.len() >= 4, "")
    items["movie_title"] = [t for t, _ in split]
    items["release_year"] = [y or (str(d) if isinstance(d, str) else "") for (_, y), d in zip(split, date_year)]
    flags = items[[f"g{i}" for i in range(len(genres))]].to_numpy() == "1"
    items["class"] = [seq_tokens(g for g, on in zip(genres, row) if on) for row in flags]
    users = frame(read_delimited(find_file(source, "u.user", subdir), list(USER_TYPES), "|",
                                 {n: S for n in ("user_id", "age", "gender", "occupation", "zip_code")}))
    return {
        "inter": table(inter, INTER_TYPES),
        "item": table(items, {"item_id": TOKEN, "movie_title": TOKEN_SEQ, "release_year": TOKEN, "class": TOKEN_SEQ}),
        "user": table(users, USER_TYPES),
    }


def _movies_dat(path: Path, encoding: str) -> pd.DataFrame:
    rows = []
    for line in read_lines(path, encoding):
        parts = line.split("::")
        title, year = split_title_year("::".join(parts[1:-1]))
        rows.append((parts[0], title, year, _genres(parts[-1])))
    return pd.DataFrame(rows, columns=["item_id", "movie_title", "release_year", "genre"])


ITEM_TYPES = {"item_id": TOKEN, "movie_title": TOKEN_SEQ, "release_year": TOKEN, "genre": TOKEN_SEQ}


@register_converter("movielens_dat")
def convert_movielens_dat(source, subdir: str = None, encoding: str = "latin-1", ratings: str = "ratings.dat",
                          movies: str = "movies.dat", users: str = "users.dat"):
    """Convert a '::'-separated MovieLens release (1M, 10M).

    ``ratings.dat`` is ``UserID::MovieID::Rating::Timestamp``; ``movies.dat``
    ``MovieID::Title::Genres``; ``users.dat`` (1M only) ``UserID::Gender::Age::Occupation::Zip``.
    A missing ``users.dat`` / ``movies.dat`` just omits that table.

    Args:
        source: the folder holding the files (at any depth).
        subdir: a sub-folder to look in first (``ml-1m``, ``ml-10M100K``).
        encoding: text encoding of movies.dat / users.dat when they are not valid UTF-8
            (ml-1m's are latin-1).
        ratings, movies, users: file names.

    Returns:
        ``{'inter', 'item'[, 'user']}``.

    Example:
        >>> convert_movielens_dat("/data/ml-1m/raw", subdir="ml-1m")["inter"].types   # doctest: +SKIP
    """
    tables = {}
    # pyarrow reads ratings.dat in a few seconds even for 10M rows; ':'-split keeps every other column
    inter = read_double_colon(find_file(source, ratings, subdir), list(INTER_TYPES),
                              {"user_id": S, "item_id": S, "rating": F64, "timestamp": F64})
    tables["inter"] = table(_inter(inter), INTER_TYPES)
    movie_file = find_file(source, movies, subdir, required=False)
    if movie_file is not None:
        tables["item"] = table(_movies_dat(movie_file, encoding), ITEM_TYPES)
    user_file = find_file(source, users, subdir, required=False)
    if user_file is not None:
        names = ["user_id", "gender", "age", "occupation", "zip_code"]
        tables["user"] = table(frame(read_double_colon(user_file, names, {n: S for n in names}, encoding)), USER_TYPES)
    return tables


@register_converter("movielens_csv")
def convert_movielens_csv(source, subdir: str = None, ratings: str = "ratings.csv", movies: str = "movies.csv"):
    """Convert a CSV MovieLens release (20M, 25M, latest, latest-small).

    ``ratings.csv`` is ``userId,movieId,rating,timestamp`` with a header; ``movies.csv``
    ``movieId,title,genres`` (CSV quoting: a title may hold commas, ``""`` quotes and line breaks;
    UTF-8, read as latin-1 when it is not valid UTF-8).

    Args:
        source: the folder holding the files (at any depth).
        subdir: a sub-folder to look in first (``ml-20m``).
        ratings, movies: file names.

    Returns:
        ``{'inter', 'item'}`` (``item`` only when movies.csv is present).

    Example:
        >>> convert_movielens_csv("/data/ml-20m/raw", subdir="ml-20m")   # doctest: +SKIP
    """
    inter = read_delimited(find_file(source, ratings, subdir), list(INTER_TYPES), ",",
                           {"user_id": S, "item_id": S, "rating": F64, "timestamp": F64}, skip_header=True)
    tables = {"inter": table(_inter(inter), INTER_TYPES)}
    movie_file = find_file(source, movies, subdir, required=False)
    if movie_file is not None:
        df = frame(read_delimited(movie_file, ["item_id", "title", "genres"], ",",
                                  {"item_id": S, "title": S, "genres": S}, skip_header=True, quoted=True,
                                  fallback="latin-1"))
        split = [split_title_year(t) for t in df["title"]]
        df["movie_title"] = [t for t, _ in split]
        df["release_year"] = [y for _, y in split]
        df["genre"] = [_genres(g) for g in df["genres"]]
        tables["item"] = table(df, ITEM_TYPES)
    return tables
