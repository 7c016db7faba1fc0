"""Session data (anonymous sessions, no user id): the session_field config, session-wise splits (no session in
two phases, time order of the last event, last-days variant, items unseen in training dropped), the atomic form
(``session_id:token``), and the session models training and evaluating on it while user-id models refuse."""
import numpy as np
import pandas as pd
import pytest
import torch

from recstudio.data import from_dataframe
from recstudio.data.sessions import check_session_model, is_session_data
from recstudio.data.types.position_eval import PositionEvalDataset
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError, DataError

SESSION_MODELS = ["NARM", "STAMP", "SRGNN", "GCSAN", "RepeatNet"]


def sessions_frame(n_sessions=40, n_items=12, seed=0):
    """Sessions of 2-6 items; session k ends at time ~k hours (so time order = id order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        for j in range(int(rng.integers(2, 7))):
            rows.append((f"s{s}", f"i{int(rng.integers(n_items))}", s * 3600.0 + j))
    return pd.DataFrame(rows, columns=["session", "item", "ts"])


def hand_frame():
    # session -> items in time order; sessions end at 10, 20, 30, 40, 50 (s4 at the latest)
    table = {"s0": "abc", "s1": "bcd", "s2": "ab", "s3": "caxb", "s4": "bxyc"}
    rows = [(s, i, 10.0 * (k + 1) - len(items) + j) for k, (s, items) in enumerate(table.items())
            for j, i in enumerate(items)]
    return pd.DataFrame(rows, columns=["session", "item", "ts"])


def decoded(ds, rows):
    out = {}
    for s, i in zip(ds.decode_users(ds.users[rows]), ds.decode_items(ds.items[rows])):
        out.setdefault(str(s), []).append(str(i))
    return out


@pytest.fixture(scope="module")
def hand():
    return from_dataframe(hand_frame(), item="item", time="ts", session_field="session")


def test_session_field_takes_the_user_role(hand):
    assert is_session_data(hand)
    assert hand.uid_field == "session" and hand.config["user_field"] == "session"
    assert sorted(hand.id_maps["user"].tokens.tolist()) == ["s0", "s1", "s2", "s3", "s4"]
    with pytest.raises(ConfigError, match="either user"):
        from_dataframe(hand_frame(), user="item", item="item", session_field="session")


def test_session_split_by_time_of_last_event_each_target(hand):
    split = hand.split(split_mode="session", split_order="time", split_ratio=[0.6, 0.2, 0.2])
    assert decoded(hand, split.train) == {"s0": list("abc"), "s1": list("bcd"), "s2": list("ab")}
    # s3 'caxb': x never seen in training -> dropped; c is the input, a and b the targets (each prefix)
    assert decoded(hand, split.valid_history) == {"s3": ["c"]}
    assert decoded(hand, split.valid) == {"s3": ["a", "b"]}
    # s4 'bxyc': x, y unseen -> b -> c
    assert decoded(hand, split.test_history) == {"s4": ["b"]}
    assert decoded(hand, split.test) == {"s4": ["c"]}


def test_loo_on_sessions_is_session_wise_last_item(hand):
    split = hand.split(split_mode="loo", split_order="time", split_ratio=[0.6, 0.2, 0.2])
    assert decoded(hand, split.valid) == {"s3": ["b"]} and decoded(hand, split.valid_history) == {"s3": ["c", "a"]}
    assert decoded(hand, split.test) == {"s4": ["c"]}
    two = hand.split(split_mode="loo", loo_last_n=2, split_order="time", split_ratio=[0.6, 0.2, 0.2])
    assert decoded(hand, two.valid) == {"s3": ["a", "b"]}


def test_other_split_modes_refused_on_sessions(hand):
    with pytest.raises(ConfigError, match="session-wise"):
        hand.split(split_mode="user_entry")
    plain = from_dataframe(hand_frame(), user="session", item="item", time="ts")
    with pytest.raises(ConfigError, match="session_field"):
        plain.split(split_mode="session")


def test_no_session_in_two_phases_and_time_order():
    ds = from_dataframe(sessions_frame(200), item="item", time="ts", session_field="session")
    for order in ("time", "random"):
        split = ds.split(split_mode="session", split_order=order, split_ratio=[0.8, 0.1, 0.1], seed=3)
        phases = [set(ds.users[r]) for r in (split.train, np.r_[split.valid, split.valid_history],
                                             np.r_[split.test, split.test_history])]
        assert not phases[0] & phases[1] and not phases[0] & phases[2] and not phases[1] & phases[2]
        assert len(phases[0]) == 160
        # every evaluated item was seen in training
        seen = set(ds.items[split.train])
        assert set(ds.items[split.test]) <= seen and set(ds.items[split.test_history]) <= seen
    split = ds.split(split_mode="session", split_order="time", split_ratio=[0.8, 0.1, 0.1])
    end = {s: ds.inter["ts"][ds.user_offsets[s + 1] - 1] for s in range(1, ds.num_users)}
    last_train = max(end[s] for s in set(ds.users[split.train]))
    assert all(end[s] > last_train for s in set(ds.users[split.test]))


def test_last_days_variant():
    df = sessions_frame(48)
    df["ts"] = df["ts"] * 12  # session k ends ~k half-days
    ds = from_dataframe(df, item="item", time="ts", session_field="session")
    split = ds.split(split_mode="session", session_test_days=2, split_ratio=[0.8, 0.1, 0.1])
    kept = pd.DataFrame({"session": ds.decode_users(ds.users), "ts": ds.inter["ts"]})  # after dedup
    t_max = kept["ts"].max()
    end = kept.groupby("session")["ts"].max()
    test_sessions = set(ds.decode_users(ds.users[np.r_[split.test, split.test_history]]).tolist())
    valid_sessions = set(ds.decode_users(ds.users[np.r_[split.valid, split.valid_history]]).tolist())
    assert test_sessions and test_sessions <= set(end[end > t_max - 2 * 86400].index)
    assert valid_sessions <= set(end[(end > t_max - 4 * 86400) & (end <= t_max - 2 * 86400)].index)
    with pytest.raises(ConfigError, match="session_test_days"):
        ds.split(split_mode="session", session_test_days=-1)


def test_too_few_sessions_is_a_clear_error(hand):
    with pytest.raises(DataError, match="no test session"):
        hand.split(split_mode="session", split_order="time", split_ratio=[0.9, 0.05, 0.05])


def test_atomic_session_file(tmp_path):
    folder = tmp_path / "toy_sessions"
    folder.mkdir()
    df = sessions_frame(30)
    lines = ["session_id:token\titem_id:token\ttimestamp:float"] + [f"{s}\t{i}\t{t}" for s, i, t in df.itertuples(
        index=False)]
    (folder / "toy_sessions.inter").write_text("\n".join(lines) + "\n")
    from recstudio.data import from_atomic
    ds = from_atomic(folder, session_field="session_id", cache=False, dedup="all")  # repeated clicks kept
    assert is_session_data(ds) and ds.uid_field == "session_id" and ds.num_interactions == len(df)
    split = ds.split(split_mode="session", split_order="time")
    assert len(split.test) > 0


# ---- models -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy():
    return from_dataframe(sessions_frame(60), item="item", time="ts", session_field="session")


TINY = {"NARM": {"hidden_dim": 8}, "STAMP": {}, "SRGNN": {}, "GCSAN": {"n_layers": 1, "n_heads": 1, "ffn_dim": 8},
        "RepeatNet": {"hidden_dim": 8}}


@pytest.mark.parametrize("name", SESSION_MODELS)
def test_session_models_train_and_evaluate(toy, name, tmp_path):
    split = toy.split(split_mode="session", split_order="time", split_ratio=[0.7, 0.15, 0.15])
    torch.manual_seed(0)
    model = get_model(name)(embed_dim=8, max_seq_len=6, epochs=1, batch_size=16, eval_targets="each", quiet=True,
                            num_threads=1, **TINY[name])
    metrics = model.fit(split, run_dir=tmp_path)
    assert "ndcg@10" in metrics and np.isfinite(metrics["ndcg@10"])
    # no table has a row per session id (no user embedding)
    n = toy.num_users
    assert not [k for k, v in model.state_dict().items() if v.dim() and v.shape[0] == n]
    # one ranking per target: every item after a test session's first
    assert len(PositionEvalDataset(split, "test", max_seq_len=6)) == len(split.test)


def test_user_models_refuse_sessions(toy, tmp_path):
    split = toy.split(split_mode="session", split_order="time", split_ratio=[0.7, 0.15, 0.15])
    model = get_model("BPR")(embed_dim=8, epochs=1, quiet=True)
    with pytest.raises(ConfigError, match=r"BPR learns per-user parameters .*anonymous sessions"):
        model.fit(split, run_dir=tmp_path)


def test_each_position_protocol_needs_eval_targets_each(toy, tmp_path):
    split = toy.split(split_mode="session", split_order="time", split_ratio=[0.7, 0.15, 0.15])
    model = get_model("NARM")(embed_dim=8, hidden_dim=8, max_seq_len=6, epochs=1, quiet=True)
    with pytest.raises(ConfigError, match="eval_targets='each'"):
        model.fit(split, run_dir=tmp_path)
    loo = toy.split(split_mode="loo", split_order="time", split_ratio=[0.7, 0.15, 0.15])
    model.build(model.context_from(loo))
    check_session_model(model, loo)  # the last item only: 'set' is fine


# ---- converters -----------------------------------------------------------------------------------------
def test_diginetica_converter_and_registry(tmp_path):
    from recstudio.data.converters.sessions import convert_diginetica
    raw = tmp_path / "digi"
    raw.mkdir()
    rows = ["sessionId;userId;itemId;timeframe;eventdate"]
    for s in range(1, 31):  # session s on day 2016-01-(1 + s // 3); 3 views, 1 s apart
        for j in range(3):
            rows.append(f"{s};{'' if s % 2 else 7};{(s + j) % 9};{1000 * j};2016-01-{1 + s // 3:02d}")
    (raw / "train-item-views.csv").write_text("\n".join(rows) + "\n")
    inter = convert_diginetica(raw)["inter"]
    assert list(inter.types) == ["session_id", "item_id", "timestamp"]
    t = inter.frame["timestamp"].to_numpy()
    assert t[1] - t[0] == pytest.approx(1.0) and t[0] == pd.Timestamp("2016-01-01", tz="UTC").timestamp()
    from recstudio.data import load_dataset
    from recstudio.data.registry import register_dataset
    register_dataset({"name": "digi-toy", "url": None, "bundled": str(raw), "description": "toy",
                      "converter": "recstudio.data.converters.sessions:convert_diginetica",
                      "config": {"session_field": "session_id", "rating_field": None, "split_mode": "session",
                                 "split_order": "time", "session_test_days": 1, "split_ratio": [0.9, 0.1]}})
    ds = load_dataset("digi-toy", data_dir=str(tmp_path / "cache"))
    split = ds.split()
    days = set(pd.to_datetime(ds.inter["timestamp"][split.test], unit="s").day)
    assert is_session_data(ds) and days == {11}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train-item-views.csv").write_text("a;b\n1;2\n")
    with pytest.raises(DataError, match="not the DIGINETICA"):
        convert_diginetica(bad)


def test_yoochoose_and_derived_converters(tmp_path):
    from recstudio.data.converters.sessions import convert_yoochoose, derived_sessions
    (tmp_path / "yoochoose-clicks.dat").write_text(
        "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n"
        "2,2014-04-07T13:56:37.614Z,214662742,S\n")
    inter = convert_yoochoose(tmp_path)["inter"]
    assert inter.frame["timestamp"].iloc[1] - inter.frame["timestamp"].iloc[0] == pytest.approx(180.591)
    assert list(inter.types) == ["session_id", "item_id", "timestamp", "category"]
    (tmp_path / "bad.dat").write_text("1,x,2,0\n")
    with pytest.raises(DataError, match="ISO-8601"):
        convert_yoochoose(tmp_path, filename="bad.dat")
    # ml-100k user histories cut at 30-minute gaps: user 1's first sessions
    tables = derived_sessions("datasets/ml-100k", "movielens_100k")
    df = tables["inter"].frame
    assert "user_id" not in df.columns and "user" not in tables and len(df) == 100000
    raw = pd.read_csv("datasets/ml-100k/u.data", sep="\t", names=["u", "i", "r", "t"])
    for uid in (1, 196):
        t = np.sort(raw.loc[raw.u == uid, "t"].to_numpy())
        expected = int((np.diff(t) > 1800).sum()) + 1
        assert df["session_id"].str.startswith(f"{uid}-").sum() == len(t)
        assert df.loc[df["session_id"].str.startswith(f"{uid}-"), "session_id"].nunique() == expected


@pytest.mark.parametrize("name,refused", [("Caser", "user_embedding"), ("LightGCN", "query_encoder.embedding"),
                                          ("FPMC", "user"), ("GRU4Rec", None), ("SASRec", None), ("EASE", None),
                                          ("ItemKNN", None)])
def test_which_models_run_on_sessions(toy, name, refused):
    split = toy.split(split_mode="loo", split_order="time", split_ratio=[0.7, 0.15, 0.15])
    model = get_model(name)(quiet=True)
    model.build(model.context_from(split))
    if refused is None:
        check_session_model(model, split)  # encodes a session from its items
    else:
        with pytest.raises(ConfigError, match=f"{name} learns per-user parameters .*{refused}"):
            check_session_model(model, split)
