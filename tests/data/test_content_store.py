"""ContentStore (recstudio/data/content.py), the content models' slot, the cold-item protocol and the
docs/item_content.md snippets, on tiny data."""
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data.content import ContentStore, as_content_store
from recstudio.data.types.content_triplet import ContentTripletDataset
from recstudio.utils.errors import ConfigError, DataError

DOC = Path(__file__).resolve().parents[2] / "docs" / "item_content.md"


def test_bind_lays_rows_out_by_item_id_with_zero_padding_and_missing_items():
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    store = ContentStore.from_array(arr, item_ids=["a", "b", "c", "d"])
    bound = store.bind(np.array(["c", "zz", "a"]))     # inner 1 = c, 2 = an item without content, 3 = a
    assert bound.num_items == 4 and bound.missing == 1
    out = bound.gather(torch.tensor([[0, 1], [2, 3]]))
    assert out.shape == (2, 2, 3) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), [[np.zeros(3), arr[2]], [np.zeros(3), arr[0]]])


def test_numeric_ids_match_string_tokens_and_no_overlap_is_an_error():
    store = ContentStore.from_array(np.ones((2, 2), np.float16), item_ids=[7, 9])
    assert store.bind(np.array(["9"])).gather(torch.tensor([1])).dtype == torch.float16
    with pytest.raises(DataError, match="no item of the dataset has a content row"):
        store.bind(np.array(["x", "y"]))


def test_rows_without_ids_must_follow_inner_ids():
    store = ContentStore.from_array(np.ones((3, 2), np.float32))
    assert torch.equal(store.bind(None, num_items=3).gather(torch.tensor([0, 2])), torch.tensor([[0.0, 0], [1, 1]]))
    with pytest.raises(DataError, match="one row per item id with row 0 padding"):
        store.bind(np.array(["a", "b", "c"]))


@pytest.mark.parametrize("bad,match", [(np.ones((2, 2), np.int64), "uint8, float16 or float32"),
                                       (np.ones((0, 2), np.float32), "at least one row")])
def test_bad_arrays_are_rejected(bad, match):
    with pytest.raises(DataError, match=match):
        ContentStore.from_array(bad)


def test_duplicate_or_miscounted_ids_are_rejected():
    with pytest.raises(DataError, match="repeats item ids"):
        ContentStore.from_array(np.ones((2, 2), np.float32), item_ids=["a", "a"])
    with pytest.raises(DataError, match="2 rows but 3 item ids"):
        ContentStore.from_array(np.ones((2, 2), np.float32), item_ids=["a", "b", "c"])


def test_npy_is_memory_mapped_with_its_ids_sidecar(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (5, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "img.npy", arr)
    (tmp_path / "img.ids.txt").write_text("\n".join(f"i{k}" for k in range(5)) + "\n")
    store = ContentStore.from_npy(tmp_path / "img.npy")
    assert store.is_mapped and store.row_shape == (3, 4, 4) and store.dtype == np.uint8
    bound = store.bind(np.array(["i4", "i0", "i2"]))
    assert bound.resident is None                      # stays mapped: rows are read per gather
    got = bound.gather(torch.tensor([3, 1, 1, 2]))
    assert got.dtype == torch.uint8
    np.testing.assert_array_equal(got.numpy(), arr[[2, 4, 4, 0]])
    with pytest.raises(DataError, match="does not exist"):
        ContentStore.from_npy(tmp_path / "nope.npy")


def test_triplet_content_is_one_gather(monkeypatch):
    arr = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    bound = ContentStore.from_array(arr, item_ids=list("abcdef")).bind(np.array(list("abcdef")))
    bound.resident = None  # force reads through _read, as for a memory map
    calls = []
    original = bound._read
    monkeypatch.setattr(bound, "_read", lambda ids: calls.append(len(ids)) or original(ids))
    pos, neg = torch.tensor([1, 2, 3]), torch.tensor([[4, 5], [6, 1], [2, 2]])
    pc, nc = bound.triplet(pos, neg)
    assert calls == [9]
    assert pc.shape == (3, 4) and nc.shape == (3, 2, 4)
    np.testing.assert_array_equal(nc[1, 0].numpy(), arr[5])
    np.testing.assert_array_equal(pc[0].numpy(), arr[0])


def test_from_dataframe_vector_column_and_numeric_columns():
    frame = pd.DataFrame({"item": ["x", "y"], "vec": [[1.0, 2.0], [3.0, 4.0]], "a": [1, 2], "b": [5, 6]})
    s1 = ContentStore.from_dataframe(frame, "item", "vec").bind(np.array(["y", "x"]))
    assert s1.gather(torch.tensor([1])).tolist() == [[3.0, 4.0]]
    s2 = ContentStore.from_dataframe(frame, "item", ["a", "b"]).bind(np.array(["x"]))
    assert s2.gather(torch.tensor([1])).tolist() == [[1.0, 5.0]]
    with pytest.raises(DataError, match="lacks columns"):
        ContentStore.from_dataframe(frame, "item", "nope")


def _write_images(folder: Path, colours):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in colours.items():
        Image.new("RGB", (10, 6), colour).save(folder / f"{name}.png")


def test_image_folder_decodes_resizes_and_memory_maps(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path / "imgs", {"i1": (255, 0, 0), "i2": (0, 0, 255)})
    store = ContentStore.from_image_folder(tmp_path / "imgs", out=tmp_path / "imgs.npy", size=8)
    assert store.is_mapped and store.row_shape == (3, 8, 8) and store.dtype == np.uint8
    assert (tmp_path / "imgs.ids.txt").read_text().split() == ["i1", "i2"]
    got = store.bind(np.array(["i2", "i1"])).gather(torch.tensor([1, 2]))
    assert got[0, 2].eq(255).all() and got[0, 0].eq(0).all()      # i2 is blue
    assert got[1, 0].eq(255).all() and got[1, 2].eq(0).all()      # i1 is red


def test_image_transform_output_sets_shape_and_dtype(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path / "imgs", {"a": (10, 20, 30), "b": (40, 50, 60)})

    def transform(img):  # torchvision-style: PIL image -> CHW float tensor
        return torch.from_numpy(np.asarray(img.resize((2, 2)), dtype=np.float64).transpose(2, 0, 1) / 255.0)

    store = ContentStore.from_image_folder(tmp_path / "imgs", out=tmp_path / "t.npy", transform=transform)
    assert store.dtype == np.float32 and store.row_shape == (3, 2, 2)
    np.testing.assert_allclose(store.array[1, :, 0, 0], np.array([40, 50, 60]) / 255.0, rtol=1e-6)
    bad = iter([np.zeros((3, 2, 2), np.float32), np.zeros((3, 4, 4), np.float32)])
    with pytest.raises(DataError, match="same shape"):
        ContentStore.from_image_folder(tmp_path / "imgs", out=tmp_path / "bad.npy", transform=lambda img: next(bad))


def test_image_folder_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigError, match="pip install pillow"):
        ContentStore.from_image_folder(tmp_path, out=tmp_path / "x.npy")


def test_gpu_placement_falls_back_cleanly_without_cuda():
    bound = ContentStore.from_array(np.ones((3, 2), np.float32)).bind(None, num_items=3)
    assert bound.to("cpu") is bound and bound.on_device
    if torch.cuda.is_available():
        pytest.skip("CUDA present: see test_gpu_resident_and_pinned_paths_agree")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        bound.to("cuda")
    assert bound.device.type == "cpu" and bound.gather(torch.tensor([2])).tolist() == [[1.0, 1.0]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_resident_and_pinned_paths_agree(tmp_path):
    arr = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float16)
    np.save(tmp_path / "e.npy", arr)
    ids = torch.randint(0, 50, (64, 3))
    resident = ContentStore.from_npy(tmp_path / "e.npy").bind(None, num_items=50).to("cuda")
    staged = ContentStore.from_npy(tmp_path / "e.npy").bind(None, num_items=50).to("cuda", max_bytes=0)
    assert resident.on_device and not staged.on_device
    for _ in range(3):  # the two pinned buffers are reused
        a, b = resident.gather(ids.cuda()), staged.gather(ids)
        assert a.device.type == b.device.type == "cuda"
        torch.testing.assert_close(a, b)


def test_state_embeds_small_content_and_references_large_memory_maps(tmp_path):
    arr = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    np.save(tmp_path / "c.npy", arr)
    bound = ContentStore.from_npy(tmp_path / "c.npy").bind(None, num_items=4)
    ids = torch.tensor([0, 3, 1])
    inline = ContentStore.from_state(bound.to_state())
    assert not inline.is_mapped and torch.equal(inline.gather(ids), bound.gather(ids))
    state = bound.to_state(inline_bytes=0)
    assert "content" not in state and state["path"] == str((tmp_path / "c.npy").resolve())
    again = ContentStore.from_state(state)
    assert again.is_mapped and torch.equal(again.gather(ids), bound.gather(ids))
    (tmp_path / "c.npy").unlink()
    with pytest.raises(DataError, match="not there"):
        ContentStore.from_state(state)


def test_as_content_store_takes_paths_arrays_and_stores(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((2, 2), np.float32))
    assert as_content_store(tmp_path / "v.npy").is_mapped
    store = ContentStore.from_array(np.ones((2, 2), np.float32))
    assert as_content_store(store) is store
    with pytest.raises(DataError, match="must be a ContentStore"):
        as_content_store(3)


# ---- models ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny split and content for its items (4-d float32, from their ids)."""
    from tests.conftest import random_interaction_split
    split = random_interaction_split(0, 20, 15, (4, 9))
    tokens = split.dataset.id_maps["item"].tokens
    vectors = np.random.default_rng(5).normal(size=(len(tokens), 4)).astype(np.float32)
    return split, ContentStore.from_array(vectors, item_ids=tokens), vectors


def test_content_triplet_dataset_carries_content_of_positives_and_negatives(world):
    split, store, vectors = world
    bound = store.bind(split.dataset.id_maps["item"].tokens)
    ds = ContentTripletDataset(split, content=bound, num_neg=2, join_features=False)
    batch = next(iter(ds.loader(16, shuffle=False)))
    assert batch["item_content"].shape == (16, 4) and batch["neg_item_content"].shape == (16, 2, 4)
    np.testing.assert_array_equal(batch["neg_item_content"][3, 1].numpy(), vectors[batch["neg_item"][3, 1] - 1])
    np.testing.assert_array_equal(batch["item_content"].numpy(), vectors[batch[ds.iid] - 1])


def test_vbpr_score_is_the_papers_formula(world, tmp_path):
    split, store, vectors = world
    model = recstudio.get_model("VBPR")(content=store, embed_dim=3, content_embed_dim=2, epochs=1, quiet=True)
    model.fit(split, run_dir=tmp_path / "run")
    model.eval()
    u, i = 2, 5
    with torch.no_grad():
        gu, tu = model.query_encoder.embedding(torch.tensor([u]))[0].split([3, 2])
        f = torch.as_tensor(vectors[i - 1])
        by_hand = (model.item_bias(torch.tensor([i]))[0, 0] + gu @ model.item_emb(torch.tensor([i]))[0]
                   + tu @ (model.proj.weight @ f) + model.content_bias.weight[0] @ f)
        batch = {model.meta.uid_field: torch.tensor([u])}
        got = model.score_candidates(batch, model.prepare_scoring(batch), torch.tensor([i]))[0]
        full = model.score_users(batch)[0, i]
    torch.testing.assert_close(got, by_hand)
    torch.testing.assert_close(full, by_hand)


def test_content_models_rank_items_without_interactions(world, tmp_path):
    """A content model's held-out (cold) items get content scores; the protocol ranks only them."""
    from recstudio.eval.cold_items import cold_item_split
    split, store, _ = world
    cold = cold_item_split(split.dataset, cold_ratio=0.3, seed=0)
    ds = split.dataset
    for phase in ("train", "valid", "test"):
        assert not np.isin(ds.items[cold.split.rows(phase)], cold.cold_items).any()
    assert np.isin(ds.items[cold.cold_rows], cold.cold_items).all()
    model = recstudio.get_model("ContentTwoTower")(content=store, embed_dim=4, hidden=[8], epochs=2, quiet=True)
    model.fit(cold.split, run_dir=tmp_path / "run")
    res = cold.evaluate(model, metrics=["recall", "ndcg"], cutoffs=[3])
    assert set(res) == {"recall@3", "ndcg@3"} and 0.0 <= res["recall@3"] <= 1.0
    with torch.no_grad():  # cold items differ by content only: their vectors differ
        v = model.item_vectors()[torch.as_tensor(cold.cold_items)]
    assert torch.isfinite(v).all() and v.std(0).sum() > 0


def test_a_float_seq_item_field_is_content_too(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "vec"
    root.mkdir()
    inter = ["user_id:token\titem_id:token"] + [f"u{u}\ti{i}" for u in range(12)
                                                 for i in rng.choice(10, 5, replace=False)]
    (root / "vec.inter").write_text("\n".join(inter) + "\n")
    items = ["item_id:token\temb:float_seq"] + [f"i{i}\t{' '.join(str(x) for x in rng.normal(size=3).round(3))}"
                                                for i in range(10)]
    (root / "vec.item").write_text("\n".join(items) + "\n")
    from recstudio.data import from_atomic
    split = from_atomic(root).split()
    model = recstudio.get_model("VBPR")(embed_dim=2, content_embed_dim=2, epochs=1, quiet=True)
    model.fit(split, run_dir=tmp_path / "run")
    assert model.content_shape == (3,)
    again = recstudio.load(model.save(tmp_path / "m.pt"))
    users = list(split.dataset.decode_users([1, 2]))
    np.testing.assert_allclose(model.recommend(users, k=3)[1], again.recommend(users, k=3)[1], rtol=1e-5)


def test_a_model_without_content_says_where_to_put_it(world, tmp_path):
    split, _, _ = world
    with pytest.raises(ConfigError, match="needs item content"):
        recstudio.get_model("VBPR")(epochs=1, quiet=True).fit(split, run_dir=tmp_path / "run")


# ---- the documentation -------------------------------------------------------------------------
def doc_snippets():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_docs_snippets_train_vbpr_on_embeddings_and_on_images(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"m{i}", 4.0, 100 * u + k) for u in range(15)
            for k, i in enumerate(rng.choice(12, 6, replace=False))]
    pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).to_csv(tmp_path / "ratings.csv", index=False)
    np.save(tmp_path / "item_embeddings.npy", rng.normal(size=(12, 8)).astype(np.float32))
    (tmp_path / "item_ids.txt").write_text("\n".join(f"m{i}" for i in range(12)) + "\n")
    _write_images(tmp_path / "images", {f"m{i}": tuple(int(c) for c in rng.integers(0, 255, 3)) for i in range(12)})
    monkeypatch.chdir(tmp_path)
    embeddings, images = doc_snippets()
    fast = {"epochs=20": "epochs=2, quiet=True", "size=224": "size=16"}
    for old, new in fast.items():
        embeddings, images = embeddings.replace(old, new), images.replace(old, new)
    scope = {}
    exec(compile(embeddings, str(DOC), "exec"), scope)
    assert scope["items"].shape == (2, 5) and (tmp_path / "vbpr.pt").is_file()
    assert recstudio.load(tmp_path / "vbpr.pt").recommend(list(scope["ratings"]["user"].unique()[:2]), k=5)[0].shape \
        == (2, 5)
    exec(compile(images, str(DOC), "exec"), scope)
    assert scope["store"].row_shape == (3, 16, 16) and all(np.isfinite(v) for v in scope["metrics"].values())


def test_acf_user_vector_is_the_attention_over_the_training_history(world, tmp_path):
    split, store, vectors = world
    model = recstudio.get_model("ACF")(content=store, embed_dim=4, attention_dim=3, max_history=50, epochs=1,
                                       quiet=True)
    model.fit(split, run_dir=tmp_path / "run")
    model.eval()
    u = 3
    train = split.matrix("train").tocsr()
    hist = torch.as_tensor(np.sort(train[u].indices)).long()
    assert torch.equal(model.history[u][model.history[u] > 0].sort().values, hist)
    att = model.attention
    with torch.no_grad():
        uv = att.user(torch.tensor([u]))[0]
        x = torch.as_tensor(vectors[hist.numpy() - 1])            # one component per item: xbar = x
        a = att.item_w(torch.relu(att.item_u(uv) + att.item_v(model.item_emb(hist)) + att.item_p(model.aux_emb(hist))
                                  + att.item_x(x))).squeeze(-1)
        by_hand = uv + (torch.softmax(a, 0)[:, None] * model.aux_emb(hist)).sum(0)
        got = model.encode_query({model.meta.uid_field: torch.tensor([u])})[0]
    torch.testing.assert_close(got, by_hand)
    model.train()  # while training, the positive is not part of its own user's history
    with torch.no_grad():
        batch = {model.meta.uid_field: torch.tensor([u]), model.meta.iid_field: hist[:1]}
        without = model.encode_query(batch)[0]
        keep = hist[1:]
        a2 = att.item_w(torch.relu(att.item_u(uv) + att.item_v(model.item_emb(keep)) + att.item_p(model.aux_emb(keep))
                                   + att.item_x(torch.as_tensor(vectors[keep.numpy() - 1])))).squeeze(-1)
        expected = uv + (torch.softmax(a2, 0)[:, None] * model.aux_emb(keep)).sum(0)
    torch.testing.assert_close(without, expected)


def test_recstudio_run_takes_the_content_too(world, tmp_path):
    split, store, _ = world
    model, metrics = recstudio.run(model="VBPR", dataset=split, content=store, embed_dim=2, content_embed_dim=2,
                                   epochs=1, quiet=True, run_dir=str(tmp_path / "runs"))
    assert model.content_store.num_items == split.dataset.num_items and metrics
