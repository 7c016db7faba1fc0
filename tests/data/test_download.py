"""Downloads against a local HTTP server: verify, record, extract, and every failure path."""
import hashlib
import io
import logging
import tarfile
import zipfile

import pytest

from recstudio.data.download import (CHECKSUM_RECORD, archive_stem, download_file, extract_archive, fetch_file,
                                     normalize_checksum, read_checksum_record, url_filename)
from recstudio.utils.errors import ConfigError, DataError, DownloadError

try:
    from http_fixture import http_server, refused_url  # noqa: F401  (pytest fixtures)
except ImportError:  # tests/ laid out as a package
    from tests.data.http_fixture import http_server, refused_url  # noqa: F401

PAYLOAD = b"user\titem\n" * 5000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_returns_digests(http_server, tmp_path):
    url = http_server.add("/data.bin", PAYLOAD)
    dest = tmp_path / "raw" / "data.bin"
    digests = download_file(url, dest, {"md5": md5(PAYLOAD)}, progress=True)
    assert dest.read_bytes() == PAYLOAD
    assert digests == {"md5": md5(PAYLOAD), "sha256": sha(PAYLOAD)}
    assert leftovers(dest.parent) == ["data.bin"]


def test_checksum_mismatch_names_both_digests_and_keeps_nothing(http_server, tmp_path):
    url = http_server.add("/data.bin", PAYLOAD)
    dest = tmp_path / "raw" / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        download_file(url, dest, {"sha256": wrong}, progress=False)
    msg = str(err.value)
    assert wrong in msg and sha(PAYLOAD) in msg and url in msg
    assert leftovers(dest.parent) == []


def test_offline_message_names_url_and_manual_path(refused_url, tmp_path):
    url = refused_url("ml-1m.zip")
    dest = tmp_path / "raw" / "ml-1m.zip"
    with pytest.raises(DownloadError) as err:
        download_file(url, dest, {"md5": "c4d9eecfca2ab87c1945afe126590906"}, progress=False, timeout=5)
    msg = str(err.value)
    assert url in msg and str(dest) in msg and "verified" in msg
    assert "c4d9eecfca2ab87c1945afe126590906" in msg
    assert leftovers(dest.parent) == []


def test_truncated_body_leaves_no_partial_file(http_server, tmp_path):
    url = http_server.add("/cut.bin", PAYLOAD, mode="truncate")
    dest = tmp_path / "raw" / "cut.bin"
    with pytest.raises(DownloadError) as err:
        download_file(url, dest, None, progress=False, timeout=5)
    assert url in str(err.value)
    assert leftovers(dest.parent) == []  # neither the final name nor a .part file


def test_http_error_status(http_server, tmp_path):
    url = http_server.add("/gone.zip", b"", mode="status:404")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(url, tmp_path / "gone.zip", progress=False)
    assert leftovers(tmp_path) == []


def test_timeout_is_a_download_error(http_server, tmp_path):
    url = http_server.add("/slow.bin", PAYLOAD, mode="slow:0.6")
    with pytest.raises(DownloadError, match="slow.bin"):
        download_file(url, tmp_path / "slow.bin", progress=False, timeout=0.15)
    assert leftovers(tmp_path) == []


def test_hand_placed_file_is_verified_and_used_without_network(refused_url, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ml-1m.zip").write_bytes(PAYLOAD)
    path = fetch_file(refused_url("ml-1m.zip"), raw, checksum={"sha256": sha(PAYLOAD)}, progress=False)
    assert path == raw / "ml-1m.zip"


def test_hand_placed_wrong_file_is_moved_aside(refused_url, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ml-1m.zip").write_bytes(b"not the zip")
    with pytest.raises(DownloadError) as err:
        fetch_file(refused_url("ml-1m.zip"), raw, checksum={"md5": md5(PAYLOAD)}, progress=False)
    assert md5(PAYLOAD) in str(err.value) and md5(b"not the zip") in str(err.value)
    assert leftovers(raw) == ["ml-1m.zip.corrupt"]


def test_unknown_checksum_is_recorded_then_enforced(http_server, tmp_path, caplog):
    url = http_server.add("/checkins.txt.gz", PAYLOAD)
    raw = tmp_path / "raw"
    with caplog.at_level(logging.WARNING, logger="recstudio.data"):
        fetch_file(url, raw, progress=False)
    assert sha(PAYLOAD) in caplog.text
    assert read_checksum_record(raw) == {"checkins.txt.gz": sha(PAYLOAD)}
    assert (raw / CHECKSUM_RECORD).read_text() == f"{sha(PAYLOAD)}  checkins.txt.gz\n"
    # later use: verified against the record, no new download
    fetch_file(url, raw, progress=False)
    assert http_server.hits["/checkins.txt.gz"] == 1
    # the provider's file changes: a fresh download no longer matches the record
    (raw / "checkins.txt.gz").unlink()
    http_server.add("/checkins.txt.gz", PAYLOAD + b"changed")
    with pytest.raises(DownloadError) as err:
        fetch_file(url, raw, progress=False)
    assert sha(PAYLOAD) in str(err.value) and CHECKSUM_RECORD in str(err.value)
    assert not (raw / "checkins.txt.gz").exists()
    # a hand-placed file that differs from the record is refused too
    (raw / "checkins.txt.gz").write_bytes(b"other")
    with pytest.raises(DownloadError, match="recorded on first use"):
        fetch_file(url, raw, progress=False)


def _zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_extract_zip_and_tar(tmp_path):
    z = tmp_path / "a.zip"
    z.write_bytes(_zip_bytes({"a/x.txt": "x", "a/y.txt": "y"}))
    out = extract_archive(z, "zip", tmp_path / "a")
    assert (out / "a" / "x.txt").read_text() == "x"
    t = tmp_path / "b.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("b/z.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"z"))
    assert (extract_archive(t, "tar.gz", tmp_path / "b") / "b" / "z.txt").read_text() == "z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.zip", "b", "b.tar.gz"]


def test_extract_refuses_unsafe_and_damaged_archives(tmp_path):
    z = tmp_path / "evil.zip"
    z.write_bytes(_zip_bytes({"../escape.txt": "x"}))
    with pytest.raises(DataError, match="outside"):
        extract_archive(z, "zip", tmp_path / "evil")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match="delete it"):
        extract_archive(bad, "zip", tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "evil.zip"]


def test_checksum_normalisation():
    assert normalize_checksum(None) is None
    assert normalize_checksum({"MD5": "0E33842E24A9C977BE4E0107933C0723"}) == {"md5": "0e33842e24a9c977be4e0107933c0723"}
    with pytest.raises(ConfigError, match="sha512"):
        normalize_checksum({"sha512": "ab"})
    with pytest.raises(ConfigError, match="64 hex"):
        normalize_checksum({"sha256": "abc"})
    with pytest.raises(ConfigError, match="algorithm:hex"):
        normalize_checksum("abcdef")


def test_names_from_urls():
    assert url_filename("https://x.org/a/ml-1m.zip?dl=1") == "ml-1m.zip"
    assert archive_stem("ml-1m.zip") == "ml-1m" and archive_stem("x.tar.gz") == "x"
