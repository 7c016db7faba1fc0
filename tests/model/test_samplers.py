"""Samplers: shapes, support, exact log-probabilities, empirical frequencies, seeding, registry."""
import math

import pytest
import torch

from recstudio.model.sampler import (SAMPLERS, InBatchSampler, MaskedUniformSampler, PopularitySampler, Sampler,
                                     UniformSampler, accidental_hits, build_sampler)
from recstudio.utils.errors import ConfigError, DataError

N = 12  # num_items including padding 0: real items 1..11
COUNTS = torch.tensor([0, 5, 1, 0, 3, 8, 2, 2, 1, 10, 4, 6])


def samplers():
    return [UniformSampler(N, seed=0), MaskedUniformSampler(N, seed=0),
            PopularitySampler(N, alpha=0.75, item_counts=COUNTS, seed=0)]


def random_hist(b, h, n, gen):
    """[b, h] histories padded with 0; row sizes from 0 up to n - 3 (dense rows included)."""
    rows = []
    for i in range(b):
        size = int(torch.randint(0, min(h, n - 3) + 1, (1,), generator=gen))
        items = torch.randperm(n - 1, generator=gen)[:size] + 1
        rows.append(torch.cat([items, torch.zeros(h - size, dtype=torch.long)]))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("pos_shape", [(5,), (5, 3)])
def test_shapes_dtypes_and_no_padding(pos_shape):
    pos = torch.randint(1, N, pos_shape)
    query = torch.randn(5, 8)
    for s in samplers():
        lp, neg, lq = s(query, 7, pos)
        assert lp.shape == pos_shape and neg.shape == (*pos_shape, 7) and lq.shape == neg.shape, s
        assert neg.dtype == torch.int64 and lp.dtype == query.dtype and lq.dtype == query.dtype
        assert (neg >= 1).all() and (neg < N).all(), s
        assert torch.isfinite(lq).all() and (lq <= 0).all()
        s.update(item_vectors=torch.randn(N, 8))  # every sampler accepts an update
    lp, neg, lq = UniformSampler(N)(None, 0, torch.tensor([1, 2]))
    assert neg.shape == (2, 0)


def test_returned_log_probs_match_log_prob():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(1, N, (40,), generator=gen)
    hist = random_hist(40, 6, N, gen)
    for s in samplers():
        lp, neg, lq = s(None, 9, pos, hist)
        assert torch.allclose(lq.double(), s.log_prob(neg, pos, hist), atol=1e-6), s


def test_log_probs_sum_to_one_over_the_support():
    gen = torch.Generator().manual_seed(1)
    pos = torch.randint(1, N, (30,), generator=gen)
    hist = random_hist(30, 8, N, gen)
    every = torch.arange(N).expand(30, N)
    for s in samplers():
        p = s.log_prob(every, pos, hist).exp()
        assert torch.allclose(p.sum(1), torch.ones(30, dtype=p.dtype), atol=1e-9), s
        assert (p[:, 0] == 0).all()


def empirical(neg, n):
    return torch.bincount(neg.flatten(), minlength=n).double() / neg.numel()


def test_uniform_frequencies():
    lp, neg, lq = UniformSampler(N, seed=3)(None, 20000, torch.ones(10, dtype=torch.long))
    freq = empirical(neg, N)
    assert freq[0] == 0
    assert (freq[1:] - 1 / (N - 1)).abs().max() < 0.005
    assert torch.allclose(lq, torch.full_like(lq, -math.log(N - 1)))
    assert torch.allclose(lp, torch.full_like(lp, -math.log(N - 1)))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_popularity_frequencies(alpha):
    s = PopularitySampler(N, alpha=alpha, item_counts=COUNTS, seed=4)
    lp, neg, lq = s(None, 20000, torch.tensor([1, 9, 5, 2, 4, 6, 7, 8, 10, 11]))
    p = COUNTS.double() ** alpha
    p[0] = 0
    p = p / p.sum()
    freq = empirical(neg, N)
    assert (freq - p).abs().max() < 0.006
    assert freq[3] == 0 and freq[0] == 0  # count 0 is never drawn when alpha > 0
    assert torch.allclose(lp.double(), p[torch.tensor([1, 9, 5, 2, 4, 6, 7, 8, 10, 11])].log(), atol=1e-6)
    assert torch.allclose(lq.double(), p[neg].log(), atol=1e-6)


def test_popularity_alpha_zero_is_uniform():
    s = PopularitySampler(N, alpha=0.0, item_counts=COUNTS, seed=5)
    u = UniformSampler(N)
    items = torch.arange(1, N).expand(3, N - 1)
    assert torch.allclose(s.log_prob(items), u.log_prob(items))
    lp, neg, lq = s(None, 20000, torch.tensor([3, 1, 2]))
    assert torch.allclose(lq, torch.full_like(lq, -math.log(N - 1)))
    assert torch.allclose(lp, torch.full_like(lp, -math.log(N - 1)))  # even item 3 with count 0
    assert (empirical(neg, N)[1:] - 1 / (N - 1)).abs().max() < 0.006


def test_popularity_needs_counts():
    s = PopularitySampler(N)
    with pytest.raises(ConfigError, match="update"):
        s(None, 2, torch.tensor([1]))
    with pytest.raises(DataError, match="entries"):
        s.update(item_counts=torch.ones(N - 1))
    with pytest.raises(DataError):
        s.update(item_counts=torch.zeros(N))
    s.update(item_counts=COUNTS)
    assert s(None, 2, torch.tensor([1]))[1].shape == (1, 2)


# ----------------------------------------------------------------------------- masked uniform
def test_masked_uniform_never_returns_history_or_positive():
    gen = torch.Generator().manual_seed(6)
    n, b, h = 40, 300, 40
    hist = random_hist(b, h, n, gen)
    hist[0, : n - 2] = torch.arange(1, n - 1)  # row 0: every item but n-1 in its history
    hist[1] = 0
    hist[1, : n - 3] = torch.arange(2, n - 1)  # row 1: history 2..n-2 and positive 1 -> only n-1 is left
    pos = torch.randint(1, n, (b,), generator=gen)
    pos[0] = 1
    pos[1] = 1
    s = MaskedUniformSampler(n, generator=torch.Generator().manual_seed(0))
    lp, neg, lq = s(None, 50, pos, hist)
    assert not accidental_hits(neg, pos, hist).any()
    assert (neg[0] == n - 1).all() and (neg[1] == n - 1).all()
    excluded = [set(hist[i].tolist()) - {0} | {int(pos[i])} for i in range(b)]
    for i in range(b):
        assert not (set(neg[i].tolist()) & excluded[i])
        assert math.isclose(float(lq[i, 0]), -math.log(n - 1 - len(excluded[i])), rel_tol=1e-6)
        assert math.isclose(float(lp[i]), float(lq[i, 0]))


def test_masked_uniform_frequencies_per_user():
    s = MaskedUniformSampler(N, seed=7)
    pos = torch.tensor([1, 5, 11])
    hist = torch.tensor([[2, 3, 0, 0], [1, 2, 3, 4], [10, 9, 9, 0]])  # duplicates and padding
    lp, neg, lq = s(None, 30000, pos, hist)
    for i, allowed in enumerate([[4, 5, 6, 7, 8, 9, 10, 11], [6, 7, 8, 9, 10, 11], [1, 2, 3, 4, 5, 6, 7, 8]]):
        freq = empirical(neg[i], N)
        target = torch.zeros(N, dtype=torch.float64)
        target[allowed] = 1 / len(allowed)
        assert (freq - target).abs().max() < 0.01, i
        assert math.isclose(float(lq[i, 0]), -math.log(len(allowed)), rel_tol=1e-6)


def test_masked_uniform_without_history_excludes_only_the_positive():
    lp, neg, lq = MaskedUniformSampler(4, seed=0)(None, 100, torch.tensor([2]))
    assert set(neg.flatten().tolist()) == {1, 3}
    assert torch.allclose(lq, torch.full_like(lq, -math.log(2)))


def test_masked_uniform_errors():
    s = MaskedUniformSampler(4, seed=0)
    with pytest.raises(DataError, match="no item left"):
        s(None, 1, torch.tensor([1]), torch.tensor([[2, 3]]))
    with pytest.raises(DataError, match="outside"):
        s(None, 1, torch.tensor([1]), torch.tensor([[7, 0]]))


# ----------------------------------------------------------------------------- in-batch
def test_inbatch_all_other_rows():
    pos = torch.tensor([4, 7, 4, 9])
    lp, neg, lq = InBatchSampler()(torch.randn(4, 3), None, pos)
    assert neg.tolist() == [[7, 4, 9], [4, 9, 4], [9, 4, 7], [4, 7, 4]]
    assert torch.allclose(lp.exp(), torch.tensor([0.5, 0.25, 0.5, 0.25]))
    assert torch.allclose(lq.exp(), torch.tensor([[0.25, 0.5, 0.25], [0.5, 0.25, 0.5],
                                                  [0.25, 0.5, 0.25], [0.5, 0.25, 0.5]]))
    # the batch frequencies are a distribution over the batch's distinct items
    assert math.isclose(float(InBatchSampler().log_prob(torch.tensor([4, 7, 9]), pos).exp().sum()), 1.0)
    same = InBatchSampler()(None, 10, pos)[1]  # num_neg >= B - 1: all other rows
    assert same.tolist() == neg.tolist()
    hits = accidental_hits(neg, pos)
    assert hits.tolist() == [[False, True, False], [False, False, False], [False, True, False],
                             [False, False, False]]


def test_inbatch_subset_and_seed():
    pos = torch.arange(1, 9)
    a = InBatchSampler(seed=1)(None, 3, pos)[1]
    b = InBatchSampler(seed=1)(None, 3, pos)[1]
    assert a.shape == (8, 3) and torch.equal(a, b)
    for r in range(8):
        assert len(set(a[r].tolist())) == 3 and int(pos[r]) not in a[r].tolist()


def test_inbatch_popularity_estimate():
    s = InBatchSampler(estimate="popularity", num_items=N, item_counts=COUNTS)
    pos = torch.tensor([1, 9, 5])
    lp, neg, lq = s(None, None, pos)
    p = COUNTS.double() / COUNTS.sum()
    assert torch.allclose(lp.double(), p[pos].log(), atol=1e-6)
    assert torch.allclose(lq.double(), p[neg].log(), atol=1e-6)
    with pytest.raises(ConfigError):
        InBatchSampler(estimate="popularity")(None, None, pos)
    with pytest.raises(ConfigError):
        InBatchSampler(estimate="global")


# ----------------------------------------------------------------------------- seeding, registry
def test_seeded_draws_repeat():
    pos = torch.randint(1, N, (16,))
    hist = random_hist(16, 5, N, torch.Generator().manual_seed(0))
    for make in [lambda **k: UniformSampler(N, **k), lambda **k: MaskedUniformSampler(N, **k),
                 lambda **k: PopularitySampler(N, item_counts=COUNTS, **k)]:
        a = make(seed=11)(None, 20, pos, hist)[1]
        b = make(generator=torch.Generator().manual_seed(11))(None, 20, pos, hist)[1]
        c = make(seed=12)(None, 20, pos, hist)[1]
        assert torch.equal(a, b) and not torch.equal(a, c)
        s = make(seed=0)
        s.manual_seed(11)
        assert torch.equal(s(None, 20, pos, hist)[1], a)
        torch.manual_seed(5)
        d = make()(None, 20, pos, hist)[1]
        torch.manual_seed(5)
        assert torch.equal(make()(None, 20, pos, hist)[1], d)  # global RNG when no generator
    with pytest.raises(ConfigError):
        UniformSampler(N, generator=torch.Generator(), seed=1)


def test_registry_and_build():
    for name, cls in [("uniform", UniformSampler), ("masked_uniform", MaskedUniformSampler),
                      ("popularity", PopularitySampler), ("inbatch", InBatchSampler)]:
        assert SAMPLERS.get(name.upper()) is cls and issubclass(cls, Sampler)
    s = build_sampler("popularity", context={"num_items": N}, alpha=0.5, item_counts=COUNTS)
    assert s.alpha == 0.5 and s.num_items == N
    assert build_sampler("inbatch", context={"num_items": N}).num_items == N
    with pytest.raises(ConfigError, match="alpha"):
        build_sampler("popularity", context={"num_items": N}, alpah=0.5)
    with pytest.raises(ConfigError, match="num_items"):
        build_sampler("uniform")
    with pytest.raises(ConfigError, match="Did you mean"):
        SAMPLERS.get("unifrom")
    with pytest.raises(ConfigError):
        UniformSampler(N)(None, -1, torch.tensor([1]))
