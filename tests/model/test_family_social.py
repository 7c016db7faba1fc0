"""The social family: normalised adjacency, SocialMF's trust term, DiffNet's diffusion, training on an
atomic folder with a .net, save -> load without the dataset, a known-answer cold user, and the
Ciao / Epinions converter."""
from pathlib import Path

import numpy as np
import pytest
import torch

import recstudio
from recstudio.data import from_atomic
from recstudio.data.converters import get_converter
from recstudio.model.family.social import row_normalized
from recstudio.utils.errors import ConfigError

CIAO_ZIP = Path("/work/shared/datasets/ciao-epinions/ciao/ciao.zip")
FAST = {"embed_dim": 8, "batch_size": 64, "eval_batch_size": 16, "quiet": True, "epochs": 2}


def write_atomic(folder: Path, inter, net, name="tiny"):
    """``inter``: (user, item) pairs; ``net``: (source, target) pairs; tokens as given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\n"
                                          + "".join(f"{u}\t{i}\n" for u, i in inter))
    (folder / f"{name}.net").write_text("source_id:token\ttarget_id:token\n"
                                        + "".join(f"{a}\t{b}\n" for a, b in net))
    return from_atomic(folder, rating_field=None, time_field=None)


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    inter = [(f"u{u}", f"i{i}") for u in range(30)
             for i in rng.choice(40, size=int(rng.integers(5, 12)), replace=False)]
    net = sorted({(f"u{a}", f"u{b}") for a, b in rng.integers(0, 24, size=(60, 2)) if a != b})  # u24..u29: no friends
    return write_atomic(tmp_path / "tiny", inter, net)


def built(name, ds, **cfg):
    model = recstudio.get_model(name)(**{**FAST, **cfg})
    return model.build(model.context_from(ds.split())), ds


def dense_network(ds):
    n = ds.num_users
    a = np.zeros((n, n))
    net = ds.extra["net"]
    src, dst = (net[f] for f in net.types)
    a[src, dst] = 1.0
    np.fill_diagonal(a, 0)
    return a


def dense_row_normalized(a):
    s = a.sum(1, keepdims=True)
    return np.divide(a, s, out=np.zeros_like(a), where=s > 0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_social_adjacency_equals_dense_row_normalisation(tiny, symmetric):
    model, ds = built("SocialMF", tiny, social_symmetric=symmetric)
    a = dense_network(ds)
    if symmetric:
        a = np.maximum(a, a.T)
    expected = dense_row_normalized(a)
    got = model.social_adj.to_dense().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert "social_adj" not in model.state_dict()  # rebuilt from the context, not saved twice
    # users without friends: empty rows, counted; u24..u29 are in no link at all -> at least 6
    degree = (a > 0).sum(1)
    assert (model.social_degree.numpy() == degree).all()
    assert model.users_without_friends == int((degree[1:] == 0).sum()) >= 6
    assert np.allclose(got[degree > 0].sum(1), 1.0) and not got[degree == 0].any()


def test_row_normalized_keeps_weights_and_empty_rows():
    import scipy.sparse as sp
    m = row_normalized(sp.csr_matrix(np.array([[0, 1, 3.0], [0, 0, 0], [2, 0, 0]])))
    np.testing.assert_allclose(m.toarray(), [[0, .25, .75], [0, 0, 0], [1, 0, 0]])


def test_social_regulariser_equals_hand_computation(tiny):
    model, ds = built("SocialMF", tiny, social_weight=2.0)
    u = model.query_encoder.embedding.weight.detach().double().numpy()
    t = dense_row_normalized(dense_network(ds))
    users = torch.tensor([1, 3, 3, 5, 27, 28])  # a repeat and users without friends
    expected = sum(((u[k] - t[k] @ u) ** 2).sum() for k in {1, 3, 5, 27, 28} if t[k].any())
    got = model.social_regularizer(model.query_encoder.embedding.weight, users)
    assert abs(float(got.detach()) - expected) < 1e-5 * max(1.0, expected)
    # the loss term SocialMF adds: lambda_T * that / batch size
    batch = {ds.uid_field: users}
    assert abs(float(model.social_loss(batch).detach()) - 2.0 * expected / 6) < 1e-5 * max(1.0, expected)
    # no friend in the batch: exactly zero, still differentiable
    zero = model.social_regularizer(model.query_encoder.embedding.weight, torch.tensor([28, 29]))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_diffnet_one_layer_equals_hand_computation(tmp_path):
    # users a, b, c; a -> b, a -> c, b -> a; c has no out-link; symmetrised: a-b, a-c
    ds = write_atomic(tmp_path / "toy", [("a", "x"), ("a", "y"), ("b", "y"), ("c", "z"), ("c", "x")],
                      [("a", "b"), ("a", "c"), ("b", "a")])
    model, _ = built("DiffNet", ds, n_layers=1, social_symmetric=True)
    h = model.query_encoder.embedding.weight.detach().double().numpy()
    v = model.item_encoder.weight.detach().double().numpy()
    uid = {t: int(ds.encode_users([t])[0]) for t in "abc"}
    iid = {t: int(ds.encode_items([t])[0]) for t in "xyz"}
    # the split may hold out an item of a user: the item mean is over the TRAIN matrix only
    train = model.meta.train_matrix().toarray()
    social = {"a": (h[uid["b"]] + h[uid["c"]]) / 2, "b": h[uid["a"]], "c": h[uid["a"]]}
    got = model.all_user_vectors().detach().double().numpy()
    for name in "abc":
        row = train[uid[name]]
        items = v[row > 0].mean(0) if row.any() else np.zeros(v.shape[1])
        np.testing.assert_allclose(got[uid[name]], h[uid[name]] + social[name] + items, rtol=1e-5, atol=1e-6)
    assert set(iid) == {"x", "y", "z"}
    # the paper's layer: sigmoid(W [h ; T h])
    model, _ = built("DiffNet", ds, n_layers=1, social_symmetric=True, layer="diffusion")
    h = model.query_encoder.embedding.weight.detach().double().numpy()
    v = model.item_encoder.weight.detach().double().numpy()
    lin = model.diffusion_layers[0]
    w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
    social = {"a": (h[uid["b"]] + h[uid["c"]]) / 2, "b": h[uid["a"]], "c": h[uid["a"]]}
    got = model.all_user_vectors().detach().double().numpy()
    for name in "abc":
        row = train[uid[name]]
        items = v[row > 0].mean(0) if row.any() else np.zeros(v.shape[1])
        x = np.concatenate([h[uid[name]], social[name]])
        expected = 1 / (1 + np.exp(-(w @ x + b))) + items
        np.testing.assert_allclose(got[uid[name]], expected, rtol=1e-5, atol=1e-6)


def test_bad_options_are_refused(tiny):
    with pytest.raises(ConfigError, match="layer"):
        built("DiffNet", tiny, layer="gcn")
    with pytest.raises(ConfigError, match="social_weight"):
        built("SocialMF", tiny, social_weight=-1.0)


def test_a_dataset_without_net_is_refused(tmp_path):
    folder = tmp_path / "nonet"
    folder.mkdir()
    rows = "".join(f"u{k % 5}\ti{k}\n" for k in range(40))
    (folder / "nonet.inter").write_text("user_id:token\titem_id:token\n" + rows)
    ds = from_atomic(folder, rating_field=None, time_field=None)
    model = recstudio.get_model("SocialMF")(**FAST)
    from recstudio.utils.errors import DataError
    with pytest.raises(DataError, match=r"no \.net file"):
        model.context_from(ds.split())


@pytest.mark.parametrize("name", ["SocialMF", "DiffNet"])
def test_trains_and_save_load_gives_identical_scores_without_the_dataset(name, tiny, tmp_path):
    torch.manual_seed(0)
    model = recstudio.get_model(name)(**FAST)
    metrics = model.fit(tiny.split(), run_dir=tmp_path / "run")
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    # every parameter gets a gradient from one training batch
    model.train()
    split = tiny.split()
    batch = next(iter(model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs()).loader(256)))
    model.zero_grad()
    model.training_loss(batch).backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.eval()
    path = model.save(tmp_path / "m.pt")
    import shutil
    shutil.rmtree(tmp_path / "tiny")  # the loaded model rebuilds its network from the checkpoint alone
    again = recstudio.load(path)
    assert torch.equal(again.social_adj.to_dense(), model.social_adj.to_dense())
    users = list(model.meta.user_tokens[:8])
    a_items, a_scores = model.recommend(users, k=5)
    b_items, b_scores = again.recommend(users, k=5)
    assert (a_items == b_items).all()
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


def test_diffnet_caches_user_vectors_until_a_training_step(tiny, tmp_path):
    model = recstudio.get_model("DiffNet")(**FAST)
    model.fit(tiny.split(), run_dir=tmp_path / "run")
    model.eval()
    with torch.no_grad():
        first = model.user_vectors()
        assert model.user_vectors() is first  # computed once per evaluation
    model.train()
    split = tiny.split()
    batch = next(iter(model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs()).loader(64)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    model.training_loss(batch).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        second = model.user_vectors()
    assert second is not first and not torch.allclose(first, second)


def cold_user_data(tmp_path):
    """60 users on 60 items in 6 taste groups of 10 items; friends are same-group users. The cold user
    'cold' rated one item of group 0 (kept in train); its 8 friends rated most of group 0's items X."""
    rng = np.random.default_rng(1)
    inter, net = [], []
    groups = {g: [f"i{g * 10 + k}" for k in range(10)] for g in range(6)}
    for u in range(60):
        g = u % 6
        own = rng.choice(groups[g], size=7, replace=False).tolist()
        other = rng.choice(groups[(g + 1 + u % 5) % 6], size=2, replace=False).tolist()
        inter += [(f"u{u}", i) for i in own + other]
        net += [(f"u{u}", f"u{v}") for v in rng.choice([w for w in range(g, 60, 6) if w != u], size=4, replace=False)]
    friends = [f"u{v}" for v in range(0, 60, 6)][:8]
    inter += [("cold", "i0"), ("cold", "i0")]  # one distinct item; the duplicate is merged by dedup
    net += [("cold", f) for f in friends] + [(f, "cold") for f in friends]
    return write_atomic(tmp_path / "cold", inter, net), groups[0]


def test_a_cold_user_gets_the_items_its_friends_like(tmp_path):
    ds, group0 = cold_user_data(tmp_path)
    split = ds.split()
    ranks = {}
    for name, extra in (("BPR", {}), ("SocialMF", {"social_weight": 5.0}), ("DiffNet", {})):
        torch.manual_seed(0)
        cfg = {**FAST, "epochs": 30, "embed_dim": 16, "learning_rate": 0.02, "batch_size": 256,
               "early_stop_patience": 100, "val_every": 30, **extra}
        model = recstudio.get_model(name)(**cfg)
        model.fit(split, run_dir=tmp_path / name)
        items, _ = model.recommend(["cold"], k=10)
        ranks[name] = len(set(items[0]) & set(group0))  # group-0 items among the cold user's top 10
    assert ranks["SocialMF"] >= 7 and ranks["DiffNet"] >= 7, ranks
    assert ranks["SocialMF"] > ranks["BPR"] and ranks["DiffNet"] > ranks["BPR"], ranks


# ---- the Ciao / Epinions converter --------------------------------------------------------------------
def test_ciao_converter_on_a_tiny_mat(tmp_path):
    from scipy.io import savemat
    folder = tmp_path / "raw" / "ciao"
    folder.mkdir(parents=True)
    ratings = np.array([[1, 10, 3, 4, 5], [1, 11, 2, 5, 1], [2, 10, 3, 1, 2]], dtype=np.int32)
    savemat(folder / "rating.mat", {"rating": ratings})
    savemat(folder / "trustnetwork.mat", {"trustnetwork": np.array([[1, 2], [2, 3]], dtype=np.uint16)})
    tables = get_converter("ciao_epinions")(tmp_path / "raw", subdir="ciao")
    inter = tables["inter"].frame
    assert inter["user_id"].tolist() == ["1", "1", "2"] and inter["item_id"].tolist() == ["10", "11", "10"]
    assert inter["rating"].tolist() == [4.0, 5.0, 1.0] and inter["helpfulness"].tolist() == [5.0, 1.0, 2.0]
    assert tables["item"].frame.set_index("item_id")["category_id"].to_dict() == {"10": "3", "11": "2"}
    assert tables["net"].frame.values.tolist() == [["1", "2"], ["2", "3"]]
    # and straight from a zip (not extracted)
    import zipfile
    z = tmp_path / "zipped"
    z.mkdir()
    with zipfile.ZipFile(z / "ciao.zip", "w") as f:
        f.write(folder / "rating.mat", "ciao/rating.mat")
        f.write(folder / "trustnetwork.mat", "ciao/trustnetwork.mat")
    again = get_converter("ciao_epinions")(z, subdir="ciao")
    assert again["inter"].frame.equals(inter)


def test_ciao_converter_refuses_a_wrong_matrix(tmp_path):
    from scipy.io import savemat
    from recstudio.utils.errors import DataError
    savemat(tmp_path / "rating.mat", {"rating": np.ones((3, 2))})
    savemat(tmp_path / "trustnetwork.mat", {"trustnetwork": np.ones((3, 2))})
    with pytest.raises(DataError, match="4 columns"):
        get_converter("ciao_epinions")(tmp_path)


@pytest.mark.skipif(not CIAO_ZIP.is_file(), reason="needs the shared Ciao archive")
def test_ciao_from_the_shared_zip(tmp_path):
    import json
    from recstudio.data.registry import prepare_dataset
    raw = tmp_path / "ciao" / "raw"
    raw.mkdir(parents=True)
    (raw / "ciao.zip").symlink_to(CIAO_ZIP)
    folder = prepare_dataset("ciao", data_dir=tmp_path, progress=False)  # verifies the registered sha256
    rows = json.loads((folder / "manifest.json").read_text())["rows"]
    assert rows["inter"] == 284_086 and rows["net"] == 111_781  # before any filtering
    from recstudio.data import load_dataset
    ds = load_dataset("ciao", data_dir=str(tmp_path))  # 5-core by default
    assert ds.num_interactions > 0 and "net" in ds.extra
    assert 0 <= ds.inter[ds.rating_field].min() and ds.inter[ds.rating_field].max() <= 5


EPINIONS_ZIP = Path("/work/shared/datasets/ciao-epinions/epinions/epinions.zip")


@pytest.mark.skipif(not EPINIONS_ZIP.is_file(), reason="needs the shared Epinions archive")
def test_epinions_converter_reads_the_zip_directly(tmp_path):
    (tmp_path / "epinions.zip").symlink_to(EPINIONS_ZIP)
    tables = get_converter("ciao_epinions")(tmp_path, subdir="epinions")
    assert len(tables["inter"]) == 922_267 and len(tables["net"]) == 355_754
    assert "helpfulness" not in tables["inter"].types  # Epinions' rating.mat has four columns
    assert tables["inter"].frame["user_id"].nunique() == 22_164
