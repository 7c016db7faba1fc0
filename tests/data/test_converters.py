"""Converters on the real files (when present) and on small synthetic files of each source's shape."""
import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import pytest

from recstudio.data.atomic import read_atomic, read_atomic_folder
from recstudio.data.converters import convert_into, get_converter, list_converters
from recstudio.data.converters._common import find_file, split_title_year
from recstudio.data.fields import FieldType
from recstudio.data.registry import get_spec, prepare_dataset
from recstudio.utils.errors import ConfigError, DataError

try:
    from http_fixture import refused_url  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ laid out as a package
    from tests.data.http_fixture import refused_url  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
BUNDLED_100K = REPO / "datasets" / "ml-100k"
AMAZON_MI = SHARED / "amazon-2014-musical-instruments-5core" / "reviews_Musical_Instruments_5.json.gz"
ML1M = SHARED / "ml-1m"


@pytest.fixture(autouse=True)
def no_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSTUDIO_DATA_DIR", str(tmp_path / "env-data"))


def need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is not available here")


def convert(converter, source, tmp_path, name="d", **args):
    out = convert_into(converter, args, source, tmp_path / "atomic", name, {"dataset": name})
    return read_atomic_folder(out, name)


# ---- real data ---------------------------------------------------------------------------------
def test_bundled_ml100k_via_prepare(refused_url, tmp_path):
    need(BUNDLED_100K / "u.data")
    spec = dataclasses.replace(get_spec("ml-100k"), url=refused_url("ml-100k.zip"), filename=None)
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)      # bundled: never touches the URL
    t = read_atomic_folder(folder, "ml-100k")
    inter, item, user = t["inter"].frame, t["item"], t["user"]
    assert len(inter) == 100000 and inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1682
    assert sorted(inter["rating"].unique()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert item.types == {"item_id": FieldType.TOKEN, "movie_title": FieldType.TOKEN_SEQ,
                          "release_year": FieldType.TOKEN, "class": FieldType.TOKEN_SEQ}
    rows = item.frame.set_index("item_id")
    assert len(rows) == 1682
    assert rows.loc["1", "movie_title"] == "Toy Story" and rows.loc["1", "release_year"] == "1995"
    assert rows.loc["1", "class"] == "Animation Children's Comedy"
    assert rows.loc["543", "movie_title"] == "Misérables, Les"                 # latin-1 decoded
    assert list(user.types) == ["user_id", "age", "gender", "occupation", "zip_code"] and len(user) == 943
    assert not (tmp_path / "ml-100k" / "raw").exists()


def test_ml100k_kg_uses_the_bundled_ml100k_and_downloads_only_the_graph(refused_url, tmp_path):
    need(BUNDLED_100K / "u.data")
    need(SHARED / "ml-100k-kg" / "ml-100k.kg")
    spec = dataclasses.replace(get_spec("ml-100k-kg"), url=refused_url("ml-100k.zip"))  # never fetched
    raw = tmp_path / "ml-100k-kg" / "raw"
    raw.mkdir(parents=True)
    for name in ("ml-100k.kg", "ml-100k.link"):  # as if downloaded: verified against the spec's sha256
        shutil.copyfile(SHARED / "ml-100k-kg" / name, raw / name)
    t = read_atomic_folder(prepare_dataset(spec, data_dir=tmp_path, progress=False), "ml-100k-kg")
    assert len(t["inter"].frame) == 100000 and len(t["link"].frame) == 1598 and len(t["kg"].frame) == 91631
    assert (raw / "ml-100k" / "u.data").is_symlink() and not (raw / "ml-100k.zip").exists()


def test_real_amazon_musical_instruments(refused_url, tmp_path):
    need(AMAZON_MI)
    raw = tmp_path / "amazon-musical-instruments-5core" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(AMAZON_MI, raw / AMAZON_MI.name)                  # placed by hand, verified by its md5/sha256
    spec = dataclasses.replace(get_spec("amazon2014-5core:Musical_Instruments"), url=refused_url(AMAZON_MI.name))
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)
    inter = read_atomic(folder / "amazon-musical-instruments-5core.inter").frame
    assert len(inter) == 10261 and inter["user_id"].nunique() == 1429 and inter["item_id"].nunique() == 900
    assert inter["rating"].value_counts().sort_index().tolist() == [217, 250, 772, 2084, 6938]
    assert inter["timestamp"].min() > 1e9


def test_real_ml1m_movies_users_with_synthetic_ratings(tmp_path):
    need(ML1M / "movies.dat")
    src = tmp_path / "raw" / "ml-1m"
    src.mkdir(parents=True)
    shutil.copy(ML1M / "movies.dat", src)
    shutil.copy(ML1M / "users.dat", src)
    (src / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n6040::3952::4::956715569\n")
    t = convert("movielens_dat", tmp_path / "raw", tmp_path, subdir="ml-1m", encoding="latin-1")
    assert len(t["inter"]) == 3 and len(t["item"]) == 3883 and len(t["user"]) == 6040
    items = t["item"].frame.set_index("item_id")
    assert items.loc["1", "genre"] == "Animation Children's Comedy" and items.loc["1", "release_year"] == "1995"
    assert t["item"].types["genre"] == FieldType.TOKEN_SEQ
    assert items["movie_title"].str.contains("é").any()                     # latin-1 titles decoded
    users = t["user"].frame.set_index("user_id")
    assert users.loc["1", "gender"] == "F" and users.loc["1", "zip_code"] == "48067"


# ---- synthetic files of each shape ------------------------------------------------------------
def test_movielens_10m_layout_without_users(tmp_path):
    src = tmp_path / "raw" / "ml-10m" / "ml-10M100K"
    src.mkdir(parents=True)
    (src / "ratings.dat").write_text("1::122::5::838985046\n1::185::4.5::838983525\n")
    (src / "movies.dat").write_text("122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action\n")
    t = convert("movielens_dat", tmp_path / "raw", tmp_path, subdir="ml-10M100K")
    assert set(t) == {"inter", "item"} and t["inter"].frame["rating"].tolist() == [5.0, 4.5]


def test_movielens_csv(tmp_path):
    src = tmp_path / "ml-20m"
    src.mkdir()
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n")
    (src / "movies.csv").write_text('movieId,title,genres\n2,"Jumanji, The (1995)",Adventure|Children\n'
                                    "29,Babylon 5,(no genres listed)\n")
    t = convert("movielens_csv", tmp_path, tmp_path, subdir="ml-20m")
    items = t["item"].frame.set_index("item_id")
    assert items.loc["2", "movie_title"] == "Jumanji, The" and items.loc["2", "genre"] == "Adventure Children"
    assert items.loc["29", "release_year"] == "" and items.loc["29", "genre"] == ""
    assert t["inter"].frame["timestamp"].tolist() == [1112486027.0, 1112484676.0]


def test_amazon_ratings_csv(tmp_path):
    (tmp_path / "ratings_Books.csv").write_text("AH2L9G3DQHHAJ,0000000116,4.0,1019865600\nA2IIIDRK3PRRZY,"
                                                "0000000116,1.0,1395619200\n")
    t = convert("amazon_ratings", tmp_path, tmp_path, filename="ratings_Books.csv")
    assert t["inter"].frame["item_id"].tolist() == ["0000000116", "0000000116"]   # ids stay text


def test_amazon_reviews_tolerant_fallback_and_errors(tmp_path):
    rows = [{"reviewerID": "A", "asin": "X", "overall": "5.0", "unixReviewTime": 1400000000},   # rating as text
            {"reviewerID": "B", "asin": "X", "overall": 4, "unixReviewTime": 1400000001}]
    (tmp_path / "r.json.gz").write_bytes(gzip.compress("\n".join(map(json.dumps, rows)).encode()))
    t = convert("amazon_reviews", tmp_path, tmp_path, filename="r.json.gz")
    assert t["inter"].frame["rating"].tolist() == [5.0, 4.0]
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(b'{"reviewerID": "A", "asin": "X"}\n{oops\n'))
    with pytest.raises(DataError, match="line"):
        get_converter("amazon_reviews")(tmp_path, filename="bad.json.gz")


def test_gowalla(tmp_path):
    (tmp_path / "loc-gowalla_totalCheckins.txt.gz").write_bytes(gzip.compress(
        b"0\t2010-10-19T23:55:27Z\t30.2359091167\t-97.7951395833\t22847\n"
        b"0\t2010-10-18T22:17:43Z\t30.2691029532\t-97.7493953705\t420315\n"
        b"1\t2010-10-17T23:42:03Z\t30.2359091167\t-97.7951395833\t22847\n"))
    (tmp_path / "loc-gowalla_edges.txt.gz").write_bytes(gzip.compress(b"0\t1\n1\t0\n"))
    t = convert("gowalla", tmp_path, tmp_path)
    inter = t["inter"].frame
    assert inter["timestamp"].iloc[0] == 1287532527.0 and list(t["inter"].types) == ["user_id", "item_id",
                                                                                       "timestamp"]
    assert len(t["item"]) == 2 and t["item"].types["latitude"] == FieldType.FLOAT
    assert t["net"].frame["source_id"].tolist() == ["0", "1"]


def test_lastfm_hetrec(tmp_path):
    src = tmp_path / "hetrec2011-lastfm-2k"
    src.mkdir()
    (src / "user_artists.dat").write_text("userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t5\n")
    (src / "user_friends.dat").write_text("userID\tfriendID\n2\t3\n3\t2\n")
    (src / "artists.dat").write_bytes("id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://p\n"
                                      "52\tMorcheeba\thttp://b\thttp://q\n53\tMotörhead\thttp://c\t\n"
                                      .encode("latin-1"))
    (src / "user_taggedartists.dat").write_text("userID\tartistID\ttagID\tday\tmonth\tyear\n"
                                                "2\t52\t13\t1\t4\t2009\n2\t52\t15\t1\t4\t2009\n3\t52\t15\t1\t4\t2009\n")
    t = convert("lastfm_hetrec", tmp_path, tmp_path)
    assert t["inter"].frame["weight"].tolist() == [13883.0, 11690.0, 5.0]
    items = t["item"].frame.set_index("item_id")
    assert items.loc["52", "tag_id"] == "15 13" and items.loc["51", "tag_id"] == ""
    assert items.loc["53", "artist_name"] == "Motörhead" and items.loc["51", "artist_name"] == "Duran Duran"
    assert len(t["net"]) == 2


def test_helpers_and_registry_of_converters(tmp_path):
    assert {"movielens_100k", "movielens_dat", "movielens_csv", "amazon_reviews", "amazon_ratings", "gowalla",
            "lastfm_hetrec"} <= set(list_converters())
    assert get_converter("recstudio.data.converters.gowalla:convert_gowalla") is get_converter("gowalla")
    with pytest.raises(ConfigError, match="movielens_dat"):
        get_converter("movielens_dta")
    assert split_title_year("Toy Story (1995)") == ("Toy Story", "1995")
    assert split_title_year("Babylon 5") == ("Babylon 5", "")
    assert split_title_year("Stranger Things (2016-)") == ("Stranger Things", "2016")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.dat").write_text("1")
    assert find_file(tmp_path, "x.dat") == tmp_path / "a" / "x.dat"
    (tmp_path / "b" / "x.dat").write_text("2")
    with pytest.raises(DataError, match="several"):
        find_file(tmp_path, "x.dat")
    assert find_file(tmp_path, "x.dat", subdir="b") == tmp_path / "b" / "x.dat"
    with pytest.raises(DataError, match="y.dat"):
        find_file(tmp_path, "y.dat")
