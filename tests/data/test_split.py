import numpy as np
import pandas as pd
import pytest

from recstudio.data import from_dataframe
from recstudio.data.split import ratio_counts
from recstudio.utils.errors import ConfigError


@pytest.fixture
def ds(ml100k_frame):
    return from_dataframe(ml100k_frame, "user_id", "item_id", "rating", "timestamp")


def check_partition(split, n):
    allrows = np.concatenate([split.train, split.valid, split.test])
    assert len(allrows) == n and len(np.unique(allrows)) == n


def test_ratio_counts_follow_recbole_rule():
    assert ratio_counts(np.array([10, 3, 2, 20, 1]), [0.8, 0.1, 0.1]).tolist() == \
        [[8, 1, 1], [1, 1, 1], [1, 0, 1], [16, 2, 2], [1, 0, 0]]
    assert ratio_counts(np.array([10]), [0.8, 0.2]).tolist() == [[8, 2]]


def test_user_entry_random(ds):
    split = ds.split()
    check_partition(split, ds.num_interactions)
    per_user = np.diff(ds.user_offsets)
    expected = ratio_counts(per_user, [0.8, 0.1, 0.1])
    for phase, k in (("train", 0), ("valid", 1), ("test", 2)):
        got = np.bincount(ds.users[split.rows(phase)], minlength=ds.num_users)
        assert (got == expected[:, k]).all()
    again = ds.split()
    assert np.array_equal(split.test, again.test)
    assert not np.array_equal(split.test, ds.split(seed=7).test)
    # validation history is train; test history is train + valid
    assert np.array_equal(split.history_rows("valid"), split.train)
    assert np.array_equal(split.history_rows("test"), np.sort(np.concatenate([split.train, split.valid])))
    hist = split.history_matrix("test")
    assert hist.multiply(split.target_matrix("test")).nnz == 0


def test_user_entry_temporal(ds):
    split = ds.split(split_order="time")
    t = ds.inter["timestamp"]
    for u in [1, 50, 400]:
        tr = t[split.train][ds.users[split.train] == u]
        te = t[split.test][ds.users[split.test] == u]
        assert tr.max() <= te.min()


def test_entry_temporal_is_global(ds):
    split = ds.split(split_mode="entry", split_order="time")
    check_partition(split, ds.num_interactions)
    t = ds.inter["timestamp"]
    assert t[split.train].max() <= t[split.valid].min() and t[split.valid].max() <= t[split.test].min()
    assert len(split.test) == 10000


def test_leave_one_out(ds):
    split = ds.split(split_mode="loo")
    assert len(split.test) == len(split.valid) == ds.num_users - 1
    last = ds.user_offsets[1:][1:] - 1  # last row of each user
    assert np.array_equal(split.test, ds.user_offsets[2:] - 1)
    assert np.array_equal(split.valid, last - 1)
    no_valid = ds.split(split_mode="loo", split_ratio=[0.9, 0.1])
    assert len(no_valid.valid) == 0 and len(no_valid.test) == ds.num_users - 1


def test_user_split_disjoint_with_fold_in(ds):
    split = ds.split(split_mode="user", fold_in_ratio=0.8)
    tr_users = set(ds.users[split.train])
    va_users = set(ds.users[split.valid]) | set(ds.users[split.valid_history])
    te_users = set(ds.users[split.test]) | set(ds.users[split.test_history])
    assert not tr_users & va_users and not tr_users & te_users and not va_users & te_users
    assert len(tr_users) + len(va_users) + len(te_users) == ds.num_users - 1
    rows = np.concatenate([split.train, split.valid, split.test, split.valid_history, split.test_history])
    assert len(np.unique(rows)) == ds.num_interactions
    u = ds.users[split.test[0]]
    n_u = np.diff(ds.user_offsets)[u]
    assert (ds.users[split.test_history] == u).sum() == int(0.8 * n_u)


def test_users_without_targets_are_not_evaluated():
    df = pd.DataFrame({"u": ["a"] * 10 + ["b"], "i": list(range(10)) + [0]})
    ds = from_dataframe(df, "u", "i")
    split = ds.split()  # b has 1 interaction: it stays in train
    assert ds.decode_users(split.eval_users("test")).tolist() == ["a"]
    assert split.summary()["test_users"] == 1


def test_temporal_split_needs_time():
    ds = from_dataframe(pd.DataFrame({"u": [1, 1], "i": [1, 2]}), "u", "i")
    with pytest.raises(ConfigError, match="needs a time field"):
        ds.split(split_order="time")
    with pytest.raises(ConfigError, match="only the split keys"):
        ds.split(min_user_inter=3)
