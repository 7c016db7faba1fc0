"""Score functions: shapes, score_all == forward, chunking, ANN-metric consistency, gradients, registry."""
import pytest
import torch

from recstudio.model.scorer import (SCORERS, CosineScorer, EuclideanScorer, GMFScorer, NeuMFScorer,
                                    get_score_func, require_decomposable)
from recstudio.utils.errors import ConfigError

D = 8
NAMES = ["inner_product", "cosine", "euclidean", "mlp", "gmf", "neumf"]


def make(name, **kw):
    torch.manual_seed(0)
    s = get_score_func(name, dim=D, **kw)
    s.eval()
    return s


def ann_rank(scorer, q, V):
    """Brute-force 'ANN' ranking of item_vector(V) for query_vector(q) under scorer.metric."""
    qv, iv = scorer.query_vector(q), scorer.item_vector(V)
    if scorer.metric == "ip":
        sim = qv @ iv.t()
    elif scorer.metric == "cosine":
        sim = torch.nn.functional.normalize(qv, dim=-1) @ torch.nn.functional.normalize(iv, dim=-1).t()
    else:  # l2: nearest first
        sim = -torch.cdist(qv, iv)
    return sim.argsort(-1, descending=True)


def test_registry_lists_all():
    assert set(NAMES) <= set(SCORERS.names())
    assert SCORERS.get("Inner_Product") is SCORERS.get("inner_product")
    with pytest.raises(ConfigError, match="cosine"):
        SCORERS.get("cosin")


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name):
    s = make(name)
    q = torch.randn(3, D)
    assert s(q, torch.randn(3, D)).shape == (3,)
    assert s(q, torch.randn(3, 5, D)).shape == (3, 5)
    assert s(torch.randn(3, 4, D), torch.randn(3, 4, D)).shape == (3, 4)   # per-position pairs
    assert s.score_all(q, torch.randn(7, D)).shape == (3, 7)
    assert s.score_all(torch.randn(2, 3, D), torch.randn(7, D)).shape == (2, 3, 7)
    with pytest.raises(ConfigError, match="score_all"):
        s(q, torch.randn(7, D))


@pytest.mark.parametrize("name", NAMES)
def test_score_all_equals_forward_and_chunking(name):
    s = make(name)
    q, V = torch.randn(4, D), torch.randn(11, D)
    full = s.score_all(q, V)
    each = s(q, V.expand(4, 11, D))
    pairs = torch.stack([s(q, V[i].expand(4, D)) for i in range(11)], 1)
    torch.testing.assert_close(full, each, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full, pairs, atol=1e-5, rtol=1e-5)
    for chunk in (1, 3, 11, 100):
        torch.testing.assert_close(s.score_all(q, V, item_chunk_size=chunk), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["inner_product", "cosine", "euclidean", "gmf"])
def test_decomposable_ranking_matches_ann_metric(name):
    s = make(name)
    if name == "gmf":
        with torch.no_grad():
            s.h.uniform_(0.5, 2.0)
    assert s.decomposable and s.metric in ("ip", "l2", "cosine")
    q, V = torch.randn(5, D), torch.randn(30, D)
    exact = s.score_all(q, V).argsort(-1, descending=True)
    assert torch.equal(exact, ann_rank(s, q, V))


def test_euclidean_is_negative_distance_and_cosine_temperature():
    q, v = torch.randn(4, D), torch.randn(4, D)
    torch.testing.assert_close(EuclideanScorer()(q, v), -(q - v).norm(dim=-1))
    torch.testing.assert_close(EuclideanScorer(squared=True)(q, v), -((q - v) ** 2).sum(-1))
    cos = torch.nn.functional.cosine_similarity(q, v, dim=-1)
    torch.testing.assert_close(CosineScorer(temperature=0.1)(q, v), cos / 0.1)
    # distance 0 keeps a finite gradient
    x = torch.randn(2, D, requires_grad=True)
    EuclideanScorer()(x, x.detach()).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_all_parameters_and_inputs(name):
    s = make(name)
    s.train()
    q = torch.randn(3, D, requires_grad=True)
    V = torch.randn(6, D, requires_grad=True)
    (s(q, V[:3]).sum() + s.score_all(q, V).sum()).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert V.grad is not None and V.grad.abs().sum() > 0
    for pname, p in s.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["mlp", "neumf"])
def test_non_decomposable_guard(name):
    s = make(name)
    assert not s.decomposable and s.metric is None
    with pytest.raises(ConfigError, match=rf"ANN retrieval needs a decomposable.*'{name}' is not"):
        require_decomposable(s, "ANN retrieval")
    with pytest.raises(ConfigError):
        s.query_vector(torch.randn(2, D))
    require_decomposable(make("cosine"))  # no error


def test_neumf_uses_both_halves():
    s = make("neumf")
    g = s.gmf_dim
    q, v = torch.randn(3, D), torch.randn(3, D)
    base = s(q, v)
    q_gmf, q_mlp = q.clone(), q.clone()
    q_gmf[:, :g] += 1.0
    q_mlp[:, g:] += 1.0
    assert not torch.allclose(s(q_gmf, v), base)
    assert not torch.allclose(s(q_mlp, v), base)
    # the GMF half enters only through q_gmf * v_gmf: zero item GMF half -> q's GMF half is irrelevant
    v0 = v.clone()
    v0[:, :g] = 0
    torch.testing.assert_close(s(q_gmf, v0), s(q, v0))
    with pytest.raises(ConfigError, match="odd"):
        NeuMFScorer(dim=7)
    assert NeuMFScorer(dim=7, gmf_dim=3)(torch.randn(2, 7), torch.randn(2, 7)).shape == (2,)


def test_gmf_equals_weighted_inner_product():
    s = GMFScorer(dim=D)
    with torch.no_grad():
        s.h.copy_(torch.arange(1.0, D + 1))
    q, v = torch.randn(2, D), torch.randn(2, D)
    torch.testing.assert_close(s(q, v), (q * s.h * v).sum(-1))


def test_get_score_func_errors():
    with pytest.raises(ConfigError, match="needs dim"):
        get_score_func("mlp")
    with pytest.raises(ConfigError, match="does not take"):
        get_score_func("cosine", temprature=0.1)
    with pytest.raises(ConfigError, match="Did you mean"):
        get_score_func("euclid")
    inst = CosineScorer()
    assert get_score_func(inst) is inst
    assert get_score_func(CosineScorer, temperature=0.5).temperature == 0.5
