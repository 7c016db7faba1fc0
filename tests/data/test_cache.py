"""The processed cache: keyed, portable, atomic, and never used when stale or broken."""
import zipfile

import numpy as np
import pytest

from recstudio.data import from_atomic
from recstudio.data import cache as cache_mod


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "toy"
    f.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rng = np.random.default_rng(0)
    for k in range(300):
        lines.append(f"u{rng.integers(30)}\ti{rng.integers(40)}\t{rng.integers(1, 6)}\t{k}")
    (f / "toy.inter").write_text("\n".join(lines) + "\n")
    (f / "toy.item").write_text("item_id:token\tgenre:token_seq\tprice:float\n" +
                                "".join(f"i{i}\tg{i % 3} g{i % 5}\t{i}.5\n" for i in range(40)))
    return f


def cache_files(data_dir):
    return sorted(data_dir.glob("custom/*/*.npz"))


def same(a, b):
    assert a.num_interactions == b.num_interactions
    for name in a.inter.names:
        assert np.array_equal(a.inter[name], b.inter[name])
    for name in a.item_feat.names:
        assert np.array_equal(a.item_feat[name], b.item_feat[name])
    assert np.array_equal(a.id_maps["user"].tokens, b.id_maps["user"].tokens)
    assert a.field_vocab == b.field_vocab


def test_second_load_comes_from_cache(folder, isolated_data_dir, monkeypatch):
    first = from_atomic(folder)
    assert len(cache_files(isolated_data_dir)) == 1
    calls = []
    monkeypatch.setattr("recstudio.data.sources.Preprocessor.run", lambda *a: calls.append(a))
    second = from_atomic(folder)
    assert calls == []
    same(first, second)
    with zipfile.ZipFile(cache_files(isolated_data_dir)[0]) as z:  # portable arrays, no pickles
        for name in z.namelist():
            with z.open(name) as f:
                np.lib.format.read_array(f, allow_pickle=False)


def test_split_keys_reuse_cache_but_preprocessing_keys_do_not(folder, isolated_data_dir):
    from_atomic(folder)
    ds = from_atomic(folder, seed=5, split_mode="loo")
    assert len(cache_files(isolated_data_dir)) == 1
    assert ds.config["seed"] == 5 and ds.config["split_mode"] == "loo"
    from_atomic(folder, min_user_inter=3)
    assert len(cache_files(isolated_data_dir)) == 2


def test_changed_raw_file_rebuilds(folder, isolated_data_dir):
    a = from_atomic(folder)
    with open(folder / "toy.inter", "a") as f:
        f.write("newuser\ti1\t5\t999\n")
    b = from_atomic(folder)
    assert b.num_interactions == a.num_interactions + 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_broken_cache_is_detected_and_rebuilt(folder, isolated_data_dir, damage):
    good = from_atomic(folder)
    path = cache_files(isolated_data_dir)[0]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        mid = len(data) // 3
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
    else:
        path.write_bytes(b"not a zip")
    rebuilt = from_atomic(folder)
    same(good, rebuilt)
    assert cache_mod.load_dataset(path, path.stem) is not None  # a good file is back in place


def test_stale_key_inside_file_is_rejected(folder, isolated_data_dir):
    from_atomic(folder)
    path = cache_files(isolated_data_dir)[0]
    assert cache_mod.load_dataset(path, "some-other-key") is None
    assert not path.exists()


def test_failed_processing_writes_no_cache(folder, isolated_data_dir):
    with pytest.raises(Exception, match="removed every interaction"):
        from_atomic(folder, rating_threshold=10)
    assert cache_files(isolated_data_dir) == []
    assert not list(isolated_data_dir.rglob("*.part*"))


def test_cache_can_be_disabled(folder, isolated_data_dir):
    from_atomic(folder, cache=False)
    assert cache_files(isolated_data_dir) == []
