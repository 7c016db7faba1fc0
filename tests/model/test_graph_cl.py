"""The contrastive terms of SimGCL, XSimGCL and LightGCL against hand computations of the authors' formulas
(SELFRec's ``InfoNCE`` for SimGCL / XSimGCL, HKUDS/LightGCL's ``loss_s``), and DGCF's routing and
independence loss against a dense re-computation of the paper's equations."""
import numpy as np
import pytest
import torch

from recstudio.model.registry import get_model

TINY = {"embed_dim": 8, "batch_size": 32, "eval_batch_size": 4, "quiet": True, "epochs": 2,
        "early_stop_patience": 2}


@pytest.fixture
def split(make_split):
    return make_split(3, 16, 20, (5, 11))


def built(name, split, **kw):
    model = get_model(name)(**{**TINY, **kw})
    model.build(model.context_from(split))
    return model


def train_batch(model, split):
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    return next(iter(ds.loader(64, shuffle=False)))


def np_infonce(a, b, tau):
    """SELFRec's InfoNCE: cosine, in-batch negatives, -mean_b log softmax_b'(a_b . b_b' / tau)[b]."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = a @ b.T / tau
    m = s.max(1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(1, keepdims=True))).ravel()
    return float((lse - np.diag(s)).mean())


def test_simgcl_contrast_is_mean_infonce_over_distinct_users_and_items(split):
    model = built("SimGCL", split, cl_tau=0.2)
    nu, ni = model.meta.num_users, model.meta.num_items
    g = torch.Generator().manual_seed(0)
    v1 = (torch.randn(nu, 8, generator=g), torch.randn(ni, 8, generator=g))
    v2 = (torch.randn(nu, 8, generator=g), torch.randn(ni, 8, generator=g))
    uid, iid = model.meta.uid_field, model.meta.iid_field
    batch = {uid: torch.tensor([1, 2, 2, 3, 1]), iid: torch.tensor([4, 4, 5, 6, 7])}
    users, items = [1, 2, 3], [4, 5, 6, 7]  # duplicates count once (torch.unique, as SELFRec / RecBole-GNN)
    want = (np_infonce(v1[0][users].numpy(), v2[0][users].numpy(), 0.2)
            + np_infonce(v1[1][items].numpy(), v2[1][items].numpy(), 0.2))
    assert model.contrast(batch, v1, v2).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_noise_has_radius_eps_and_keeps_the_signs(split, eps):
    model = built("SimGCL", split, eps=eps)
    x = torch.randn(50, 8)
    model._perturb = True
    out = model._after_layer(0, x)
    delta = out - x
    np.testing.assert_allclose(delta.norm(dim=1).numpy(), eps, rtol=1e-5)  # |sign(e) * eps * normalize(u)| = eps
    assert ((delta * torch.sign(x)) >= 0).all()                             # pushed away from 0, same orthant
    model._perturb = False
    assert torch.equal(model._after_layer(0, x), x)                         # noiseless outside the views


def test_xsimgcl_adds_cross_layer_infonce_of_its_one_noisy_propagation(split):
    model = built("XSimGCL", split, cl_weight=0.3, cl_tau=0.15, eps=0.2, reg_weight=0.0).train()
    batch = train_batch(model, split)
    torch.manual_seed(5)
    full = model.training_loss(batch).item()
    model.config["cl_weight"] = 0.0
    torch.manual_seed(5)
    plain = model.training_loss(batch).item()
    torch.manual_seed(5)  # the same noise: the noisy propagation is the first draw of training_loss
    users_v, items_v = model.perturbed()
    layer1 = model._layer_outputs[1].detach().numpy()
    nu = model.meta.num_users
    users = np.unique(batch[model.meta.uid_field].numpy())
    items = np.unique(batch[model.meta.iid_field].numpy())
    want = (np_infonce(users_v.detach().numpy()[users], layer1[:nu][users], 0.15)
            + np_infonce(items_v.detach().numpy()[items], layer1[nu:][items], 0.15))
    assert full - plain == pytest.approx(0.3 * want, rel=1e-4)


def test_lightgcl_contrast_is_the_authors_loss_s(split):
    model = built("LightGCL", split, n_layers=2, svd_q=3, cl_weight=0.2, cl_tau=0.5, reg_weight=0.0).train()
    batch = train_batch(model, split)
    seen = []
    original = model.encode_items

    def recording(ids):
        seen.append(ids.reshape(-1))
        return original(ids)

    model.encode_items = recording
    torch.manual_seed(3)
    full = model.training_loss(batch).item()
    model.config["cl_weight"] = 0.0
    torch.manual_seed(3)
    plain = model.training_loss(batch).item()
    del model.encode_items
    items = torch.cat(seen[:len(seen) // 2]).numpy()                 # positives and negatives of the first call
    users = batch[model.meta.uid_field].numpy()
    nu = model.meta.num_users
    # the authors' code, in numpy: main view E (sum of layers over L), SVD view G from the main view's layers
    lap = model.norm_adj.to_dense().numpy().astype(np.float64)
    x = torch.cat([model.user_table, model.item_table]).detach().numpy().astype(np.float64)
    us, vs = model._u_s.numpy().astype(np.float64), model._v_s.numpy().astype(np.float64)
    layers, g = [x], x.copy()
    for _ in range(2):
        prev = layers[-1]
        g = g + np.concatenate([us @ (vs.T @ prev[nu:]), vs @ (us.T @ prev[:nu])])
        layers.append(lap @ prev)
    e = sum(layers)
    eu, ei, gu, gi = e[:nu], e[nu:], g[:nu], g[nu:]

    def part(gq, ev, rows):  # log sum_v exp(g_q . e_v / tau) over real nodes - clamp(g_q . e_q / tau, -5, 5)
        s = gq[rows] @ ev[1:].T / 0.5
        lse = np.log(np.exp(s).sum(1))
        pos = np.clip((gq[rows] * ev[rows]).sum(1) / 0.5, -5, 5)
        return lse.mean() - pos.mean()

    want = part(gu, eu, users) + part(gi, ei, items)
    assert full - plain == pytest.approx(0.2 * want, rel=1e-4)


# ---- DGCF ----------------------------------------------------------------------------------------
def dense_dgcf(r, x, k, iterations, layers):
    """The paper's routing (eqs. 3-7) with dense loops, and the layer mean: r [U, I] binary, x [U + I, D]."""
    nu = r.shape[0]
    n = x.shape[0]
    adj = np.zeros((n, n), bool)
    adj[:nu, nu:] = r
    adj[nu:, :nu] = r.T
    logits = np.ones((n, n, k))
    outs = [x]
    d = x.shape[1] // k
    for _ in range(layers):
        chunks = [x[:, f * d:(f + 1) * d] for f in range(k)]
        for _ in range(iterations):
            s = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True) * adj[..., None]
            deg = np.maximum(s.sum(1), 1e-8)                                   # [n, k]
            new = []
            for f in range(k):
                w = s[..., f] / np.sqrt(deg[:, f][:, None] * deg[:, f][None, :])
                new.append(w @ chunks[f])
            for f in range(k):
                un = new[f] / np.maximum(np.linalg.norm(new[f], axis=1, keepdims=True), 1e-12)
                cn = np.tanh(chunks[f] / np.maximum(np.linalg.norm(chunks[f], axis=1, keepdims=True), 1e-12))
                logits[..., f] += (un @ cn.T) * adj
        x = np.concatenate(new, 1)
        outs.append(x)
    return np.mean(outs, 0)


@pytest.mark.parametrize("layers", [1, 2])
def test_dgcf_propagation_equals_dense_routing(split, layers):
    model = built("DGCF", split, n_factors=2, n_iterations=2, n_layers=layers).eval()
    users, items = model.propagated()
    x = torch.cat([model.user_table, model.item_table]).detach().numpy().astype(np.float64)
    r = model.meta.train_matrix().toarray() > 0
    want = dense_dgcf(r, x, 2, 2, layers)
    want[0] = 0.0
    want[model.meta.num_users] = 0.0  # padding rows
    np.testing.assert_allclose(torch.cat([users, items]).numpy(), want, atol=1e-5)


def np_dcor(x, y):
    def centred(z):
        d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
        return d - d.mean(0, keepdims=True) - d.mean(1, keepdims=True) + d.mean()
    a, b = centred(x), centred(y)
    return np.sqrt((a * b).mean()) / np.sqrt(np.sqrt((a * a).mean()) * np.sqrt((b * b).mean()))


def test_distance_correlation_matches_szekely_definition():
    from recstudio.model.zoo.general.dgcf import distance_correlation
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = np.sin(x[:, :2]) + 0.1 * rng.normal(size=(40, 2))
    got = distance_correlation(torch.tensor(x), torch.tensor(y)).item()
    assert got == pytest.approx(np_dcor(x, y), abs=1e-4)
    assert distance_correlation(torch.tensor(x), torch.tensor(3 * x)).item() == pytest.approx(1.0, abs=1e-4)


def test_dgcf_independence_loss_is_mean_dcor_of_consecutive_intents(split):
    model = built("DGCF", split, embed_dim=12, n_factors=3, cor_weight=0.5).train()
    from recstudio.model.zoo.general.dgcf import distance_correlation
    users_v, items_v = (v.detach() for v in model.propagate())
    torch.manual_seed(1)
    got = model.independence_loss(users_v, items_v).item()
    torch.manual_seed(1)
    m = model.cor_batch_size
    u = torch.randperm(model.meta.num_users - 1)[:m] + 1
    i = torch.randperm(model.meta.num_items - 1)[:m] + 1
    z = torch.cat([users_v[u], items_v[i]]).chunk(3, dim=1)
    want = (distance_correlation(z[0], z[1]) + distance_correlation(z[1], z[2])).item() / 6.0
    assert got == pytest.approx(want, rel=1e-6)
    assert 2 <= m <= model.meta.num_users - 1
