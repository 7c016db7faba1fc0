"""Model-based samplers (cluster_*, midx_*, sir, dns, retriever), k-means and exact WARP."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.model.base.meta import DataMeta
from recstudio.model.loss import ExactWARPLoss, build_loss
from recstudio.model.registry import get_model
from recstudio.model.sampler import SAMPLERS, RetrieverSampler, UniformSampler, build_sampler
from recstudio.model.sampler.kmeans import faiss_installed, kmeans
from recstudio.utils.errors import ConfigError

N, D = 14, 6  # 13 real items
COUNTS = torch.tensor([0, 5, 1, 0, 3, 8, 2, 2, 1, 10, 4, 6, 0, 7], dtype=torch.float64)
EXACT = ["cluster_uni", "cluster_pop", "midx_uni", "midx_pop", "dns"]
DRAWS = 40000


def vectors(seed=0):
    return torch.randn(N, D, generator=torch.Generator().manual_seed(seed))


def make(name, metric="ip", **kw):
    opts = {"num_clusters": 3, "kmeans_backend": "torch"} if name.startswith(("cluster", "midx")) else \
        {"num_candidates": 3}
    s = build_sampler(name, context={"num_items": N, "item_counts": COUNTS, "seed": 0}, metric=metric, **{**opts, **kw})
    s.update(item_vectors=vectors())
    return s


def empirical(neg):
    return torch.stack([torch.bincount(row, minlength=N).double() / row.numel() for row in neg])


def within_tolerance(freq, prob, n):
    """Every |freq - p| within 5 standard errors (plus a floor for p ~ 0)."""
    return bool(((freq - prob).abs() <= 5 * (prob * (1 - prob) / n).sqrt() + 1e-3).all())


def test_registered_by_name():
    for name in EXACT + ["sir", "retriever"]:
        assert name in SAMPLERS


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_log_probs_match_empirical_frequencies(name, metric):
    s = make(name, metric)
    q = torch.randn(3, D, generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([1, 4, 9])
    lp, neg, lq = s(q, DRAWS, pos)
    every = s.log_prob(torch.arange(N).expand(3, N), query=q)
    prob = every.exp()
    assert torch.allclose(prob.sum(1), torch.ones(3, dtype=prob.dtype), atol=1e-9)
    assert torch.isinf(every[:, 0]).all() and (neg >= 1).all() and (neg < N).all()  # never the padding
    assert within_tolerance(empirical(neg), prob, DRAWS), name
    assert torch.allclose(lq.double(), every.gather(1, neg), atol=1e-5)  # returned = exact log-probs
    assert torch.allclose(lp.double(), every.gather(1, pos[:, None]).squeeze(1), atol=1e-5)


@pytest.mark.parametrize("name", ["cluster_pop", "midx_pop"])
def test_popularity_variants_never_draw_zero_count_items(name):
    s = make(name)
    _, neg, _ = s(torch.randn(4, D), 5000, torch.tensor([1, 2, 5, 6]))
    zero = torch.nonzero(COUNTS == 0).flatten()
    assert not torch.isin(neg, zero).any()


def test_midx_cells_are_products_of_the_two_codebooks():
    s = make("midx_uni", num_clusters=3)
    assert s.num_cells == 9 and len(s.codebooks) == 2 and s.codebooks[0].shape == (3, D // 2)
    # log q(i) = q1·c1 + q2·c2 - log Z: uniform within the cell means items of one cell share the probability
    q = torch.randn(1, D)
    lq = s.log_prob(torch.arange(1, N)[None], query=q)[0]
    cells = s.item_cell[1:]
    for c in cells.unique():
        assert torch.allclose(lq[cells == c], lq[cells == c][0].expand(int((cells == c).sum())))


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_sir_log_probs_are_exact(metric):
    """One call: 3 queries x 20,000 rows, one draw each (every row picks its own block of the call's partition);
    the draw frequencies match the exact log_prob of that partition, which the call also returned."""
    s = make("sir", metric)  # M = 3: Y = 13 items in G = 4 blocks
    q3 = torch.randn(3, D, generator=torch.Generator().manual_seed(1))
    rows = 20000
    q = q3.repeat_interleave(rows, 0)
    pos = torch.tensor([1, 4, 9]).repeat_interleave(rows)
    lp, neg, lq = s(q, 1, pos)
    every = s.log_prob(torch.arange(N).expand(3, N), query=q3)
    prob = every.exp()
    assert torch.allclose(prob.sum(1), torch.ones(3, dtype=prob.dtype), atol=1e-9)
    assert torch.isinf(every[:, 0]).all() and (neg >= 1).all() and (neg < N).all()
    freq = torch.stack([torch.bincount(neg[r * rows:(r + 1) * rows, 0], minlength=N).double() / rows
                        for r in range(3)])
    assert within_tolerance(freq, prob, rows)
    grid = every.repeat_interleave(rows, 0)
    assert torch.allclose(lq.double(), grid.gather(1, neg), atol=1e-5)
    assert torch.allclose(lp.double(), grid.gather(1, pos[:, None]).squeeze(1), atol=1e-5)


def test_sir_partition_and_formula_by_hand():
    s = make("sir", num_candidates=3)
    blocks = s.blocks[s.blocks > 0]
    assert s.num_groups == 4 and sorted(blocks.tolist()) == list(range(1, N))  # every item in exactly one block
    assert sorted((s.blocks > 0).sum(1).tolist()) == [3, 3, 3, 4]
    q = torch.randn(1, D, generator=torch.Generator().manual_seed(2))
    scores = (q @ s.vectors.t())[0].double()
    for i in (1, 5, 13):
        block = s.blocks[s.block_of[i]]
        block = block[block > 0]
        by_hand = scores[i] - torch.logsumexp(scores[block], 0) - math.log(4)
        assert math.isclose(float(s.log_prob(torch.tensor([[i]]), query=q)), float(by_hand), rel_tol=1e-6)
    before = s.blocks.clone()
    s(q, 2, torch.tensor([1]))
    assert not torch.equal(before, s.blocks)  # a fresh partition at every call
    # positives [B, P] (a sequence model): each position's log q is its own item's
    lp, neg, lq = s(q.expand(2, D), 3, torch.tensor([[1, 2], [3, 0]]))
    assert neg.shape == (2, 2, 3) and torch.isinf(lp[1, 1])
    assert torch.allclose(lp[0].double(), s.log_prob(torch.tensor([[1, 2]]), query=q)[0], atol=1e-6)


def test_sir_with_one_block_is_the_softmax():
    s = make("sir", num_candidates=50)  # M >= Y: one block, the whole catalogue
    q = torch.randn(2, D)
    soft = torch.log_softmax((q @ s.vectors[1:].t()).double(), 1)
    assert s.num_groups == 1
    assert torch.allclose(s.log_prob(torch.arange(1, N).expand(2, N - 1), query=q), soft, atol=1e-6)


def test_model_based_sampler_needs_query_and_vectors():
    s = build_sampler("midx_uni", context={"num_items": N})
    with pytest.raises(ConfigError):
        s(torch.randn(2, D), 3, torch.tensor([1, 2]))  # no refresh yet
    s.update(item_vectors=vectors())
    with pytest.raises(ConfigError):
        s(None, 3, torch.tensor([1, 2]))


def test_seeded_draws_repeat():
    a, b = make("cluster_uni"), make("cluster_uni")
    q = torch.randn(3, D)
    assert torch.equal(a(q, 10, torch.tensor([1, 2, 3]))[1], b(q, 10, torch.tensor([1, 2, 3]))[1])


def test_kmeans_backends():
    x = torch.cat([torch.randn(20, 3) * 0.1, torch.randn(20, 3) * 0.1 + 5])
    c, labels = kmeans(x, 2, iters=10, seed=0, backend="torch")
    assert c.shape == (2, 3) and sorted(torch.bincount(labels).tolist()) == [20, 20]
    if faiss_installed():
        c, labels = kmeans(x, 2, iters=10, seed=0, backend="faiss")
        assert sorted(torch.bincount(labels).tolist()) == [20, 20]
    assert kmeans(x[:3], 8)[0].shape[0] == 3  # clamped to the number of points


# ----------------------------------------------------------------------------- retriever
@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{int(i)}", 1.0, float(t)) for u in range(30)
            for t, i in enumerate(rng.choice(np.arange(1, 41), size=int(rng.integers(5, 15)), replace=False))]
    return from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t").split(split_mode="loo")


def test_retriever_proposal_is_exact(split):
    bpr = get_model("BPR")(embed_dim=8)
    bpr.build(DataMeta.from_split(split))
    n = bpr.meta.num_items
    s = RetrieverSampler(n, checkpoint=bpr, top_n=5, uniform_mix=0.3, index="exact", seed=0)
    pos = torch.tensor([1, 7, 12])
    lp, neg, lq = s(None, DRAWS, pos)
    every = s.log_prob(torch.arange(n).expand(3, n), pos)
    prob = every.exp()
    assert torch.allclose(prob.sum(1), torch.ones(3, dtype=prob.dtype), atol=1e-9)
    assert (neg >= 1).all() and within_tolerance(empirical_n(neg, n), prob, DRAWS)
    assert torch.allclose(lq.double(), every.gather(1, neg)) and not (s.table[pos] == pos[:, None]).any()
    with pytest.raises(ConfigError):
        RetrieverSampler(n, checkpoint=None)


def empirical_n(neg, n):
    return torch.stack([torch.bincount(row, minlength=n).double() / row.numel() for row in neg])


def test_trained_retriever_checkpoint_as_sampler_of_sasrec(split, tmp_path):
    bpr, _ = recstudio.run(model="BPR", dataset=split, embed_dim=8, epochs=1, batch_size=32, quiet=True,
                           run_dir=str(tmp_path / "bpr"))
    model, metrics = recstudio.run(model="SASRec", dataset=split, loss="sampled_softmax", sampler="retriever",
                                   sampler_checkpoint=str(bpr.run_dir), sampler_top_n=5, num_neg=4, embed_dim=8,
                                   n_layers=1, max_seq_len=10, epochs=1, batch_size=16, quiet=True,
                                   run_dir=str(tmp_path / "sas"))
    assert isinstance(model.sampler, RetrieverSampler) and all(math.isfinite(v) for v in metrics.values())


# ----------------------------------------------------------------------------- in a model
TINY = dict(embed_dim=8, epochs=2, batch_size=16, quiet=True, num_neg=4, sampler_clusters=3)


@pytest.mark.parametrize("sampler", ["cluster_uni", "midx_pop", "sir", "dns"])
@pytest.mark.parametrize("model_name", ["BPR", "SASRec"])
def test_selectable_by_name_and_refreshed_each_epoch(split, tmp_path, model_name, sampler):
    extra = dict(n_layers=1, max_seq_len=10) if model_name == "SASRec" else {}
    model, metrics = recstudio.run(model=model_name, dataset=split, loss="sampled_softmax", sampler=sampler,
                                   run_dir=str(tmp_path), **TINY, **extra)
    assert type(model.sampler) is SAMPLERS.get(sampler)
    assert model.sampler.refreshes == 2  # one per epoch
    assert all(math.isfinite(v) for v in metrics.values())


def test_refresh_every_n_steps(split, tmp_path):
    model, _ = recstudio.run(model="BPR", dataset=split, loss="sampled_softmax", sampler="midx_uni",
                             sampler_refresh_steps=2, run_dir=str(tmp_path), **TINY)
    steps = model.global_step
    assert model.sampler.refreshes == math.ceil(steps / 2) and steps > 2
    # the snapshot is the model's current item vectors
    model.refresh_sampler()
    assert torch.allclose(model.sampler.vectors, model.item_vectors().detach())


# ----------------------------------------------------------------------------- exact WARP
def test_exact_warp_rank_estimate():
    loss = ExactWARPLoss(num_items=N, max_trials=50, chunk=4)
    pos_ids, pos_score = torch.tensor([1, 2]), torch.tensor([0.0, 0.0])
    # row 0: every other item violates -> 1 trial; row 1: nothing violates -> 50 trials, no loss
    score = lambda ids: torch.where(torch.arange(2)[:, None] == 0, torch.full(ids.shape, 5.0), torch.full(ids.shape, -5.0))
    neg, trials, found = loss.draw(UniformSampler(N, seed=0), None, pos_ids, pos_score, score)
    assert found.tolist()[1] is False and trials[1] == 50
    assert trials[0] == 1 or neg[0] != 1  # the first draw violates unless it hit the positive itself
    value = loss.draw_and_score(UniformSampler(N, seed=0), None, pos_ids, pos_score, score)
    rank = (N - 2) // int(trials[0])
    expected = sum(1 / i for i in range(1, rank + 1)) * (1 + 5.0) / 2
    assert math.isclose(float(value), expected, rel_tol=1e-5)


def test_exact_warp_trials_follow_the_geometric_law():
    """With a fraction f of violating items and uniform draws, T ~ Geometric(f)."""
    n = 101
    loss = ExactWARPLoss(num_items=n, max_trials=1000, chunk=7)
    b = 4000
    viol = lambda ids: torch.where(ids <= 10, 5.0, -5.0)  # items 1..10 of 100 violate: f = 0.1
    _, trials, found = loss.draw(UniformSampler(n, seed=1), None, torch.full((b,), 50), torch.zeros(b), viol)
    assert found.all() and abs(trials.double().mean().item() - 10.0) < 0.6


def test_exact_warp_selectable_from_config(split, tmp_path):
    assert isinstance(build_loss("warp_exact", context={"num_items": 10}), ExactWARPLoss)
    model, metrics = recstudio.run(model="BPR", dataset=split, loss="warp_exact", sampler="cluster_uni",
                                   warp_max_trials=20, run_dir=str(tmp_path), **TINY)
    assert model.loss_fn.max_trials == 20 and all(math.isfinite(v) for v in metrics.values())


def test_exact_warp_given_negatives_is_the_fixed_budget_warp():
    """Called with K given negatives and no trials (a sequential model's loss), it is ``warp`` over them."""
    from recstudio.model.loss.pairwise import WARPLoss
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(6, generator=g), torch.randn(6, 5, generator=g)
    exact, fixed = ExactWARPLoss(num_items=50), WARPLoss(num_items=50)
    torch.testing.assert_close(exact(pos_score=pos, neg_score=neg), fixed(pos_score=pos, neg_score=neg))
    assert exact.needs_negatives and exact.draws_negatives
