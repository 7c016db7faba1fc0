"""A registered dataset's extracted original files in raw/ stand in for its absent archive, verified."""
import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest

from recstudio.data import load_dataset
from recstudio.data.registry import get_spec, prepare_dataset
from recstudio.utils.errors import DownloadError

SHARED = Path("/work/shared/datasets")
ML1M = SHARED / "ml-1m"
LASTFM = SHARED / "hetrec2011-lastfm-2k"


def place(src: Path, raw: Path, names, link=True):
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        (raw / name).symlink_to(src / name) if link else (raw / name).write_bytes((src / name).read_bytes())


@pytest.mark.skipif(not ML1M.is_dir(), reason="needs the shared real ml-1m files")
def test_ml1m_loads_from_its_extracted_files(tmp_path):
    place(ML1M, tmp_path / "ml-1m" / "raw", ["ratings.dat", "movies.dat", "users.dat", "README"])
    ds = load_dataset("ml-1m", data_dir=str(tmp_path))
    assert ds.num_interactions == 1_000_209
    assert (ds.num_users - 1, ds.num_items - 1) == (6040, 3706)
    manifest = json.loads((tmp_path / "ml-1m" / "atomic" / "manifest.json").read_text())
    assert manifest["sources"]["ratings.dat"] == {"sha256": get_spec("ml-1m").extracted_checksums["ratings.dat"]}
    assert set(manifest["sources"]) == {"ratings.dat", "movies.dat", "users.dat", "README"}
    assert manifest["rows"] == {"inter": 1_000_209, "item": 3883, "user": 6040}
    assert all((tmp_path / "ml-1m" / "raw" / n).is_symlink() for n in ("ratings.dat", "movies.dat"))  # kept


@pytest.mark.skipif(not LASTFM.is_dir(), reason="needs the shared real Last.fm files")
def test_lastfm_loads_from_its_extracted_files_in_the_archive_layout(tmp_path):
    raw = tmp_path / "lastfm-2k" / "raw" / "hetrec2011-lastfm-2k"
    place(LASTFM, raw, ["user_artists.dat", "artists.dat", "user_friends.dat"])
    folder = prepare_dataset("lastfm-2k", data_dir=tmp_path, progress=False)
    rows = json.loads((folder / "manifest.json").read_text())["rows"]
    assert rows["inter"] == 92_834 and rows["item"] == 17_632 and rows["net"] == 25_434


def test_a_modified_extracted_file_is_refused_and_moved_aside(tmp_path):
    raw = tmp_path / "ml-1m" / "raw"
    raw.mkdir(parents=True)
    (raw / "ratings.dat").write_text("1::1193::5::978300760\n")
    with pytest.raises(DownloadError, match="checksum mismatch .*expected sha256 506d64ca") as e:
        prepare_dataset("ml-1m", data_dir=tmp_path, progress=False)
    assert "extracted ratings.dat" in str(e.value)
    assert not (raw / "ratings.dat").exists() and (raw / "ratings.dat.corrupt").is_file()


def test_the_offline_message_names_the_archive_and_the_extracted_files(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the download is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = dataclasses.replace(get_spec("ml-1m"), url=f"http://127.0.0.1:{port}/ml-1m.zip")
    with pytest.raises(DownloadError) as e:
        prepare_dataset(spec, data_dir=tmp_path, progress=False)
    text = str(e.value)
    raw = tmp_path / "ml-1m" / "raw"
    assert f"put the file at {raw / 'ml-1m.zip'}" in text
    assert "extracted original files ['ratings.dat', 'movies.dat', 'users.dat', 'README']" in text
    assert f"in {raw} (or {raw / 'ml-1m'})" in text and "published sha256" in text


def test_registry_yamls_hold_the_published_sha256_of_the_shared_files():
    sums = SHARED / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("needs the shared checksum list")
    published = {}
    for line in sums.read_text().splitlines():
        digest, _, path = line.partition("  ")
        published.setdefault(os.path.basename(path), set()).add(digest)
    for name in ("ml-1m", "ml-100k", "lastfm-2k"):
        spec = get_spec(name)
        assert spec.extracted_checksums
        for file, digest in spec.extracted_checksums.items():
            assert digest in published[file], (name, file)
