"""Truncated recall@k = hits@k / min(k, n_rel) (Liang et al. 2018; Steck 2019) against hand-computed values."""
import pytest
import torch

from recstudio.eval import METRICS, higher_is_better, recall, ranking_metrics
from recstudio.eval.ranking import recall_trunc
from recstudio.eval.evaluator import _Accumulator, parse_metrics

T, F = True, False


def H(*rows):
    return torch.tensor(rows, dtype=torch.bool)


def approx(t, expected):
    e = torch.tensor(expected, dtype=torch.float64)
    return t.shape == e.shape and torch.allclose(t.double(), e, atol=1e-6)


def test_denominator_is_min_of_k_and_n_rel():
    hits, n_rel = H([T, F, T, F, F]), torch.tensor([4])
    assert approx(recall_trunc(hits, n_rel, 1), [1.0])    # 1 hit / min(1, 4)
    assert approx(recall_trunc(hits, n_rel, 2), [0.5])    # 1 / min(2, 4)
    assert approx(recall_trunc(hits, n_rel, 3), [2 / 3])  # 2 / min(3, 4)
    assert approx(recall_trunc(hits, n_rel, 5), [0.5])    # 2 / min(5, 4) = 2 / 4
    assert approx(recall(hits, n_rel, 2), [0.25])         # RecBole's recall divides by n_rel


def test_several_users_and_cutoffs():
    hits = H([T, T, F, F], [F, F, F, T], [F, F, F, F])
    n_rel = torch.tensor([2, 1, 3])
    # user 0: k=1 1/1, k=2 2/2, k=4 2/2; user 1: k=1 0, k=2 0, k=4 1/1; user 2: misses
    assert approx(recall_trunc(hits, n_rel, [1, 2, 4]), [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert approx(ranking_metrics(hits, n_rel, {"recall_trunc": [2]})["recall_trunc"], [[1.0], [0.0], [0.0]])


def test_equals_recall_when_n_rel_at_most_k_and_cutoff_beyond_list():
    hits, n_rel = H([F, T, T]), torch.tensor([3])
    assert approx(recall_trunc(hits, n_rel, 3), recall(hits, n_rel, 3).tolist())
    assert approx(recall_trunc(hits, n_rel, 10), [2 / 3])  # ranks past the list are misses


def test_user_without_targets_gives_zero():
    assert approx(recall_trunc(H([F, F]), torch.tensor([0]), 2), [0.0])


def test_registered_and_usable_by_name():
    assert "recall_trunc" in METRICS and higher_is_better("recall_trunc@20")
    assert METRICS.info["recall_trunc"]["kind"] == "ranking"
    assert parse_metrics(["recall_trunc@20"], [10]) == [("recall_trunc", 20)]


def test_accumulator_averages_users_with_targets():
    acc = _Accumulator(parse_metrics(["recall_trunc@2", "recall@2"], [10]))
    acc.update(H([T, T], [F, F], [F, T]), torch.tensor([3, 1, 0]))  # the third user has no target: left out
    out = acc.compute()
    assert out["recall_trunc@2"] == pytest.approx((1.0 + 0.0) / 2)  # 2 / min(2, 3) and 0
    assert out["recall@2"] == pytest.approx((2 / 3 + 0.0) / 2)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
