"""mixed: in-batch plus uniform negatives, with the mixture's exact log-probabilities."""
import math

import pytest
import torch

from recstudio.model.sampler import MixedSampler, build_sampler
from recstudio.utils.errors import ConfigError


def test_negatives_are_the_batch_then_uniform_items():
    s = MixedSampler(num_items=50, seed=0)
    pos = torch.tensor([3, 9, 3, 20])
    _, neg, _ = s(None, 5, pos)
    assert neg.shape == (4, 3 + 5)
    for b in range(4):
        assert sorted(neg[b, :3].tolist()) == sorted(pos[torch.arange(4) != b].tolist())
    assert bool(((neg[:, 3:] >= 1) & (neg[:, 3:] < 50)).all())


def test_log_probabilities_match_the_empirical_pool_frequencies():
    """A candidate of row b's pool (the B positives and K uniform draws) is item i with q(i)."""
    n, k = 8, 6
    s = MixedSampler(num_items=n, seed=1)
    pos = torch.tensor([1, 1, 2, 5])
    draws = 20000
    counts = torch.zeros(n, dtype=torch.float64)
    for _ in range(draws // 100):
        for _ in range(100):
            _, neg, _ = s(None, k, pos)
            counts += torch.bincount(neg[0, 3:], minlength=n).double()
        counts += 100 * torch.bincount(pos, minlength=n).double()
    empirical = counts / counts.sum()
    exact = s.mixture_log_prob(torch.arange(n), pos, k).exp().float()
    assert exact[0] == 0 and math.isclose(float(exact.sum()), 1.0, rel_tol=1e-6)
    assert torch.allclose(empirical.float(), exact, atol=0.01)
    lp, neg, lq = s(None, k, pos)
    assert torch.allclose(lq.exp(), exact[neg]) and torch.allclose(lp.exp(), exact[pos])
    assert torch.allclose(s.log_prob(neg, pos).exp().float(), exact[neg])


def test_popularity_estimate_and_errors():
    counts = torch.tensor([0.0, 4, 3, 2, 1])
    s = build_sampler("MIXED", context={"num_items": 5}, estimate="popularity", item_counts=counts, seed=0)
    lp, _, _ = s(None, 2, torch.tensor([1, 2]))
    want = (2 * 0.4 + 2 * 0.25) / 4
    assert math.isclose(float(lp[0].exp()), want, rel_tol=1e-6)
    with pytest.raises(ConfigError, match="num_neg"):
        s(None, 0, torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match=r"\[B\]"):
        s(None, 2, torch.tensor([[1, 2]]))
    with pytest.raises(ConfigError, match="draw once"):
        MixedSampler(num_items=5).log_prob(torch.tensor([1]), torch.tensor([1]))


@pytest.mark.parametrize("sampler", ["mixed", "shared_uniform"])
@pytest.mark.parametrize("model", ["BPR", "SASRec"])
def test_a_model_trains_with_sampled_softmax_over_mixed_negatives(make_split, tmp_path, model, sampler):
    from recstudio.model.registry import get_model
    split = make_split(0, 20, 30, (5, 12), **({"split_mode": "loo"} if model == "SASRec" else {}))
    small = dict(embed_dim=8, batch_size=32, quiet=True, epochs=2, early_stop_patience=2, eval_batch_size=16,
                 loss="sampled_softmax", sampler=sampler, num_neg=4)
    if model == "SASRec":
        small.update(n_layers=1, n_heads=1, max_seq_len=6)
    m = get_model(model)(**small)
    metrics = m.fit(split, run_dir=str(tmp_path / model))
    assert type(m.sampler).__name__ == {"mixed": "MixedSampler", "shared_uniform": "SharedUniformSampler"}[sampler]
    assert "ndcg@10" in metrics


def test_shared_negatives_equal_the_same_items_gathered_per_row(make_split):
    """shared_uniform: one [P, K] product gives the loss of the same K items scored row by row."""
    from recstudio.model.base.meta import DataMeta
    from recstudio.model.registry import get_model
    from recstudio.model.sampler import SharedUniformSampler, is_shared
    split = make_split(0, 20, 30, (5, 12), split_mode="loo")
    m = get_model("SASRec")(loss="sampled_softmax", sampler="shared_uniform", num_neg=7, embed_dim=8, n_layers=1,
                            n_heads=1, max_seq_len=6, dropout=0.0, quiet=True)
    m.build(DataMeta.from_split(split))
    assert isinstance(m.sampler, SharedUniformSampler)
    ds = m._get_dataset_class()(split, "train", seed=0, **m._dataset_kwargs())
    batch = next(iter(ds.loader(16, shuffle=False)))
    m.sampler.manual_seed(3)
    fast = m.training_loss(batch)
    m.sampler.manual_seed(3)
    _, neg, _ = m.sampler(None, 7, batch["target_seq"])
    assert is_shared(neg) and not is_shared(neg.contiguous())
    shared = neg[0, 0]
    hidden = m.sequence_output(batch["item_seq"])
    has = batch["target_seq"] > 0
    query, pos = hidden[has], batch["target_seq"][has]
    vectors = m.item_vectors()
    pos_score = (query * vectors[pos]).sum(-1)
    neg_score = (query[:, None, :] * vectors[shared][None, :, :]).sum(-1)  # gathered row by row
    from recstudio.model.loss import SampledSoftmaxLoss
    slow = SampledSoftmaxLoss()(pos_score, neg_score, neg_is_pos=shared[None, :] == pos[:, None])
    assert torch.allclose(fast, slow, atol=1e-5)


def test_sampler_batch_negatives_key_caps_the_in_batch_part(make_split, tmp_path):
    from recstudio.model.registry import get_model
    split = make_split(0, 20, 30, (5, 12), split_mode="loo")
    m = get_model("SASRec")(embed_dim=8, n_layers=1, n_heads=1, max_seq_len=6, batch_size=32, quiet=True, epochs=1,
                            early_stop_patience=2, eval_batch_size=16, loss="sampled_softmax", sampler="mixed",
                            num_neg=4, sampler_batch_negatives=3)
    m.fit(split, run_dir=str(tmp_path))
    assert m.sampler.batch_negatives == 3
    _, neg, _ = m.sampler(None, 4, torch.arange(1, 11))
    assert neg.shape == (10, 3 + 4)
    with pytest.raises(ConfigError, match="sampler_batch_negatives"):
        get_model("SASRec")(sampler_batch_negatives="all")
