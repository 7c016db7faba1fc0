"""Contracts checked over every entry of every block registry, so a new loss, sampler, score function,
optimizer, scheduler or ANN index is covered the moment it is registered."""
import pytest
import torch

from recstudio.ann.base import INDEXES, build_index
from recstudio.model.loss import LOSSES, build_loss
from recstudio.model.optim import OPTIMIZERS, SCHEDULERS, configure
from recstudio.model.sampler import SAMPLERS, build_sampler
from recstudio.model.scorer import SCORERS, get_score_func

N, B, K, D = 40, 6, 5, 8


def train_config(**keys):
    from recstudio.model.base.options import TRAIN_OPTIONS
    return {**{k: o.default for k, o in TRAIN_OPTIONS.items()}, **keys}


def loss_inputs(loss, pos, neg, all_score, pos_index):
    inputs = {"pos_score": pos}
    if loss.needs_all_scores:
        inputs.update(all_score=all_score, pos_index=pos_index)
    if loss.needs_negatives:
        inputs["neg_score"] = neg
        if loss.uses_logq:
            inputs.update(log_pos_prob=torch.full_like(pos, -3.0), log_neg_prob=torch.full_like(neg, -3.0))
    if loss.pointwise:
        inputs["label"] = torch.ones_like(pos)
    return inputs


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_finite_differentiable_and_prefers_the_right_ranking(name):
    loss = build_loss(name, context={"num_items": N})
    if getattr(loss, "needs_vectors", False) or getattr(loss, "draws_negatives", False):
        pytest.skip("takes vectors / a sampler, not scores: tests/model/test_chunked_softmax.py, test_model_samplers.py")
    pos_index = torch.randint(1, N, (B,), generator=torch.Generator().manual_seed(0))
    good_all = torch.full((B, N), -3.0)
    good_all[torch.arange(B), pos_index] = 3.0
    good_all[:, 0] = float("-inf")
    bad_all = -good_all.clone()
    bad_all[:, 0] = float("-inf")
    pos_good = torch.full((B,), 3.0, requires_grad=True)
    good_all.requires_grad_(True)
    good = loss(**loss_inputs(loss, pos_good, torch.full((B, K), -3.0), good_all, pos_index))
    bad = loss(**loss_inputs(loss, torch.full((B,), -3.0), torch.full((B, K), 3.0), bad_all, pos_index))
    assert good.shape == () and torch.isfinite(good) and torch.isfinite(bad)
    assert good < bad, f"{name}: a correct ranking should cost less than an inverted one"
    good.backward()
    grads = [g for g in (pos_good.grad, good_all.grad) if g is not None]
    assert grads and all(torch.isfinite(g[:, 1:] if g.dim() == 2 else g).all() for g in grads)
    if loss.needs_negatives:  # accidental hits are ignored: a masked negative's score does not matter
        good_all = good_all.detach()
        neg = torch.linspace(-3.0, 1.0, B * K).reshape(B, K)
        neg_hit = neg.clone()
        neg_hit[:, 0] = 50.0
        mask = torch.zeros(B, K, dtype=torch.bool)
        mask[:, 0] = True
        pos = torch.full((B,), 2.0)
        base = loss(**{**loss_inputs(loss, pos, neg, good_all, pos_index), "neg_is_pos": mask})
        hit = loss(**{**loss_inputs(loss, pos, neg_hit, good_all, pos_index), "neg_is_pos": mask})
        torch.testing.assert_close(hit, base, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_draws_valid_ids_with_log_probabilities(name):
    if name == "retriever":
        pytest.skip("needs a trained model's checkpoint (tests/model/test_model_samplers.py)")
    counts = torch.arange(N, dtype=torch.float32)
    sampler = build_sampler(name, context={"num_items": N, "item_counts": counts, "seed": 0})
    if getattr(sampler, "needs_query", False):
        pytest.skip("model-based: refreshed from a model's item vectors first (tests/model/test_model_samplers.py)")
    pos = torch.randint(1, N, (B,), generator=torch.Generator().manual_seed(1))
    hist = torch.stack([torch.arange(1, 4) + i for i in range(B)])
    query = torch.randn(B, D)
    log_pos, neg, log_neg = sampler(query, K, pos, hist)
    assert neg.dtype == torch.int64 and neg.shape[0] == B and neg.shape[-1] >= 1
    assert int(neg.min()) >= 1 and int(neg.max()) < N, "padding id 0 and out-of-range ids are never drawn"
    assert log_pos.shape == pos.shape and log_neg.shape == neg.shape
    assert torch.isfinite(log_neg).all() and (log_neg <= 1e-6).all()


@pytest.mark.parametrize("name", SCORERS.names())
def test_every_score_function_scores_pairs_as_it_scores_all(name):
    scorer = get_score_func(name, dim=D)
    q, items = torch.randn(B, D), torch.randn(N, D)
    with torch.no_grad():
        full = scorer.score_all(q, items)
        pairs = scorer(q, items[:B])
        many = scorer(q, items[:K].expand(B, K, D))
    assert full.shape == (B, N)
    torch.testing.assert_close(pairs, full[torch.arange(B), torch.arange(B)], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(many, full[:, :K], rtol=1e-4, atol=1e-5)
    if scorer.decomposable:  # the query / item vectors give the same ranking by inner product or distance
        qv, iv = scorer.query_vector(q), scorer.item_vector(items)
        ref = qv @ iv.T if scorer.metric == "ip" else -torch.cdist(qv, iv)
        assert (ref.argsort(1, descending=True)[:, :5] == full.argsort(1, descending=True)[:, :5]).float().mean() > 0.9


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step(name):
    sparse = name in ("sparse_adam", "sparseadam")
    emb = torch.nn.Embedding(10, 4, sparse=sparse)
    before = emb.weight.detach().clone()
    out = configure(list(emb.parameters()), train_config(optimizer=name, learning_rate=0.1, weight_decay=0.0,
                                                          scheduler=None), "valid/mrr@10")
    opt = out["optimizer"] if isinstance(out, dict) else out
    emb(torch.tensor([1, 2])).sum().backward()
    opt.step()
    assert not torch.equal(before, emb.weight.detach())


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_builds_from_the_config(name):
    p = [torch.nn.Parameter(torch.zeros(2))]
    out = configure(p, train_config(optimizer="adam", learning_rate=0.1, scheduler=name), "valid/mrr@10")
    assert isinstance(out, dict) and "lr_scheduler" in out


@pytest.mark.parametrize("name", INDEXES.names())
def test_every_ann_index_finds_the_exact_top1_of_an_item_vector(name):
    if name != "exact":
        pytest.importorskip("faiss")
    vectors = torch.randn(200, D, generator=torch.Generator().manual_seed(0))
    index = build_index(name, vectors, metric="l2", ids=torch.arange(1, 201))
    _, ids = index.search(vectors[:10], 1)
    assert (ids[:, 0] == torch.arange(1, 11)).float().mean() >= 0.9
