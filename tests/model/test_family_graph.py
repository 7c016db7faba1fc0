"""The graph family (recstudio.model.family.graph) and its models LightGCN and NGCF, on tiny synthetic data."""
import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError

TINY = {"embed_dim": 8, "batch_size": 32, "eval_batch_size": 4, "quiet": True, "epochs": 2,
        "early_stop_patience": 2}


@pytest.fixture
def split(make_split):
    return make_split(3, 16, 20, (5, 11))


def built(name, split, **kw):
    model = get_model(name)(**{**TINY, **kw})
    model.build(model.context_from(split))
    return model


def dense_normalised(split, self_loops=False):
    """D^-1/2 A D^-1/2 of the bipartite train graph, by hand in numpy."""
    ds = split.dataset
    r = (split.matrix("train").toarray() > 0).astype(np.float64)
    nu, ni = ds.num_users, ds.num_items
    a = np.zeros((nu + ni, nu + ni))
    a[:nu, nu:] = r
    a[nu:, :nu] = r.T
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    lap = inv[:, None] * a * inv[None, :]
    return lap + np.eye(nu + ni) if self_loops else lap


def train_batch(model, split):
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    return next(iter(ds.loader(64, shuffle=False)))


def one_step(model, split, lr=0.05):
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    opt.zero_grad()
    model.training_loss(train_batch(model, split)).backward()
    opt.step()
    model.eval()


@pytest.mark.parametrize("self_loops", [False, True])
def test_adjacency_is_normalised_train_graph_only(split, self_loops):
    model = built("LightGCN", split, self_loops=self_loops)
    adj = model.norm_adj
    assert adj.layout == torch.sparse_csr
    assert "norm_adj" not in model.state_dict()  # non-persistent: rebuilt from the context on load
    np.testing.assert_allclose(adj.to_dense().numpy(), dense_normalised(split, self_loops), atol=1e-6)
    ds, nu = split.dataset, split.dataset.num_users
    dense = adj.to_dense()
    for phase in ("valid", "test"):
        held = split.matrix(phase).tocoo()
        assert held.nnz > 0
        assert (dense[held.row, nu + held.col] == 0).all() and (dense[nu + held.col, held.row] == 0).all()
    train = split.matrix("train").tocoo()
    assert (dense[train.row, nu + train.col] > 0).all()
    assert int((dense[:nu, nu:] != 0).sum()) == train.nnz  # exactly the train edges
    assert ds.num_users + ds.num_items == adj.shape[0]


def test_one_lightgcn_layer_equals_hand_propagation(split):
    model = built("LightGCN", split, n_layers=1).eval()
    users, items = model.propagated()
    eu = model.user_table.detach().numpy().astype(np.float64)
    ei = model.item_table.detach().numpy().astype(np.float64)
    r = split.matrix("train").toarray() > 0
    du, di = r.sum(1), r.sum(0)
    want_u = np.zeros_like(eu)
    for u in range(1, r.shape[0]):
        msg = sum(ei[i] / np.sqrt(du[u] * di[i]) for i in np.flatnonzero(r[u]))
        want_u[u] = (eu[u] + msg) / 2
    want_i = np.zeros_like(ei)
    for i in range(1, r.shape[1]):
        msg = sum(eu[u] / np.sqrt(du[u] * di[i]) for u in np.flatnonzero(r[:, i]))
        want_i[i] = (ei[i] + msg) / 2
    np.testing.assert_allclose(users.numpy(), want_u, atol=1e-5)
    np.testing.assert_allclose(items.numpy(), want_i, atol=1e-5)
    assert not users.requires_grad  # evaluation vectors are constants


def test_one_ngcf_layer_equals_its_formula(split):
    model = built("NGCF", split, hidden_dims=[6]).eval()
    users, items = model.propagated()
    lap = torch.tensor(dense_normalised(split), dtype=torch.float32)
    e = torch.cat([model.user_table, model.item_table]).detach()
    layer = model.gnn_layers[0]
    with torch.no_grad():
        h = layer.w1((lap + torch.eye(len(lap))) @ e) + layer.w2((lap @ e) * e)
        h = torch.nn.functional.normalize(torch.nn.functional.leaky_relu(h, 0.2), dim=1)
    want = torch.cat([e, h], 1)
    want[0] = 0
    want[model.meta.num_users] = 0
    nu = model.meta.num_users
    torch.testing.assert_close(users, want[:nu], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(items, want[nu:], atol=1e-5, rtol=1e-5)
    assert items.shape[1] == model.output_dim == 8 + 6


def test_ngcf_node_dropout_drops_undirected_edges_not_self_loops(split):
    model = built("NGCF", split, node_dropout=0.5)
    torch.manual_seed(0)
    dropped = model._training_adjacency().to_dense()
    full = model.norm_adj.to_dense()
    eye = torch.eye(len(full))
    assert torch.equal(torch.diagonal(dropped), torch.diagonal(full))   # self-loops kept
    assert torch.equal(dropped, dropped.t())                            # an edge goes in both directions
    off, full_off = dropped - eye * dropped, full - eye * full
    kept = off != 0
    assert 0.3 < kept.sum() / (full_off != 0).sum() < 0.7
    torch.testing.assert_close(off[kept], 2 * full_off[kept])          # kept edges scaled by 1 / (1 - p)
    model.eval()  # evaluation propagates over the full graph: deterministic
    torch.testing.assert_close(model.propagate(), model.propagate())


def test_symmetric_spmm_gradient_matches_dense():
    from recstudio.model.module.graph import spmm, to_torch_csr
    import scipy.sparse as sp
    m = sp.random(7, 7, density=0.4, random_state=0, dtype=np.float32)
    m = m + m.T
    adj = to_torch_csr(m)
    x = torch.randn(7, 3, requires_grad=True)
    w = torch.randn(7, 3)
    (spmm(adj, x) * w).sum().backward()
    dense = torch.tensor(m.toarray())
    torch.testing.assert_close(x.grad, dense.t() @ w)


def test_eval_vectors_propagated_once_and_invalidated_by_a_training_step(split):
    model = built("LightGCN", split, ann="flat").eval()
    start = model.propagation_count
    metrics = model.evaluate(split, "test")  # several batches of 4 users
    assert len(split.eval_users("test")) > 3 * TINY["eval_batch_size"] and metrics
    assert model.propagation_count == start + 1
    users = list(split.dataset.decode_users(np.arange(1, 6)))
    model.recommend(users, k=3)
    model.similar_items(list(split.dataset.decode_items(np.arange(1, 3))), k=2)
    model.ann_index()
    before = model.item_vectors().clone()
    assert model.propagation_count == start + 1 and model._graph_cache is not None
    one_step(model, split)  # a plain optimizer step outside Lightning: the version key sees it
    stepped = model.propagation_count  # the training batch propagated once (with gradient)
    after = model.item_vectors()
    assert model.propagation_count == stepped + 1
    assert not torch.allclose(before, after)
    model.evaluate(split, "valid")
    assert model.propagation_count == stepped + 1
    # Lightning's hooks drop the cache too
    model.on_train_batch_end(None, None, 0)
    assert model._graph_cache is None and model._ann_index is None
    model.item_vectors()
    model.load_state_dict(model.state_dict())
    assert model._graph_cache is None


def test_deepcopy_clones_the_sparse_adjacency(split):
    import copy
    model = built("NGCF", split).eval()
    vectors = model.item_vectors()
    twin = copy.deepcopy(model)
    assert twin.norm_adj.layout == torch.sparse_csr and twin.norm_adj is not model.norm_adj
    assert twin._graph_cache is None and model._graph_cache is not None
    torch.testing.assert_close(twin.item_vectors(), vectors)
    one_step(twin, split)
    torch.testing.assert_close(model.item_vectors(), vectors)   # the original is untouched


def test_training_propagates_per_batch_with_gradient_and_adds_the_ego_l2_term(split):
    model = built("LightGCN", split, reg_weight=0.0)
    model.train()
    batch = train_batch(model, split)
    count = model.propagation_count
    plain = model.training_loss(batch)
    assert model.propagation_count == count + 1  # users, positives and negatives share one propagation
    plain.backward()
    assert model.item_table.grad is not None and model.user_table.grad.abs().sum() > 0
    model.config["reg_weight"] = 0.5
    with_reg = model.training_loss(batch)
    uid, iid = model.meta.uid_field, model.meta.iid_field
    sq = (model.user_table[batch[uid]].pow(2).sum() + model.item_table[batch[iid]].pow(2).sum()
          + model.item_table[batch["neg_item"]].pow(2).sum())
    torch.testing.assert_close(with_reg - plain, 0.5 * 0.5 * sq / len(batch[uid]))


@pytest.mark.parametrize("name", ["LightGCN", "NGCF"])
def test_save_load_gives_identical_scores(name, split, tmp_path):
    model = get_model(name)(**TINY)
    model.fit(split, run_dir=tmp_path / "run")
    again = recstudio.load(model.save(tmp_path / "m.pt"))
    assert again.norm_adj.layout == torch.sparse_csr
    torch.testing.assert_close(again.norm_adj.to_dense(), model.norm_adj.to_dense())
    users = list(split.dataset.decode_users(np.arange(1, 8)))
    a_items, a_scores = model.recommend(users, k=5)
    b_items, b_scores = again.recommend(users, k=5)
    assert (a_items == b_items).all()
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["LightGCN", "NGCF"])
def test_two_disjoint_communities_get_their_own_items(name, tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for u in range(40):
        community = u % 2
        pool = np.arange(16) * 2 + community          # even items for even users, odd for odd
        for t, i in enumerate(rng.choice(pool, size=8, replace=False)):
            rows.append((f"u{u}", f"i{i}", 1.0, float(t)))
    frame = pd.DataFrame(rows, columns=["u", "i", "r", "t"])
    split = from_dataframe(frame, "u", "i", "r", "t").split()
    model = get_model(name)(embed_dim=16, epochs=40, batch_size=32, learning_rate=0.01, quiet=True,
                            early_stop_patience=40, seed=3)
    model.fit(split, run_dir=tmp_path / "run")
    users = [f"u{u}" for u in range(40)]
    items, _ = model.recommend(users, k=3)
    for u, row in zip(range(40), items):
        assert all(int(i[1:]) % 2 == u % 2 for i in row), (u, row)


def test_bad_settings_are_config_errors(split):
    with pytest.raises(ConfigError, match="sparse_adam"):
        built("LightGCN", split, optimizer="sparse_adam")
    with pytest.raises(ConfigError, match="reg_weight"):
        built("LightGCN", split, reg_weight=-1.0)
    with pytest.raises(ConfigError, match="node_dropout"):
        built("NGCF", split, node_dropout=1.0)
    with pytest.raises(ConfigError, match="hidden_dims"):
        built("NGCF", split, hidden_dims=[])
