"""The inference API: recommend (unknown-user policy, duplicates, k), recommend_all (CSV / Parquet
content equals recommend, atomic writes) and similar_items (equals brute force, errors)."""
import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.model.base.meta import DataMeta
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError, DataError

SMALL = {"embed_dim": 8, "epochs": 2, "batch_size": 64, "quiet": True}


@pytest.fixture(scope="module")
def split(make_split):
    return make_split(3, n_users=30, n_items=40, length=(4, 12))


@pytest.fixture(scope="module")
def bpr(split, tmp_path_factory):
    model, _ = recstudio.run(model="BPR", dataset=split, run_dir=str(tmp_path_factory.mktemp("bpr")), **SMALL)
    return model


def train_popularity(split):
    ds = split.dataset
    counts = np.bincount(ds.items[split.train], minlength=ds.num_items)[1:]
    return counts


def test_unknown_users_error_by_default_and_name_the_fallback(bpr):
    with pytest.raises(DataError, match=r"unknown user ids \['nobody', 'ghost'\].*unknown='popular'"):
        bpr.recommend(["u1", "nobody", "ghost"], k=3)
    with pytest.raises(ConfigError, match="not a policy for unknown users"):
        bpr.recommend(["u1"], k=3, unknown="skip")


def test_popular_fallback_uses_train_counts_and_survives_save_load(bpr, split, tmp_path):
    counts = train_popularity(split)
    order = np.argsort(-counts, kind="stable")[:5]
    expected_items = split.dataset.id_maps["item"].tokens[order]
    items, scores = bpr.recommend(["nobody", "u0", "ghost"], k=5, unknown="popular")
    assert items[0].tolist() == expected_items.tolist() == items[2].tolist()
    assert scores[0].tolist() == counts[order].astype(np.float32).tolist()
    known_items, known_scores = bpr.recommend(["u0"], k=5)
    assert items[1].tolist() == known_items[0].tolist() and np.allclose(scores[1], known_scores[0])
    loaded = recstudio.load(bpr.save(tmp_path / "bpr.pt"))
    assert loaded.recommend(["nobody"], k=5, unknown="popular")[0].tolist() == [expected_items.tolist()]
    assert bpr.known_users(["u0", "nobody"]).tolist() == [True, False]


def test_duplicates_empty_input_and_k_validation(bpr):
    items, scores = bpr.recommend(["u2", "u5", "u2"], k=4)
    assert (items[0] == items[2]).all() and np.allclose(scores[0], scores[2])
    single = bpr.recommend(["u5"], k=4)
    assert (items[1] == single[0][0]).all()
    empty_items, empty_scores = bpr.recommend([], k=4)
    assert empty_items.shape == (0, 4) and empty_scores.shape == (0, 4)
    n_items = bpr.meta.num_items - 1
    for bad in (0, -1, n_items + 1, True, 2.0, "3"):
        with pytest.raises(DataError, match="k must be"):
            bpr.recommend(["u0"], k=bad)
    items, _ = bpr.recommend(["u0"], k=n_items, exclude_seen=False)
    assert sorted(items[0].tolist()) == sorted(bpr.meta.item_tokens.tolist())


def test_short_lists_are_padded_with_none(bpr, split):
    n_items = bpr.meta.num_items - 1
    items, scores = bpr.recommend(["u0"], k=n_items)  # u0 has seen some items: fewer are left
    seen = int((split.dataset.users == split.dataset.id_maps["user"].encode(["u0"])[0]).sum())
    assert sum(i is None for i in items[0]) == seen and np.isneginf(scores[0][-seen:]).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_recommend_all_equals_recommend(bpr, tmp_path, suffix):
    path = bpr.recommend_all(tmp_path / "out" / f"top{suffix}", k=4, batch_size=7, progress=False)
    assert path == tmp_path / "out" / f"top{suffix}"
    df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(df.columns) == ["user", "item", "rank", "score"]
    users = bpr.meta.user_tokens.tolist()
    assert len(df) == 4 * len(users) and df["user"].drop_duplicates().tolist() == users
    items, scores = bpr.recommend(users, k=4)
    assert df["item"].tolist() == items.ravel().tolist()
    assert df["rank"].tolist() == [1, 2, 3, 4] * len(users)
    assert np.allclose(df["score"].to_numpy(), scores.ravel(), atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_recommend_all_format_argument_and_errors(bpr, tmp_path):
    path = bpr.recommend_all(tmp_path / "top.out", k=2, format="parquet", progress=False)
    assert len(pd.read_parquet(path)) == 2 * (bpr.meta.num_users - 1)
    with pytest.raises(ConfigError, match="cannot tell the export format.*'.txt'"):
        bpr.recommend_all(tmp_path / "top.txt", k=2, progress=False)
    with pytest.raises(ConfigError, match="unknown export format 'json'"):
        bpr.recommend_all(tmp_path / "top.csv", k=2, format="json", progress=False)
    with pytest.raises(DataError, match="batch_size must be a positive integer"):
        bpr.recommend_all(tmp_path / "top.csv", k=2, batch_size=0, progress=False)
    with pytest.raises(DataError, match="k must be"):
        bpr.recommend_all(tmp_path / "top.csv", k=0, progress=False)
    assert not (tmp_path / "top.txt").exists() and not (tmp_path / "top.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_recommend_all_never_leaves_a_partial_file(bpr, tmp_path, monkeypatch, suffix):
    target = tmp_path / f"top{suffix}"
    target.write_text("previous export")
    calls = []
    original = type(bpr)._topk_inner

    def failing(self, users, k, exclude_seen):
        calls.append(len(users))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(self, users, k, exclude_seen)

    monkeypatch.setattr(type(bpr), "_topk_inner", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        bpr.recommend_all(target, k=3, batch_size=5, progress=False)
    assert target.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    with pytest.raises(RuntimeError, match="disk full"):
        calls.clear()
        bpr.recommend_all(tmp_path / f"new{suffix}", k=3, batch_size=5, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def brute_force_neighbours(model, items, k, metric):
    vectors = model.item_vectors().detach()
    inner = model.meta.item_map.encode(items)
    q = vectors[inner]
    if metric == "cosine":
        sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(vectors, dim=1).T
    else:
        sims = q @ vectors.T
    sims[:, 0] = float("-inf")
    sims[torch.arange(len(items)), torch.as_tensor(inner)] = float("-inf")
    scores, ids = sims.topk(k, dim=1)
    return model.meta.item_map.decode(ids.numpy()), scores.numpy()


def test_similar_items_equals_brute_force(bpr):
    items = ["i3", "i7", "i3", "i11"]
    got, scores = bpr.similar_items(items, k=5)
    want, want_scores = brute_force_neighbours(bpr, items, 5, "ip")
    assert got.tolist() == want.tolist() and np.allclose(scores, want_scores, atol=1e-5)
    assert all(item not in row for item, row in zip(items, got.tolist()))
    assert bpr.similar_items([], k=5)[0].shape == (0, 5)


def test_similar_items_cosine_and_ann(split, tmp_path):
    model, _ = recstudio.run(model="BPR", dataset=split, score_func="cosine", run_dir=str(tmp_path), **SMALL)
    got, scores = model.similar_items(["i1", "i2"], k=4)
    want, want_scores = brute_force_neighbours(model, ["i1", "i2"], 4, "cosine")
    assert got.tolist() == want.tolist() and np.allclose(scores, want_scores, atol=1e-5)
    pytest.importorskip("faiss")
    model.configure_ann("flat")
    assert model.config["ann"] == "flat" and model._ann_index is not None  # built now, not on first use
    assert model.similar_items(["i1", "i2"], k=4)[0].tolist() == want.tolist()
    model.configure_ann(None)
    assert model.config["ann"] is None


def test_similar_items_errors(bpr, split):
    n_items = bpr.meta.num_items - 1
    with pytest.raises(DataError, match=r"unknown item ids \['nope'\]"):
        bpr.similar_items(["i1", "nope"], k=3)
    with pytest.raises(DataError, match="k must be between 1 and the number of items - 1"):
        bpr.similar_items(["i1"], k=n_items)
    assert bpr.similar_items(["i1"], k=n_items - 1)[0].shape == (1, n_items - 1)
    ncf = get_model("NCF")(quiet=True).build(DataMeta.from_split(split))
    assert not ncf.supports_similar_items()
    with pytest.raises(ConfigError, match=r"NCF cannot: it is a TowerFree model.*Item-tower and two-tower models"):
        ncf.similar_items(["i1"], k=3)
    with pytest.raises(ConfigError, match="needs item vectors"):
        ncf.configure_ann("flat")
    with pytest.raises(ConfigError, match="unknown ANN index 'annoy'"):
        bpr.configure_ann("annoy")


def test_recommend_before_fit_is_a_clear_error():
    model = get_model("BPR")(embed_dim=8, quiet=True)
    with pytest.raises(DataError, match="has not been fitted or loaded"):
        model.recommend(["u0"], k=3)
    with pytest.raises(DataError, match="has not been fitted or loaded"):
        model.similar_items(["i0"], k=3)
