"""The dataset registry and prepare_dataset, end to end against a local HTTP server."""
import dataclasses
import gzip
import hashlib
import inspect
import io
import json
import zipfile
from pathlib import Path

import pytest

from recstudio.data import registry
from recstudio.data.atomic import read_atomic
from recstudio.data.config import resolve_data_config
from recstudio.data.converters import get_converter
from recstudio.data.download import CHECKSUM_RECORD, read_checksum_record
from recstudio.data.fields import FieldType
from recstudio.data.registry import (DatasetSpec, default_data_dir, get_spec, list_datasets, prepare_dataset,
                                     register_dataset)
from recstudio.utils.errors import ConfigError, DataError, DatasetNotFoundError, DownloadError

try:
    from http_fixture import http_server, refused_url  # noqa: F401  (pytest fixtures)
except ImportError:  # tests/ laid out as a package
    from tests.data.http_fixture import http_server, refused_url  # noqa: F401

#: every checksum the built-in registry may contain: values published by the providers and
#: checked against the real files (see shared/datasets/README.md). Nothing else is allowed.
KNOWN_CHECKSUMS = {
    ("ml-100k", "md5", "0e33842e24a9c977be4e0107933c0723"),
    ("ml-1m", "md5", "c4d9eecfca2ab87c1945afe126590906"),
    ("ml-10m", "md5", "ce571fd55effeba0271552578f2648bd"),
    ("ml-20m", "md5", "cd245b17a1ae2cc31bb14903e1204af3"),
    ("amazon-musical-instruments-5core", "md5", "8035b6e3f9194844785b3f4cee296577"),
    ("amazon-musical-instruments-5core", "sha256", "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748"),
    # computed from the real files (the original archives / RecBole's atomic files, ../shared/datasets/SHA256SUMS)
    ("ciao", "sha256", "dee78c18b4a0843791e82b522f632a1166296e6048537b13b18c281a12e8f741"),
    ("epinions", "sha256", "7eb45830d7cbae511913ed20e82ab4f56760a5e54380dbde7b9e3f9439b53b9a"),
    ("ml-100k-kg", "md5", "0e33842e24a9c977be4e0107933c0723"),
    ("ml-100k-sessions", "md5", "0e33842e24a9c977be4e0107933c0723"),  # [session-data] the same ml-100k zip
    ("ml-100k-kg", "sha256", "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779"),
    ("ml-100k-kg", "sha256", "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948"),
}


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch, tmp_path):
    """Registrations made by a test vanish after it; ~/.cache is never used."""
    registry._ensure_loaded()
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    monkeypatch.setattr(registry, "_FAMILIES", {k: dict(v) for k, v in registry._FAMILIES.items()})
    monkeypatch.setenv("RECSTUDIO_DATA_DIR", str(tmp_path / "env-data"))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def zip_bytes(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def tiny_ml1m_zip() -> bytes:
    ratings = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n3::30::1::978300275\n"
    movies = "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Heat (1995)::Action|Crime|Thriller\n" \
             "30::Tr\xe8s (2000)::Drama\n"
    users = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
    return zip_bytes({"ml-1m/ratings.dat": ratings, "ml-1m/movies.dat": movies.encode("latin-1"),
                      "ml-1m/users.dat": users, "ml-1m/README": "GroupLens"})


# ---- lookup ------------------------------------------------------------------------------------
def test_list_and_lookup():
    names = list_datasets()
    assert names == sorted(names)
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "gowalla", "lastfm-2k",
                 "amazon-musical-instruments-5core", "amazon-books-5core", "amazon-books-ratings"):
        assert name in names
    assert get_spec("ML-1M").name == "ml-1m"
    assert get_spec("hetrec2011-lastfm-2k").name == "lastfm-2k"
    spec = get_spec("amazon2014-5core:Musical_Instruments")
    assert spec is get_spec("amazon-musical-instruments-5core") is get_spec("Amazon2014-5core:musical-instruments")
    assert spec.url.endswith("/reviews_Musical_Instruments_5.json.gz") and spec.archive == "gz"
    assert get_spec("amazon2014-ratings:Books").url.endswith("/ratings_Books.csv")
    assert get_spec("amazon2014-5core:Books").checksum is None
    assert get_spec("ml-10m").converter_args["subdir"] == "ml-10M100K"


def test_unknown_names_suggest_close_ones():
    with pytest.raises(DatasetNotFoundError) as err:
        get_spec("ml-100")
    assert "ml-100k" in str(err.value) and "list_datasets()" in str(err.value)
    assert isinstance(err.value, KeyError)
    with pytest.raises(DatasetNotFoundError, match="Musical_Instruments"):
        get_spec("amazon2014-5core:Musical_Instrument")


def test_builtin_specs_are_complete_and_honest():
    found = set()
    for name in list_datasets():
        spec = get_spec(name)
        for key in ("user_field", "item_field", "rating_field", "time_field"):
            assert key in spec.config, (name, key)
        resolve_data_config(spec.config, where=name)        # only keys the data layer knows
        inspect.signature(get_converter(spec.converter)).bind(Path("."), **spec.converter_args)
        assert spec.url or spec.bundled
        assert spec.citation and spec.homepage and spec.license_note and spec.description
        for d in spec.downloads():
            for algo, digest in (d["checksum"] or {}).items():
                found.add((name, algo, digest))
    assert found == KNOWN_CHECKSUMS                           # never an invented checksum


def test_default_data_dir(monkeypatch, tmp_path):
    assert default_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("RECSTUDIO_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("RECSTUDIO_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "recstudio"


def test_register_spec_dict_and_yaml(tmp_path):
    spec = register_dataset(DatasetSpec(name="My-Data", url="https://example.org/r.csv", converter="amazon_ratings",
                                        converter_args={"filename": "r.csv"}))
    assert get_spec("my-data") is spec and "My-Data" in list_datasets()
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset({"name": "my-data", "url": "https://example.org/s.csv", "converter": "amazon_ratings"})
    register_dataset({"name": "my-data", "url": "https://example.org/s.csv", "converter": "amazon_ratings"},
                     overwrite=True)
    assert get_spec("MY-DATA").url.endswith("s.csv")
    single = tmp_path / "one.yaml"
    single.write_text("name: yaml-data\nurl: https://example.org/y.zip\narchive: zip\nconverter: movielens_csv\n"
                      "config: {user_field: user_id, item_field: item_id}\n")
    assert register_dataset(single).yaml_path == single
    family = tmp_path / "fam.yaml"
    family.write_text("family: shop\ncategories: [Shoes, Hats]\nchecksums:\n  Hats:\n    md5: " + md5(b"x")
                      + "\nname: shop-{slug}\nurl: https://example.org/{category}.csv\n"
                      "converter: amazon_ratings\nconverter_args:\n  filename: '{category}.csv'\n")
    specs = register_dataset(family)
    assert [s.name for s in specs] == ["shop-shoes", "shop-hats"]
    assert get_spec("shop:hats").checksum == {"md5": md5(b"x")} and get_spec("shop-shoes").checksum is None


def test_bad_specs_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nurl: https://example.org/x.zip\nconverter: movielens_csv\nchecksumm: null\n")
    with pytest.raises(ConfigError, match="checksum"):
        register_dataset(bad)
    with pytest.raises(ConfigError, match="archive"):
        DatasetSpec(name="x", url="https://example.org/x", archive="rar", converter="gowalla")
    with pytest.raises(ConfigError, match="url"):
        DatasetSpec(name="x", converter="gowalla")
    with pytest.raises(ConfigError, match="64 hex"):
        DatasetSpec(name="x", url="https://example.org/x", converter="gowalla", checksum={"sha256": "abc"})
    with pytest.raises(DatasetNotFoundError):
        get_spec("x")                                         # nothing half-registered


# ---- prepare_dataset -------------------------------------------------------------------------
def ml1m_spec(url, checksum, **kw):
    return dataclasses.replace(get_spec("ml-1m"), url=url, checksum=checksum, filename=None, **kw)


def test_download_convert_read_back_and_reuse(http_server, tmp_path):
    data = tiny_ml1m_zip()
    spec = ml1m_spec(http_server.add("/ml-1m.zip", data), {"md5": md5(data)})
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)
    assert folder == tmp_path / "ml-1m" / "atomic"
    inter = read_atomic(folder / "ml-1m.inter")
    assert len(inter) == 4 and list(inter.frame["user_id"].astype(str)) == ["1", "1", "2", "3"]
    assert inter.types["rating"] == FieldType.FLOAT
    item = read_atomic(folder / "ml-1m.item")
    assert item.types["genre"] == FieldType.TOKEN_SEQ and "Très" in set(item.frame["movie_title"])
    assert len(read_atomic(folder / "ml-1m.user")) == 3
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sources"] == {"ml-1m.zip": {"md5": md5(data)}} and manifest["rows"]["inter"] == 4
    raw = tmp_path / "ml-1m" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["ml-1m.zip"]      # extracted copy removed
    assert sorted(p.name for p in (tmp_path / "ml-1m").iterdir()) == ["atomic", "raw"]
    assert prepare_dataset(spec, data_dir=tmp_path, progress=False) == folder
    assert http_server.hits["/ml-1m.zip"] == 1                         # no second download
    # a changed converter configuration rebuilds from the raw zip, still without downloading
    changed = dataclasses.replace(spec, converter_args={"subdir": "ml-1m", "encoding": "cp1252"})
    assert prepare_dataset(changed, data_dir=tmp_path, progress=False) == folder
    assert json.loads((folder / "manifest.json").read_text())["converter_args"]["encoding"] == "cp1252"
    assert http_server.hits["/ml-1m.zip"] == 1


def test_env_data_dir_is_used(http_server, tmp_path):
    data = tiny_ml1m_zip()
    spec = ml1m_spec(http_server.add("/ml-1m.zip", data), {"md5": md5(data)})
    assert prepare_dataset(spec, progress=False) == tmp_path / "env-data" / "ml-1m" / "atomic"


def test_checksum_mismatch_through_prepare(http_server, tmp_path):
    data = tiny_ml1m_zip()
    spec = ml1m_spec(http_server.add("/ml-1m.zip", data), {"md5": "c4d9eecfca2ab87c1945afe126590906"})
    with pytest.raises(DownloadError) as err:
        prepare_dataset(spec, data_dir=tmp_path, progress=False)
    assert "c4d9eecfca2ab87c1945afe126590906" in str(err.value) and md5(data) in str(err.value)
    assert spec.url in str(err.value)
    assert list((tmp_path / "ml-1m" / "raw").iterdir()) == []
    assert not (tmp_path / "ml-1m" / "atomic").exists()


def test_offline_then_manual_placement(refused_url, tmp_path):
    data = tiny_ml1m_zip()
    spec = ml1m_spec(refused_url("ml-1m.zip"), {"md5": md5(data)})
    with pytest.raises(DownloadError) as err:
        prepare_dataset(spec, data_dir=tmp_path, progress=False)
    where = tmp_path / "ml-1m" / "raw" / "ml-1m.zip"
    assert str(where) in str(err.value) and spec.url in str(err.value) and "verified" in str(err.value)
    where.write_bytes(data)                                            # the user copies the file by hand
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)
    assert len(read_atomic(folder / "ml-1m.inter")) == 4


def test_failed_conversion_leaves_no_folder(http_server, tmp_path):
    broken = zip_bytes({"ml-1m/ratings.dat": "1::10::five::978300760\n"})
    spec = ml1m_spec(http_server.add("/ml-1m.zip", broken), {"md5": md5(broken)})
    with pytest.raises(DataError, match="ratings.dat"):
        prepare_dataset(spec, data_dir=tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "ml-1m").iterdir()) == ["raw"]   # no atomic/, no temp folder
    with pytest.raises(ConfigError, match="converter_args"):
        prepare_dataset(dataclasses.replace(spec, converter_args={"bogus": 1}), data_dir=tmp_path, progress=False)


def test_unknown_checksum_recorded_on_first_use(http_server, tmp_path):
    checkins = gzip.compress(b"0\t2010-10-19T23:55:27Z\t30.2\t-97.7\t22847\n"
                             b"1\t2010-10-18T22:17:43Z\t30.3\t-97.8\t420315\n")
    edges = gzip.compress(b"0\t1\n1\t0\n")
    spec = dataclasses.replace(
        get_spec("gowalla"), url=http_server.add("/loc-gowalla_totalCheckins.txt.gz", checkins),
        extra_files=[{"url": http_server.add("/loc-gowalla_edges.txt.gz", edges)}])
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)
    raw = tmp_path / "gowalla" / "raw"
    assert read_checksum_record(raw) == {"loc-gowalla_totalCheckins.txt.gz": hashlib.sha256(checkins).hexdigest(),
                                         "loc-gowalla_edges.txt.gz": hashlib.sha256(edges).hexdigest()}
    assert (raw / CHECKSUM_RECORD).is_file()
    assert len(read_atomic(folder / "gowalla.net")) == 2 and len(read_atomic(folder / "gowalla.item")) == 2
    # the raw file is damaged later: a rebuild refuses it
    (raw / "loc-gowalla_edges.txt.gz").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="recorded on first use"):
        prepare_dataset(spec, data_dir=tmp_path, progress=False, force=True)


def test_amazon_family_member_downloads(http_server, tmp_path):
    lines = [{"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 5.0, "unixReviewTime": 1400000000 + u,
              "reviewText": "ok", "helpful": [0, 0]} for u in range(3) for i in range(2)]
    data = gzip.compress("\n".join(json.dumps(x) for x in lines).encode())
    spec = dataclasses.replace(get_spec("amazon2014-5core:Musical_Instruments"),
                               url=http_server.add("/reviews_Musical_Instruments_5.json.gz", data),
                               checksum={"md5": md5(data)})
    folder = prepare_dataset(spec, data_dir=tmp_path, progress=False)
    inter = read_atomic(folder / "amazon-musical-instruments-5core.inter")
    assert len(inter) == 6 and set(inter.types) == {"user_id", "item_id", "rating", "timestamp"}


def test_bundled_folder_verified_or_download_fallback(http_server, refused_url, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    files = {"u.data": b"1\t10\t5\t881250949\n2\t10\t3\t881250950\n", "u.item":
             ("10|Caf\xe9 (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n").encode("latin-1"),
             "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n"}
    for name, data in files.items():
        (bundle / name).write_bytes(data)
    sums = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    base = dataclasses.replace(get_spec("ml-100k"), bundled=str(bundle), bundled_checksums=sums,
                               url=refused_url("ml-100k.zip"), filename=None)
    folder = prepare_dataset(base, data_dir=tmp_path / "d1", progress=False)   # no network needed
    item = read_atomic(folder / "ml-100k.item")
    assert list(item.frame["movie_title"]) == ["Café"] and list(item.frame["class"]) == ["Western"]
    (bundle / "u.data").write_bytes(files["u.data"] + b"3\t10\t1\t881250951\n")  # modified by someone
    with pytest.raises(DataError, match="modified"):
        prepare_dataset(base, data_dir=tmp_path / "d2", progress=False)
    (bundle / "u.data").unlink()                                               # folder incomplete: download
    archive = zip_bytes({f"ml-100k/{n}": d for n, d in files.items()})
    spec = dataclasses.replace(base, url=http_server.add("/ml-100k.zip", archive), checksum={"md5": md5(archive)},
                               filename=None)
    folder = prepare_dataset(spec, data_dir=tmp_path / "d3", progress=False)
    assert len(read_atomic(folder / "ml-100k.inter")) == 2 and http_server.hits["/ml-100k.zip"] == 1
