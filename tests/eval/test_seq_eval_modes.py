"""Evaluation modes of sequential models on a hand-built sequence table: leave-N-out (``loo_last_n``), the
target set vs each position (``eval_targets``), every next item of a temporal test segment; exact targets,
histories and input sequences, metrics against hand computation, and leave-one-out unchanged."""
import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.data.types import EvalDataset
from recstudio.data.types.position_eval import PositionEvalDataset
from recstudio.eval import FullRankingEvaluator
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError

# user -> items in time order
TABLE = {"A": ["a1", "a2", "a3", "a4", "a5", "a6"], "B": ["b1", "b2", "b3"], "C": ["c1"], "D": ["d1", "d2"],
         "E": [f"e{k}" for k in range(1, 11)]}


def frame():
    return pd.DataFrame([(u, i, 1.0, float(t)) for u, items in TABLE.items() for t, i in enumerate(items)],
                        columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def ds():
    return from_dataframe(frame(), "u", "i", "r", "t")


def phase_items(ds, split, phase):
    """user -> items of the phase's target rows, in time order (original ids)."""
    rows = split.rows(phase)
    out = {}
    for u, i in zip(ds.decode_users(ds.users[rows]), ds.decode_items(ds.items[rows])):
        out.setdefault(str(u), []).append(str(i))
    return out


def rows_of(ds, dataset, max_seq_len=None):
    """Every row of an evaluation dataset as (user, targets, sorted history, input sequence), original ids."""
    batch = dataset[torch.arange(len(dataset))]
    users = ds.decode_users(batch[ds.uid_field].numpy())
    out = []
    for r, u in enumerate(users):
        hp, hi, tp, ti = (batch[k] for k in ("history_indptr", "history_indices", "target_indptr", "target_indices"))
        hist = sorted(str(x) for x in ds.decode_items(hi[hp[r]:hp[r + 1]].numpy()))
        tgt = sorted(str(x) for x in ds.decode_items(ti[tp[r]:tp[r + 1]].numpy()))
        seq = None
        if max_seq_len is not None:
            s = batch["item_seq"][r]
            seq = [str(x) for x in ds.decode_items(s[s > 0].numpy())]
        out.append((str(u), tgt, hist, seq))
    return out


# ---- the split ------------------------------------------------------------------------------------
def test_leave_n_out_split_targets(ds):
    split = ds.split(split_mode="loo", loo_last_n=2)
    assert phase_items(ds, split, "test") == {"A": ["a5", "a6"], "B": ["b2", "b3"], "D": ["d2"], "E": ["e9", "e10"]}
    assert phase_items(ds, split, "valid") == {"A": ["a3", "a4"], "E": ["e7", "e8"]}
    assert phase_items(ds, split, "train") == {"A": ["a1", "a2"], "B": ["b1"], "C": ["c1"], "D": ["d1"],
                                               "E": [f"e{k}" for k in range(1, 7)]}
    two = ds.split(split_mode="loo", loo_last_n=3, split_ratio=[0.9, 0.1])  # no valid phase
    assert phase_items(ds, two, "test") == {"A": ["a4", "a5", "a6"], "B": ["b2", "b3"], "D": ["d2"],
                                            "E": ["e8", "e9", "e10"]}
    assert len(two.valid) == 0


def test_loo_last_n_1_is_leave_one_out(ds):
    default, one = ds.split(split_mode="loo"), ds.split(split_mode="loo", loo_last_n=1)
    for phase in ("train", "valid", "test"):
        assert np.array_equal(default.rows(phase), one.rows(phase))
        assert np.array_equal(default.history_rows(phase), one.history_rows(phase))
    assert phase_items(ds, default, "test") == {"A": ["a6"], "B": ["b3"], "D": ["d2"], "E": ["e10"]}
    assert phase_items(ds, default, "valid") == {"A": ["a5"], "B": ["b2"], "E": ["e9"]}


def test_loo_last_n_is_validated(ds):
    with pytest.raises(ConfigError, match="loo_last_n"):
        ds.split(split_mode="loo", loo_last_n=0)


# ---- targets and histories --------------------------------------------------------------------------
def test_set_mode_last_n_as_one_target_set(ds):
    split = ds.split(split_mode="loo", loo_last_n=2)
    got = rows_of(ds, EvalDataset(split, "test", max_seq_len=4), 4)
    assert got == [("A", ["a5", "a6"], ["a1", "a2", "a3", "a4"], ["a1", "a2", "a3", "a4"]),
                   ("B", ["b2", "b3"], ["b1"], ["b1"]),
                   ("D", ["d2"], ["d1"], ["d1"]),
                   ("E", ["e10", "e9"], sorted(f"e{k}" for k in range(1, 9)), ["e5", "e6", "e7", "e8"])]


def test_each_mode_last_n_each_against_everything_before(ds):
    split = ds.split(split_mode="loo", loo_last_n=2)
    got = rows_of(ds, PositionEvalDataset(split, "test", max_seq_len=4), 4)
    assert got == [("A", ["a5"], ["a1", "a2", "a3", "a4"], ["a1", "a2", "a3", "a4"]),
                   ("A", ["a6"], ["a1", "a2", "a3", "a4", "a5"], ["a2", "a3", "a4", "a5"]),
                   ("B", ["b2"], ["b1"], ["b1"]),
                   ("B", ["b3"], ["b1", "b2"], ["b1", "b2"]),
                   ("D", ["d2"], ["d1"], ["d1"]),
                   ("E", ["e9"], sorted(f"e{k}" for k in range(1, 9)), ["e5", "e6", "e7", "e8"]),
                   ("E", ["e10"], sorted(f"e{k}" for k in range(1, 10)), ["e6", "e7", "e8", "e9"])]
    valid = rows_of(ds, PositionEvalDataset(split, "valid", max_seq_len=4), 4)  # never sees a test item
    assert valid == [("A", ["a3"], ["a1", "a2"], ["a1", "a2"]),
                     ("A", ["a4"], ["a1", "a2", "a3"], ["a1", "a2", "a3"]),
                     ("E", ["e7"], sorted(f"e{k}" for k in range(1, 7)), ["e3", "e4", "e5", "e6"]),
                     ("E", ["e8"], sorted(f"e{k}" for k in range(1, 8)), ["e4", "e5", "e6", "e7"])]


def test_each_mode_every_next_item_of_a_temporal_test_segment(ds):
    # user_entry by time, 6:2:2 -> E (10 items): train e1..e6, valid e7 e8, test e9 e10; A (6): floor(1.2) = 1 each
    split = ds.split(split_mode="user_entry", split_order="time", split_ratio=[0.6, 0.2, 0.2])
    assert phase_items(ds, split, "test")["E"] == ["e9", "e10"]
    got = {(u, t[0]): (h, s) for u, t, h, s in rows_of(ds, PositionEvalDataset(split, "test", max_seq_len=3), 3)}
    assert got[("E", "e9")] == (sorted(f"e{k}" for k in range(1, 9)), ["e6", "e7", "e8"])
    assert got[("E", "e10")] == (sorted(f"e{k}" for k in range(1, 10)), ["e7", "e8", "e9"])
    assert got[("A", "a6")] == (["a1", "a2", "a3", "a4", "a5"], ["a3", "a4", "a5"])
    assert len(got) == len(split.test)


def test_each_mode_needs_a_temporal_split(ds):
    split = ds.split(split_mode="user_entry", split_order="random", split_ratio=[0.5, 0.25, 0.25], seed=3)
    with pytest.raises(ConfigError, match="split_order='time'"):
        PositionEvalDataset(split, "test")


def test_leave_one_out_each_equals_set(ds):
    split = ds.split(split_mode="loo")
    a = EvalDataset(split, "test", max_seq_len=3)
    b = PositionEvalDataset(split, "test", max_seq_len=3)
    ba, bb = a[torch.arange(len(a))], b[torch.arange(len(b))]
    assert set(ba) == set(bb)
    for key in ba:
        assert torch.equal(ba[key], bb[key]), key


# ---- metrics ------------------------------------------------------------------------------------------
def hand_metrics(ds, rows, score):
    """hit@3 / mrr@3 / recall@3 per row by hand: rank the non-history items by score (ties: lower id)."""
    out = {"hit@3": [], "mrr@3": [], "recall@3": []}
    for _, tgt, hist, _ in rows:
        tgt_ids, hist_ids = set(ds.encode_items(tgt).tolist()), set(ds.encode_items(hist).tolist())
        ranked = sorted((i for i in range(1, ds.num_items) if i not in hist_ids), key=lambda i: (-score[i], i))[:3]
        hits = [i in tgt_ids for i in ranked]
        out["hit@3"].append(float(any(hits)))
        out["mrr@3"].append(next((1.0 / (r + 1) for r, h in enumerate(hits) if h), 0.0))
        out["recall@3"].append(sum(hits) / len(tgt_ids))
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("mode", ["set", "each"])
def test_metrics_match_hand_computation(ds, mode):
    split = ds.split(split_mode="loo", loo_last_n=2)
    dataset = (EvalDataset if mode == "set" else PositionEvalDataset)(split, "test")
    score = torch.from_numpy(np.random.default_rng(0).random(ds.num_items)).float()
    ev = FullRankingEvaluator(["hit", "mrr", "recall"], [3])
    got = ev.evaluate(dataset.loader(3), lambda b: score.expand(len(b["target_indptr"]) - 1, -1).clone())
    expected = hand_metrics(ds, rows_of(ds, dataset), score.tolist())
    assert got == pytest.approx(expected, abs=1e-9)
    assert ev.num_users == (4 if mode == "set" else 7)  # users vs target positions


def test_each_mode_masks_earlier_targets_only(ds):
    """Scores that prefer A's own items: a6's ranking has a5 masked (history) but a5's has a6 rankable."""
    split = ds.split(split_mode="loo", loo_last_n=2)
    dataset = PositionEvalDataset(split, "test")
    a5, a6 = ds.encode_items(["a5", "a6"]).tolist()
    score = torch.zeros(ds.num_items)
    score[a6], score[a5] = 2.0, 1.0
    batch = dataset[torch.arange(2)]  # A's two rows
    from recstudio.eval import topk_masked
    _, ids = topk_masked(score.expand(2, -1).clone(), batch["history_indptr"], batch["history_indices"], 2)
    assert ids[0].tolist()[:2] == [a6, a5]   # target a5 at rank 2: the later target a6 is not masked
    assert ids[1].tolist()[0] == a6          # target a6 at rank 1: a5 is history, masked


# ---- through a model ----------------------------------------------------------------------------------
def sasrec(split, **cfg):
    model = get_model("SASRec")(embed_dim=8, n_layers=1, n_heads=1, dropout=0.0, max_seq_len=4, quiet=True,
                                metrics=["hit", "ndcg", "mrr"], cutoffs=[3], early_stop_metric="mrr@3", **cfg)
    torch.manual_seed(0)
    return model.build(model.context_from(split))


def test_model_leave_one_out_metrics_unchanged(ds):
    split = ds.split(split_mode="loo")
    m_set, m_each = sasrec(split), sasrec(split, eval_targets="each")
    assert type(m_set._eval_dataset(split, "test")) is EvalDataset
    assert type(m_each._eval_dataset(split, "test")) is PositionEvalDataset
    m_each.load_state_dict(m_set.state_dict())
    assert m_set.evaluate(split, "test") == m_each.evaluate(split, "test")


def test_model_each_mode_scores_each_position(ds):
    split = ds.split(split_mode="loo", loo_last_n=2)
    model = sasrec(split, eval_targets="each")
    got = model.evaluate(split, "test")
    dataset = PositionEvalDataset(split, "test", max_seq_len=4)
    model.eval()
    with torch.no_grad():
        scores = model.score_users(dataset[torch.arange(len(dataset))])
    rows = rows_of(ds, dataset, 4)
    per_row = [hand_metrics(ds, [row], scores[r].tolist()) for r, row in enumerate(rows)]
    expected = {k: float(np.mean([p[k] for p in per_row])) for k in ("hit@3", "mrr@3")}
    assert len(rows) == 7
    assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-6)


def test_eval_targets_is_validated():
    with pytest.raises(ConfigError, match="eval_targets"):
        get_model("SASRec")(eval_targets="positions", quiet=True)
    with pytest.raises(ConfigError, match="eval_targets"):
        get_model("DeepFM")(eval_targets="each", quiet=True)
