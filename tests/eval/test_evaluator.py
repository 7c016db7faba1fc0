"""Full-ranking and sampled evaluators on tiny data, against a brute-force reference."""
import math

import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.data.types import EvalDataset, csr_to_dense
from recstudio.eval import (FullRankingEvaluator, PointwiseEvaluator, SampledRankingEvaluator, chunked_topk,
                            parse_metrics, sample_negatives, topk_masked)
from recstudio.utils.errors import ConfigError

METRIC_NAMES = ["recall", "precision", "hit", "mrr", "ndcg", "map"]


@pytest.fixture(scope="module")
def ev_data():
    """A real EvalDataset on a tiny frame (20 users x 15 items), test phase."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(0)
    rows = [(u, i, 1.0, 10 * k) for u in range(20)
            for k, i in enumerate(rng.choice(15, size=int(rng.integers(5, 12)), replace=False))]
    ds = from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t")
    ev = EvalDataset(ds.split(), "test")
    return ev, list(ev.loader(6))


def brute_metrics(scores, batches, cutoffs):
    """Per-user loops over Python lists: the definitions of docs/metrics.md, written independently."""
    sums, users, row = {}, 0, 0
    for b in batches:
        hp, hi, tp, ti = (b[k].tolist() for k in ("history_indptr", "history_indices", "target_indptr",
                                                    "target_indices"))
        for u in range(len(hp) - 1):
            s = scores[row].tolist()
            row += 1
            hist, tgt = set(hi[hp[u]:hp[u + 1]]), set(ti[tp[u]:tp[u + 1]])
            ranked = sorted((i for i in range(1, len(s)) if i not in hist), key=lambda i: (-s[i], i))
            users += 1
            for k in cutoffs:
                h = [i in tgt for i in ranked[:k]]
                n = len(tgt)
                first = next((r + 1 for r, x in enumerate(h) if x), None)
                vals = {"recall": sum(h) / n, "precision": sum(h) / k, "hit": float(any(h)),
                        "mrr": 1 / first if first else 0.0,
                        "ndcg": sum(x / math.log2(r + 2) for r, x in enumerate(h))
                        / sum(1 / math.log2(r + 2) for r in range(min(n, k))),
                        "map": sum(x * sum(h[:r + 1]) / (r + 1) for r, x in enumerate(h)) / min(n, k)}
                for m, v in vals.items():
                    sums[f"{m}@{k}"] = sums.get(f"{m}@{k}", 0.0) + v
    return {key: v / users for key, v in sums.items()}


def scores_for(batches, table):
    return torch.cat([table[b["u"]] for b in batches])


def test_full_ranking_matches_brute_force_with_ties_and_masking(ev_data):
    ev, batches = ev_data
    g = torch.Generator().manual_seed(3)
    table = torch.randint(0, 3, (ev.num_users, ev.num_items), generator=g).float()  # many ties
    cutoffs = [1, 5, 200]  # 200 > rankable items: padded with misses
    res = FullRankingEvaluator(METRIC_NAMES, cutoffs).evaluate(batches, lambda b: table[b["u"]])
    ref = brute_metrics(scores_for(batches, table), batches, cutoffs)
    assert list(res) == [f"{m}@{k}" for m in METRIC_NAMES for k in cutoffs]
    for key, v in ref.items():
        assert res[key] == pytest.approx(v, abs=1e-6), key


def test_chunked_running_topk_equals_full(ev_data):
    ev, batches = ev_data
    g = torch.Generator().manual_seed(4)
    table = torch.randint(0, 4, (ev.num_users, ev.num_items), generator=g).float()
    table[::3] = torch.randn(len(table[::3]), ev.num_items, generator=g)
    metrics = METRIC_NAMES + ["item_coverage"]
    full = FullRankingEvaluator(metrics, [1, 5, 200]).evaluate(batches, lambda b: table[b["u"]])
    for chunk in (1, 3, 7, 100):
        ev_c = FullRankingEvaluator(metrics, [1, 5, 200], item_chunk_size=chunk)
        out = ev_c.evaluate(batches, score_chunk_fn=lambda b, lo, hi: table[b["u"], lo:hi], num_items=ev.num_items)
        assert out == full, chunk
    for b in batches:  # the top-k lists themselves, not only the metrics
        ref = topk_masked(table[b["u"]], b["history_indptr"], b["history_indices"], 12)
        got = chunked_topk(lambda bb, lo, hi: table[bb["u"], lo:hi], b, ev.num_items, 12, 4)
        assert torch.equal(ref[1], got[1]) and torch.equal(ref[0], got[0])


def test_oracle_is_perfect_once_history_is_masked(ev_data):
    ev, batches = ev_data

    def oracle(b):  # history on top, then the targets: only masking makes it perfect
        hist = csr_to_dense(b["history_indptr"], b["history_indices"], ev.num_items)
        tgt = csr_to_dense(b["target_indptr"], b["target_indices"], ev.num_items)
        return 100 * hist + 10 * tgt - torch.arange(ev.num_items).float() / 100

    res = FullRankingEvaluator(["recall", "ndcg", "mrr", "hit", "map"], [15]).evaluate(batches, oracle)
    assert all(v == pytest.approx(1.0) for v in res.values()), res
    ranked_ids = FullRankingEvaluator(["hit"], [1])
    ranked_ids.evaluate(batches, lambda b: -torch.arange(ev.num_items).float().expand(len(b["u"]), -1))
    assert ranked_ids.num_users == len(ev)


def test_score_views_are_not_modified(ev_data):
    ev, batches = ev_data
    table = torch.randn(ev.num_users, ev.num_items)
    before = table.clone()
    FullRankingEvaluator(["recall"], [5]).evaluate(batches, lambda b: table[int(b["u"][0]):int(b["u"][-1]) + 1]
                                                   if bool((b["u"].diff() == 1).all()) else table[b["u"]])
    FullRankingEvaluator(["recall"], [5], item_chunk_size=4).evaluate(
        batches, score_chunk_fn=lambda b, lo, hi: table[b["u"]][:, lo:hi], num_items=ev.num_items)
    assert torch.equal(table, before)


def test_update_topk_from_precomputed_ids(ev_data):
    ev, batches = ev_data
    table = torch.randn(ev.num_users, ev.num_items)
    full = FullRankingEvaluator(["recall", "ndcg", "item_coverage"], [3, 10])
    expected = full.evaluate(batches, lambda b: table[b["u"]])
    full.reset()
    for b in batches:
        _, ids = topk_masked(table[b["u"]], b["history_indptr"], b["history_indices"], 4)  # shorter than 10
        ids10 = topk_masked(table[b["u"]], b["history_indptr"], b["history_indices"], 10)[1]
        assert torch.equal(ids, ids10[:, :4])
        full.update_topk(b, ids10, ev.num_items)
    assert full.compute() == expected


def test_no_users_and_bad_arguments():
    ev = FullRankingEvaluator(["recall"], [10])
    assert ev.evaluate([], lambda b: None) == {"recall@10": 0.0}
    assert parse_metrics(["NDCG", "hit@5"], [10, 20]) == [("ndcg", 10), ("ndcg", 20), ("hit", 5)]
    with pytest.raises(ConfigError, match="recall"):
        FullRankingEvaluator(["recal"])
    with pytest.raises(ConfigError, match="pointwise"):
        FullRankingEvaluator(["auc"])
    with pytest.raises(ConfigError, match="score_chunk_fn"):
        FullRankingEvaluator(["recall"], item_chunk_size=10).evaluate([], lambda b: None)
    with pytest.raises(ConfigError):
        FullRankingEvaluator(["recall"], [0])


# ---- sampled ranking -----------------------------------------------------------------------------
def test_sampled_candidates_are_valid(ev_data):
    ev, batches = ev_data
    sev = SampledRankingEvaluator(num_negatives=4, seed=1)
    for n, b in enumerate(batches):
        ids, is_t, valid = sev.candidates(b, ev.num_items, n)
        hp, hi, tp, ti = (b[k].tolist() for k in ("history_indptr", "history_indices", "target_indptr",
                                                    "target_indices"))
        for u in range(len(hp) - 1):
            row = ids[u][valid[u]].tolist()
            tgt, hist = set(ti[tp[u]:tp[u + 1]]), set(hi[hp[u]:hp[u + 1]])
            negs = [i for i, t in zip(row, is_t[u][valid[u]].tolist()) if not t]
            assert row == sorted(row) and len(set(row)) == len(row)
            assert set(row) - set(negs) == tgt and not set(negs) & (tgt | hist) and 0 not in row
            assert len(negs) == min(4, ev.num_items - 1 - len(tgt | hist))
        again = sev.candidates(b, ev.num_items, n)
        assert torch.equal(again[0], ids)  # seeded per (seed, batch number)


def test_sampled_saturation_popularity_and_per_target():
    hp, hi = torch.tensor([0, 3, 3]), torch.tensor([1, 2, 3])
    tp, ti = torch.tensor([0, 1, 3]), torch.tensor([4, 5, 6])
    w = torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 0, 1, 5])  # item 7 never drawn
    gen = torch.Generator().manual_seed(0)
    ids, is_t, valid = sample_negatives(hp, hi, tp, ti, w, 100, False, gen)
    assert ids[0][valid[0]].tolist() == [4, 5, 6, 8, 9]  # user 0: every available item
    assert ids[1][valid[1]].tolist() == [1, 2, 3, 4, 5, 6, 8, 9]
    ids, is_t, valid = sample_negatives(hp, hi, tp, ti, w, 2, True, gen)
    assert valid.sum(1).tolist() == [1 + 2, 2 + 4] and is_t.sum(1).tolist() == [1, 2]
    counts = torch.zeros(10)
    for s in range(200):
        ids, _, valid = sample_negatives(hp[:2], hi, tp[:2], ti[:1], w, 1, False, torch.Generator().manual_seed(s))
        counts[ids[valid]] += 1
    assert counts[7] == 0 and counts[9] > 3 * counts[8]  # proportional to the weights


def test_sampled_oracle_is_perfect_and_constant_scores_are_not(ev_data):
    ev, batches = ev_data

    def oracle(b, ids):
        tgt = csr_to_dense(b["target_indptr"], b["target_indices"], ev.num_items)
        return tgt.gather(1, ids)

    sev = SampledRankingEvaluator(["recall", "ndcg", "mrr", "hit"], [15], num_negatives=5)
    assert all(v == pytest.approx(1.0) for v in sev.evaluate(batches, oracle, ev.num_items).values())
    constant = sev.evaluate(batches, lambda b, ids: torch.zeros(ids.shape), ev.num_items)
    assert constant["mrr@15"] < 1.0  # ties go to lower item ids, not to the targets' position
    counts = torch.ones(ev.num_items)
    pev = SampledRankingEvaluator(["ndcg"], [1, 5], num_negatives=3, sampling="popularity", item_counts=counts,
                                  negatives_per="target")
    assert pev.evaluate(batches, oracle, ev.num_items)["ndcg@1"] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        SampledRankingEvaluator(sampling="popularity")
    with pytest.raises(ConfigError):
        SampledRankingEvaluator(["item_coverage"])


def test_pointwise_evaluator():
    ev = PointwiseEvaluator(["auc", "gauc", "logloss"])
    ev.update(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0]), torch.tensor([1, 1, 2]))
    ev.update(torch.tensor([0.1]), torch.tensor([1]), torch.tensor([2]))
    out = ev.compute()
    assert out["auc"] == pytest.approx(0.75) and out["gauc"] == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        PointwiseEvaluator(["ndcg"])


def test_ml100k_popularity_matches_numpy_reference(ml100k_frame):
    """Real data, many tied scores (train counts): the evaluator against a per-user numpy ranking."""
    import numpy as np
    ds = from_dataframe(ml100k_frame, "user_id", "item_id", "rating", "timestamp")
    split = ds.split()
    ev = EvalDataset(split, "test")
    counts = torch.tensor(np.asarray(split.history_matrix("valid").sum(0)).ravel(), dtype=torch.float32)
    res = FullRankingEvaluator(["recall", "ndcg", "hit"], [10]).evaluate(
        ev.loader(300), lambda b: counts.expand(len(b[ev.uid]), -1))
    hist, tgt = split.history_matrix("test").tocsr(), split.target_matrix("test").tocsr()
    c = counts.numpy().astype(np.float64)
    rec, nd, hit = [], [], []
    for u in ev.columns[ev.uid].tolist():
        h = hist.indices[hist.indptr[u]:hist.indptr[u + 1]]
        t = set(tgt.indices[tgt.indptr[u]:tgt.indptr[u + 1]].tolist())
        s = c.copy()
        s[0] = s[h] = -np.inf
        top = np.lexsort((np.arange(len(s)), -s))[:10]  # score descending, then id ascending
        hv = np.array([i in t for i in top.tolist()], dtype=float)
        rec.append(hv.sum() / len(t))
        hit.append(float(hv.any()))
        nd.append((hv / np.log2(np.arange(2, 12))).sum() / (1 / np.log2(np.arange(2, 2 + min(len(t), 10)))).sum())
    assert res["recall@10"] == pytest.approx(np.mean(rec))
    assert res["ndcg@10"] == pytest.approx(np.mean(nd))
    assert res["hit@10"] == pytest.approx(np.mean(hit))
