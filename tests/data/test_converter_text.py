"""Every converter round-trips the text real files hold: double quotes, tabs, the sequence separator,
line breaks inside a (quoted) value, latin-1 bytes; and write_atomic -> read_atomic is lossless."""
import gzip
import json
import string

import numpy as np
import pandas as pd
import pytest

from recstudio.data.atomic import AtomicTable, read_atomic, read_atomic_folder, write_atomic
from recstudio.data.converters import convert_into, list_converters
from recstudio.data.fields import FieldType
from recstudio.utils.errors import DataError

QUOTED = "11'09\"01 - September 11"        # a real ml-20m / ml-25m / latest title (with "(2002)")
LATIN = "Caf\xe9 \x85 \xa0Cr\xe8me"          # \x85 (NEL) and \xa0 (nbsp) are latin-1 bytes, not breaks


def convert(converter, source, tmp_path, **args):
    out = convert_into(converter, args, source, tmp_path / "atomic", "d", {"dataset": "d"})
    return read_atomic_folder(out, "d")


def column(tables, suffix, field):
    return tables[suffix].frame[field].astype(str).tolist()


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_movielens_100k_latin1_and_quotes(tmp_path):
    src = tmp_path / "raw"
    write(src / "u.data", "1\t10\t5\t881250949\n2\t11\t3\t891717742\n")
    write(src / "u.item", f'10|{QUOTED} (2002)|01-Jan-2002||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n'
                          f'11|{LATIN} (1995)|01-Jan-1995||http://y|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|1\n',
          "latin-1")
    write(src / "u.user", '1|24|M|tech"nician|85711\n2|53|F|other|94043\n')
    tables = convert("movielens_100k", src, tmp_path)
    assert column(tables, "item", "movie_title") == [QUOTED, LATIN]
    assert column(tables, "item", "release_year") == ["2002", "1995"]
    assert column(tables, "item", "class") == ["Action", "Comedy Western"]
    assert column(tables, "user", "occupation") == ['tech"nician', "other"]


def test_movielens_dat_latin1_quotes_and_nel(tmp_path):
    src = tmp_path / "raw" / "ml-1m"
    write(src / "ratings.dat", "1::10::5::978300760\n1::11::3::978302109\n")
    write(src / "movies.dat", f"10::{QUOTED} (2002)::Drama|War\n11::{LATIN} (1995)::(no genres listed)\n"
                              "12::Title::With::Colons (1999)::Film-Noir|Sci-Fi\n", "latin-1")
    write(src / "users.dat", "1::F::1::10::48067\n", "latin-1")
    tables = convert("movielens_dat", tmp_path / "raw", tmp_path, subdir="ml-1m")
    assert column(tables, "item", "movie_title") == [QUOTED, LATIN, "Title::With::Colons"]
    assert column(tables, "item", "genre") == ["Drama War", "", "Film-Noir Sci-Fi"]
    assert len(tables["inter"]) == 2 and column(tables, "user", "zip_code") == ["48067"]


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_movielens_csv_quotes_commas_newlines_tabs(tmp_path, encoding):
    src = tmp_path / "raw"
    write(src / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,11,3.0,2\n2,12,5.0,3\n")
    write(src / "movies.csv", "movieId,title,genres\n"
                              '10,"11\'09""01 - September 11 (2002)",Drama\n'
                              '11,"Word, with comma\nand a line\tbreak (1999)",Comedy|Film Noir\n'
                              f'12,{LATIN} (2001),(no genres listed)\n', encoding)
    tables = convert("movielens_csv", src, tmp_path)
    assert column(tables, "item", "movie_title") == [QUOTED, "Word, with comma and a line break", LATIN]
    assert column(tables, "item", "genre") == ["Drama", "Comedy Film_Noir", ""]
    assert column(tables, "item", "release_year") == ["2002", "1999", "2001"]


def test_amazon_reviews_and_ratings_keep_quoted_ids(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    reviews = [{"reviewerID": 'A"1', "asin": "0000000116", "overall": 5.0, "unixReviewTime": 1,
                "reviewText": "tab\there, \"quote\"\nline"},
               {"reviewerID": "A\u00e92", "asin": "B,01", "overall": 3.0, "unixReviewTime": 2}]
    with gzip.open(src / "r.json.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in reviews) + "\n")
    tables = convert("amazon_reviews", src, tmp_path, filename="r.json.gz")
    assert column(tables, "inter", "user_id") == ['A"1', "A\u00e92"]
    assert column(tables, "inter", "item_id") == ["0000000116", "B,01"]
    write(src / "ratings.csv", 'A"1,0000000116,5.0,1\nA2,B01,3.0,2\n')
    tables = convert("amazon_ratings", src, tmp_path / "b", filename="ratings.csv")
    assert column(tables, "inter", "user_id") == ['A"1', "A2"]


def test_an_id_that_cannot_be_written_names_its_row_and_field(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    with gzip.open(src / "r.json.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"reviewerID": "A1", "asin": "X", "overall": 5.0, "unixReviewTime": 1}) + "\n")
        f.write(json.dumps({"reviewerID": "A\t2", "asin": "Y", "overall": 5.0, "unixReviewTime": 2}) + "\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\), field 'user_id': the value 'A\\t2' contains the field"):
        convert("amazon_reviews", src, tmp_path, filename="r.json.gz")
    assert not (tmp_path / "atomic").exists()


def test_gowalla(tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    with gzip.open(src / "c.txt.gz", "wt") as f:
        f.write("0\t2010-10-19T23:55:27Z\t30.23\t-97.79\t22847\n1\t2010-10-18T22:17:43Z\t30.26\t-97.76\t420315\n")
    with gzip.open(src / "e.txt.gz", "wt") as f:
        f.write("0\t1\n1\t0\n")
    tables = convert("gowalla", src, tmp_path, checkins="c.txt.gz", edges="e.txt.gz")
    assert column(tables, "inter", "item_id") == ["22847", "420315"] and len(tables["net"]) == 2


def test_lastfm_names_with_quotes_latin1_and_nel(tmp_path):
    src = tmp_path / "raw"
    write(src / "user_artists.dat", "userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n")
    write(src / "artists.dat", "id\tname\turl\tpictureURL\n51\tThe \"Quoted\" Band\thttp://a\thttp://p\n"
                               f"52\t{LATIN}\thttp://b\thttp://q\n", "latin-1")
    write(src / "user_friends.dat", "userID\tfriendID\r\n2\t275\r\n")
    write(src / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t52\t13\t1\t4\t2009\r\n")
    tables = convert("lastfm_hetrec", src, tmp_path)
    assert column(tables, "item", "artist_name") == ['The "Quoted" Band', LATIN]
    assert column(tables, "item", "tag_id") == ["", "13"]


def test_frappe_context_tokens_and_meta_text(tmp_path):
    src = tmp_path / "raw"
    head = "user\titem\tcnt\tdaytime\tweekday\tisweekend\thomework\tcost\tweather\tcountry\tcity\n"
    write(src / "frappe.csv", head + 'u1\tcom.a\t3\tmorning\tsunday\tweekend\thome\tfree\tsunny\tC\xf4te d"Ivoire\t0\n'
                                     "u2\tcom.b\t1\tevening\tmonday\tworkday\twork\tfree\trainy\tUnited States\t1\n"
                                     "u2\tcom.c\t1\tnight\tmonday\tworkday\twork\tfree\trainy\tUnited States\t1\n")
    tables = convert("frappe", src, tmp_path, num_neg=1, seed=0)
    assert column(tables, "inter", "country")[0] == 'C\xf4te d"Ivoire'      # a quote and a non-ASCII letter
    assert column(tables, "inter", "label") == ["1.0", "0.0"] * 3


def test_ciao_epinions_numeric_ids(tmp_path):
    from scipy.io import savemat
    src = tmp_path / "raw"
    src.mkdir()
    savemat(src / "rating.mat", {"rating": np.array([[1, 10, 2, 5, 3], [2, 11, 2, 4, 1]], dtype=float)})
    savemat(src / "trustnetwork.mat", {"trustnetwork": np.array([[1, 2], [2, 1]], dtype=float)})
    tables = convert("ciao_epinions", src, tmp_path)
    assert column(tables, "inter", "item_id") == ["10", "11"] and column(tables, "net", "target_id") == ["2", "1"]


def test_with_atomic_files_adds_kg_text_unchanged(tmp_path):
    src = tmp_path / "raw"
    write(src / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,1\n")
    write(src / "movies.csv", "movieId,title,genres\n10,Title (2002),Drama\n")
    write(src / "ml.kg", f"head_id:token\trelation_id:token\ttail_id:token\nm.a\tfilm.title\t{LATIN}\n")
    write(src / "ml.link", "item_id:token\tentity_id:token\n10\tm.a\n")
    tables = convert("with_atomic_files", src, tmp_path, base="movielens_csv",
                     files={"kg": "ml.kg", "link": "ml.link"})
    assert column(tables, "kg", "tail_id") == [LATIN] and column(tables, "link", "entity_id") == ["m.a"]


def test_every_registered_converter_is_covered_here():
    covered = {"movielens_100k", "movielens_dat", "movielens_csv", "amazon_reviews", "amazon_ratings", "gowalla",
               "lastfm_hetrec", "frappe", "ciao_epinions", "with_atomic_files"}
    assert set(list_converters()) <= covered | {c for c in list_converters() if c.startswith("test")}


def test_values_that_cannot_be_encoded_are_named(tmp_path):
    bad = [({"u": ["a", "b\nc"]}, FieldType.TOKEN, r"row 2 \(line 3\), field 'u'"),
           ({"u": [["x", "y z"]]}, FieldType.TOKEN_SEQ, r"row 1 \(line 2\), field 'u'.*seq_separator"),
           ({"u": pd.Series(["ok", "\udcff"], dtype=object)}, FieldType.TOKEN, r"row 2 .*not valid Unicode")]
    for data, kind, message in bad:
        with pytest.raises(DataError, match=message):
            write_atomic(tmp_path / "t.inter", AtomicTable(pd.DataFrame(data), {"u": kind}))
    assert not (tmp_path / "t.inter").exists()


# ---- property: write_atomic -> read_atomic ------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r")
_tokens = st.text(_chars, max_size=8) | st.sampled_from(['"', '""', "'", ",", "|", "::", "\\", "\xa0", "\x85",
                                                         "\u2028", "é", "\x00", "a b", " lead", "trail "])
_seq_items = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r "), min_size=1,
                     max_size=6)
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_tokens, st.lists(_seq_items, max_size=4), _floats, _tokens), min_size=0,
                     max_size=8))
def test_write_then_read_is_lossless(tmp_path_factory, rows):
    frame = pd.DataFrame(rows, columns=["user_id", "tags", "score", "note"]) if rows else \
        pd.DataFrame({c: [] for c in ["user_id", "tags", "score", "note"]})
    types = {"user_id": FieldType.TOKEN, "tags": FieldType.TOKEN_SEQ, "score": FieldType.FLOAT,
             "note": FieldType.TOKEN}
    path = tmp_path_factory.mktemp("rt") / "x.inter"
    write_atomic(path, AtomicTable(frame, types))
    back = read_atomic(path).frame
    assert len(back) == len(rows)
    assert back["user_id"].astype(str).tolist() == [r[0] for r in rows]
    assert back["note"].astype(str).tolist() == [r[3] for r in rows]
    assert back["tags"].tolist() == [" ".join(r[1]) for r in rows]
    np.testing.assert_array_equal(back["score"].to_numpy(dtype=float), np.array([r[2] for r in rows], dtype=float))
