"""examples/two_stage.py: a retriever's top-C re-ranked by a CTR model, evaluated by full-ranking metrics.
On tiny synthetic data: the retriever-alone numbers equal the retriever's own test metrics, the re-ranker
reorders exactly the candidates (a stub ranker scoring -item id gives the candidates in id order), and
C = k leaves recall unchanged."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples.two_stage import two_stage_metrics, train_pair  # noqa: E402
from recstudio.data import from_dataframe  # noqa: E402
from recstudio.eval.ranking import ranking_hits, ranking_metrics  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for i in rng.choice(30, size=12, replace=False):
            rows.append((f"u{u}", f"i{i}", float(1 + (u + i) % 5)))
    ds = from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r"]), user="u", item="i", rating="r")
    split = ds.split(split_mode="user_entry", split_ratio=[0.8, 0.1, 0.1], split_order="random", seed=1)
    tiny = {"epochs": 2, "batch_size": 64, "embed_dim": 8, "seed": 1}
    ret, rank, info = train_pair(split, "BPR", "DeepFM", 4.0, tiny, {**tiny, "mlp_hidden": [8]},
                                 str(tmp_path_factory.mktemp("two_stage")), ann=None)
    return split, ret, rank, info


def test_retriever_alone_matches_its_full_ranking_test_metrics(pair):
    split, ret, rank, info = pair
    m = two_stage_metrics(ret, rank, split, candidates=20, k=10, blends=[0.5])
    assert m["retriever"]["ndcg@10"] == pytest.approx(info["retriever_test"]["ndcg@10"], abs=1e-6)
    assert m["retriever"]["recall@10"] == pytest.approx(info["retriever_test"]["recall@10"], abs=1e-6)
    assert m["candidates"]["users"] == len(split.eval_users("test"))
    for name in ("two_stage", "blend_0.5"):
        assert 0 <= m[name]["ndcg@10"] <= 1 and m[name]["recall@10"] <= m["candidates"]["recall@20"] + 1e-9


def test_with_k_candidates_reranking_keeps_the_recall(pair):
    split, ret, rank, _ = pair
    m = two_stage_metrics(ret, rank, split, candidates=10, k=10)
    assert m["two_stage"]["recall@10"] == pytest.approx(m["retriever"]["recall@10"], abs=1e-9)


def test_the_ranker_reorders_the_candidates(pair):
    split, ret, _, _ = pair
    stub = SimpleNamespace(meta=SimpleNamespace(uid_field=ret.meta.uid_field), device=torch.device("cpu"),
                           eval=lambda: None, score_candidates=lambda batch, state, items: -items.float())
    got = two_stage_metrics(ret, stub, split, candidates=15, k=5)
    # by hand: the retriever's top 15, sorted by item id ascending, the first 5
    ndcg, recall, n = 0.0, 0.0, 0
    for batch in ret._eval_dataset(split, "test").loader(256):
        _, cand = ret.topk_items(batch, 15)
        ids = torch.sort(torch.where(cand > 0, cand, torch.full_like(cand, 10**9)), 1).values[:, :5]
        ids = torch.where(ids == 10**9, torch.full_like(ids, -1), ids)
        hits, n_rel = ranking_hits(ids, batch["target_indptr"], batch["target_indices"])
        m = ranking_metrics(hits, n_rel, {"ndcg": [5], "recall": [5]})
        ndcg, recall, n = ndcg + float(m["ndcg"].sum()), recall + float(m["recall"].sum()), n + len(ids)
    assert got["two_stage"]["ndcg@5"] == pytest.approx(ndcg / n, abs=1e-9)
    assert got["two_stage"]["recall@5"] == pytest.approx(recall / n, abs=1e-9)
    with pytest.raises(ValueError, match="candidates"):
        two_stage_metrics(ret, stub, split, candidates=3, k=5)


def test_sampled_negatives_are_unseen_non_clicks_in_their_phase(pair):
    from examples.two_stage import with_sampled_negatives
    split = pair[0]
    neg = with_sampled_negatives(split, 2, seed=3)
    ds, nds = split.dataset, neg.dataset
    assert len(neg.test) == len(split.test) and nds.num_items == ds.num_items
    assert len(split.train) < len(neg.train) <= 3 * len(split.train)
    seen = ds.interaction_matrix().tocsr()
    fake = nds.inter["r"][neg.train] == 0
    u, i = nds.users[neg.train][fake], nds.items[neg.train][fake]
    assert fake.sum() == len(neg.train) - len(split.train) and np.asarray(seen[u, i]).ravel().sum() == 0
    assert len(neg.test_history) == len(split.test_history)           # histories hold real rows only
    assert np.all(np.diff(nds.users) >= 0)
