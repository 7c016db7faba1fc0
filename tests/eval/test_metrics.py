"""Every metric against hand-computed values; the exact top-k and its tie-break."""
import math

import pytest
import torch

from recstudio.eval import (METRICS, auc, gauc, hit, in_csr, item_coverage, logloss, mae, map_, mrr, ndcg, precision,
                            ranking_hits, recall, rmse, topk_exact, topk_masked)
from recstudio.utils.errors import ConfigError

T, F = True, False
L2, L3, L4, L5 = 1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)


def H(*rows):
    return torch.tensor(rows, dtype=torch.bool)


def approx(t, expected):
    e = torch.tensor(expected, dtype=torch.float64)
    return t.shape == e.shape and torch.allclose(t.double(), e, atol=1e-6)


# ---- ranking metrics -----------------------------------------------------------------------------
def test_recall_is_hits_over_n_rel_not_min_k():
    hits, n_rel = H([T, F, T, F, F]), torch.tensor([4])
    assert approx(recall(hits, n_rel, 1), [0.25])
    assert approx(recall(hits, n_rel, 3), [0.5])
    assert approx(recall(hits, n_rel, 2), [0.25])  # min(k, n_rel) = 2 would give 0.5: not RecBole's


def test_precision_hit_at_several_cutoffs():
    hits, n_rel = H([T, F, T, F, F], [F, F, F, F, T]), torch.tensor([4, 1])
    assert approx(precision(hits, n_rel, [1, 3, 5]), [[1.0, 2 / 3, 0.4], [0.0, 0.0, 0.2]])
    assert approx(hit(hits, n_rel, [1, 4, 5]), [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    assert precision(hits, n_rel).shape == (2, 5)  # k=None: every cutoff 1..K


def test_user_with_one_target_hit_at_rank_two():
    hits, n_rel = H([F, T, F]), torch.tensor([1])
    assert approx(mrr(hits, n_rel, [1, 2, 3]), [[0.0, 0.5, 0.5]])
    assert approx(ndcg(hits, n_rel, [1, 2, 3]), [[0.0, L3, L3]])
    assert approx(map_(hits, n_rel, [1, 2, 3]), [[0.0, 0.5, 0.5]])
    assert approx(recall(hits, n_rel, [1, 2]), [[0.0, 1.0]])
    assert approx(hit(hits, n_rel, 1), [0.0])


def test_target_not_in_top_k_gives_zero_everywhere():
    hits, n_rel = H([F, F, F]), torch.tensor([2])
    for fn in (recall, precision, hit, mrr, ndcg, map_):
        assert approx(fn(hits, n_rel, 3), [0.0]), fn.__name__


def test_n_rel_larger_than_k():
    hits, n_rel = H([T, T, F]), torch.tensor([5])
    assert approx(recall(hits, n_rel, 2), [0.4])
    assert approx(ndcg(hits, n_rel, 2), [1.0])  # IDCG over min(n_rel, k) = 2 ideal hits
    assert approx(map_(hits, n_rel, 2), [1.0])  # (1 * 1 + 1 * 1) / min(5, 2)
    assert approx(ndcg(hits, n_rel, 3), [(L2 + L3) / (L2 + L3 + L4)])
    assert approx(map_(hits, n_rel, 3), [2 / 3])  # (1 + 1 + 0) / min(5, 3)


def test_ndcg_map_mrr_hand_computed():
    hits, n_rel = H([T, F, T]), torch.tensor([3])
    assert approx(ndcg(hits, n_rel, 3), [(1 + 0.5) / (L2 + L3 + L4)])
    hits, n_rel = H([F, T, T, F]), torch.tensor([2])
    assert approx(map_(hits, n_rel, [3, 4]), [[(1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2]])
    assert approx(ndcg(hits, n_rel, 4), [(L3 + L4) / (L2 + L3)])
    hits = H([F, F, T, T])
    assert approx(mrr(hits, n_rel, [2, 3, 4]), [[0.0, 1 / 3, 1 / 3]])


def test_cutoff_larger_than_list_counts_misses():
    hits, n_rel = H([F, T]), torch.tensor([3])
    assert approx(recall(hits, n_rel, 5), [1 / 3])
    assert approx(precision(hits, n_rel, 5), [0.2])
    assert approx(ndcg(hits, n_rel, 5), [L3 / (L2 + L3 + L4)])
    assert approx(map_(hits, n_rel, 5), [(1 / 2) / 3])
    assert approx(mrr(hits, n_rel, 200), [0.5])


def test_users_without_targets_give_zero_not_nan():
    hits, n_rel = H([F, F], [T, F]), torch.tensor([0, 1])
    for fn in (recall, precision, hit, mrr, ndcg, map_):
        out = fn(hits, n_rel, [1, 2])
        assert not torch.isnan(out).any(), fn.__name__
        assert out[0].tolist() == [0.0, 0.0]


def test_bad_cutoff_rejected():
    with pytest.raises(ConfigError):
        recall(H([T]), torch.tensor([1]), 0)


def test_item_coverage():
    ids = torch.tensor([[1, 2, -1], [1, 3, 4]])
    assert item_coverage(ids, 6, 1).item() == pytest.approx(1 / 5)  # items 1..5
    assert item_coverage(ids, 6, [2, 3]).tolist() == pytest.approx([3 / 5, 4 / 5])


def test_registry_lookup_and_info():
    assert METRICS.get("NDCG") is ndcg and METRICS.get("map") is map_
    assert METRICS.info["rmse"]["higher_is_better"] is False
    assert METRICS.info["recall"]["kind"] == "ranking"
    with pytest.raises(ConfigError, match="ndcg"):
        METRICS.get("ndgc")


# ---- top-k, tie-break, masking, hits -------------------------------------------------------------
def reference_topk(row, k, masked=()):
    order = sorted((i for i in range(1, len(row)) if i not in masked), key=lambda i: (-row[i], i))
    return order[:k]


def test_topk_ties_go_to_lower_item_id():
    s = torch.tensor([[9.0, 1.0, 2.0, 2.0, 0.0, 2.0]])
    assert topk_exact(s, 2)[1].tolist() == [[0, 2]]
    assert topk_exact(s, 3)[1].tolist() == [[0, 2, 3]]  # the boundary tie: 3 wins over 5
    assert topk_exact(s, 5)[1].tolist() == [[0, 2, 3, 5, 1]]
    v, i = topk_masked(s, None, None, 3)
    assert i.tolist() == [[2, 3, 5]] and v.tolist() == [[2.0, 2.0, 2.0]]  # item 0 is never ranked


def test_topk_exact_matches_reference_on_many_ties():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 4, (50, 30), generator=g).float()
    s[:5] = torch.randn(5, 30, generator=g)  # rows without ties mixed in
    for k in (1, 3, 10, 29):
        ids = topk_masked(s, None, None, k)[1]
        assert ids.tolist() == [reference_topk(r, k) for r in s.tolist()]


def test_topk_masked_history_and_padding():
    s = torch.tensor([[0.0, 5.0, 4.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    ptr, idx = torch.tensor([0, 2, 2]), torch.tensor([1, 3])  # user 0 history {1, 3}, user 1 empty history
    v, i = topk_masked(s, ptr, idx, 5)  # k larger than the rankable items: padded with -1 / -inf
    assert i.tolist() == [[2, -1, -1, -1, -1], [3, 2, 1, -1, -1]]
    assert v[0, 1:].eq(float("-inf")).all()
    assert s[0, 1] == 5.0  # not in place by default


def test_topk_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        topk_exact(torch.tensor([[1.0, float("nan"), 0.0]]), 2)


def test_ranking_hits_and_in_csr():
    ids = torch.tensor([[5, 2, -1], [1, 9, 4]])
    ptr, idx = torch.tensor([0, 2, 5]), torch.tensor([5, 3, 9, 4, 4])  # unsorted, a duplicate target
    hits, n_rel = ranking_hits(ids, ptr, idx)
    assert hits.tolist() == [[T, F, F], [F, T, T]] and n_rel.tolist() == [2, 2]
    assert in_csr(ids, torch.tensor([0, 0, 0]), idx[:0]).sum() == 0


# ---- pointwise -----------------------------------------------------------------------------------
def brute_auc(s, y):
    pos = [a for a, b in zip(s, y) if b]
    neg = [a for a, b in zip(s, y) if not b]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_auc_with_ties():
    assert auc(torch.tensor([0.1, 0.4, 0.4, 0.8]), torch.tensor([0, 0, 1, 1])).item() == 0.875
    assert auc(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0, 1, 1])).item() == 0.5
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 5, (200,), generator=g).float()
    y = torch.randint(0, 2, (200,), generator=g)
    assert auc(s, y).item() == pytest.approx(brute_auc(s.tolist(), y.tolist()))
    assert math.isnan(auc(torch.tensor([0.3, 0.5]), torch.tensor([1, 1])).item())


def test_gauc_weights_by_samples_and_skips_one_class_users():
    s = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.3, 0.7, 0.7, 0.1])
    y = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0])
    g = torch.tensor([1, 1, 2, 2, 3, 4, 4, 4])
    # user 1: AUC 1 (2 samples); user 2: 0 (2); user 3: one class, skipped; user 4: pos .7 vs
    # negs .7 (tie, 1/2) and .1 (1) -> 0.75 (3 samples)
    assert gauc(s, y, g).item() == pytest.approx((2 * 1 + 2 * 0 + 3 * 0.75) / 7)
    assert math.isnan(gauc(torch.tensor([0.1]), torch.tensor([1]), torch.tensor([0])).item())


def test_logloss_logits_and_probabilities():
    y = torch.tensor([1.0, 0.0])
    expected = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1)))) / 2
    assert logloss(torch.tensor([2.0, -1.0]), y).item() == pytest.approx(expected)
    assert logloss(torch.sigmoid(torch.tensor([2.0, -1.0])), y, from_logits=False).item() == pytest.approx(expected)
    assert math.isfinite(logloss(torch.tensor([0.0, 1.0]), y, from_logits=False).item())  # clamped


def test_rmse_mae():
    p, t = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([2.0, 2.0, 3.0])
    assert rmse(p, t).item() == pytest.approx(math.sqrt(5 / 3))
    assert mae(p, t).item() == pytest.approx(1.0)
