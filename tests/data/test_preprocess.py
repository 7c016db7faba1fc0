import numpy as np
import pandas as pd
import pytest

from recstudio.data import from_dataframe
from recstudio.data.preprocess import dedup_rows, kcore_rows, scale
from recstudio.utils.errors import ConfigError, DataError


def frame(rows, cols=("u", "i", "r", "t")):
    return pd.DataFrame(rows, columns=list(cols))


def test_remap_reserves_zero_and_keeps_id_maps(tiny_frame):
    ds = from_dataframe(tiny_frame, "user", "item", "rating", "ts")
    assert ds.users.min() == 1 and ds.items.min() == 1
    assert ds.num_users == tiny_frame.user.nunique() + 1
    assert ds.num_items == tiny_frame.item.nunique() + 1
    # every interaction maps back to its original ids
    back = pd.DataFrame({"user": ds.decode_users(ds.users), "item": ds.decode_items(ds.items)})
    orig = set(map(tuple, tiny_frame[["user", "item"]].to_numpy()))
    assert set(map(tuple, back.to_numpy())) == orig
    with pytest.raises(DataError, match="unknown user ids"):
        ds.encode_users(["nobody"])


def test_sorted_by_user_then_time():
    ds = from_dataframe(frame([("a", 1, 5, 30), ("b", 1, 5, 10), ("a", 2, 5, 10), ("a", 3, 5, 20)]),
                        "u", "i", "r", "t")
    a = ds.encode_users(["a"])[0]
    rows = slice(ds.user_offsets[a], ds.user_offsets[a + 1])
    assert ds.decode_items(ds.items[rows]).tolist() == [2, 3, 1]
    assert np.all(np.diff(ds.users) >= 0)


def test_rating_threshold_and_binarize():
    df = frame([("a", 1, 5, 1), ("a", 2, 2, 2), ("b", 1, 4, 3)])
    ds = from_dataframe(df, "u", "i", "r", "t", rating_threshold=4, binarize=True)
    assert ds.num_interactions == 2
    assert set(ds.inter["r"].tolist()) == {1.0}


def test_threshold_emptying_dataset_names_filter_and_counts():
    df = frame([("a", 1, 1, 1), ("b", 2, 2, 2)])
    with pytest.raises(DataError, match=r"rating_threshold=4 removed every interaction \(2 before, 0 after\)"):
        from_dataframe(df, "u", "i", "r", "t", rating_threshold=4)


def test_kcore_emptying_dataset():
    df = frame([("a", 1, 1, 1), ("b", 2, 2, 2)])
    with pytest.raises(DataError, match=r"k-core filter \(min_user_inter=3.*\(2 before, 0 after\)"):
        from_dataframe(df, "u", "i", "r", "t", min_user_inter=3)


@pytest.mark.parametrize("keep,expected", [("first", 10.0), ("last", 30.0)])
def test_dedup_by_time(keep, expected):
    df = frame([("a", 1, 3, 30), ("a", 1, 5, 10), ("a", 1, 4, 20), ("a", 2, 1, 5)])
    ds = from_dataframe(df, "u", "i", "r", "t", dedup=keep)
    assert ds.num_interactions == 2
    i1 = ds.encode_items([1])[0]
    assert ds.inter["t"][ds.items == i1].tolist() == [expected]


def test_dedup_all_keeps_repeats():
    df = frame([("a", 1, 3, 30), ("a", 1, 5, 10)])
    assert from_dataframe(df, "u", "i", "r", "t", dedup="all").num_interactions == 2


def test_dedup_without_time_uses_file_order():
    mask = dedup_rows(np.array([7, 7, 8, 7]), None, "last")
    assert mask.tolist() == [False, False, True, True]


def test_kcore_is_iterative():
    # item 3 has 1 interaction; removing it drops user c below 2, which drops item 2 below 2 ...
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 0, 1, 1, 3])
    kept = kcore_rows(users, items, 2, 2)
    assert kept.tolist() == [0, 1, 2, 3]


def test_kcore_on_dataset(ml100k_frame):
    ds = from_dataframe(ml100k_frame, "user_id", "item_id", "rating", "timestamp",
                        min_user_inter=20, min_item_inter=20)
    per_user = np.bincount(ds.users)[1:]
    per_item = np.bincount(ds.items)[1:]
    assert per_user.min() >= 20 and per_item.min() >= 20


def test_time_parsing_text_and_datetime():
    df = frame([("a", 1, 5, "2020-01-02 00:00:00"), ("a", 2, 5, "2020-01-01 00:00:00")])
    ds = from_dataframe(df, "u", "i", "r", "t", time_format="%Y-%m-%d %H:%M:%S")
    assert ds.inter["t"].tolist() == [1577836800.0, 1577923200.0]
    df2 = df.assign(t=pd.to_datetime(df.t))
    assert from_dataframe(df2, "u", "i", "r", "t").inter["t"].tolist() == [1577836800.0, 1577923200.0]
    with pytest.raises(DataError, match="cannot parse time field 't'"):
        from_dataframe(df.assign(t=["yesterday", "today"]), "u", "i", "r", "t")


def test_non_numeric_rating_in_dataframe():
    with pytest.raises(DataError, match="field 'r' must be numeric but row 1 holds 'great'"):
        from_dataframe(frame([("a", 1, "5", 1), ("a", 2, "great", 2)]), "u", "i", "r", "t")


def test_features_token_seq_float_scaling_and_discretisation():
    inter = frame([("a", 1, 5, 1), ("b", 2, 4, 2), ("c", 1, 3, 3)])
    items = pd.DataFrame({"i": [1, 2, 99], "genre": ["Action Comedy", "Drama", "Horror"],
                          "price": [10.0, 30.0, 5.0]})
    users = pd.DataFrame({"u": ["a", "b", "c"], "age": [10.0, 20.0, 30.0], "gender": ["F", "M", "F"]})
    ds = from_dataframe(inter, "u", "i", "r", "t", user_features=users, item_features=items,
                        float_scaling={"price": "minmax"}, discretize={"age": 3},
                        field_types={"genre": "token_seq"})
    feat = ds.item_feat
    assert len(feat) == ds.num_items  # row 0 padding, item 99 (no interaction) dropped
    i1, i2 = ds.encode_items([1, 2])
    genres = ds.id_maps["genre"]
    assert sorted(genres.decode(feat["genre"][i1][feat["genre"][i1] > 0])) == ["Action", "Comedy"]
    assert feat["genre"][0].tolist() == [0, 0]
    assert feat["price"][i1] == pytest.approx(0.0) and feat["price"][i2] == pytest.approx(1.0)
    assert ds.user_feat.types["age"].value == "token" and ds.vocab_size("age") == 4
    assert ds.vocab_size("gender") == 3
    # lists in a DataFrame column are sequences without declaring them
    ds2 = from_dataframe(inter, "u", "i", "r", "t",
                         item_features=items.assign(genre=[["Action", "Comedy"], ["Drama"], []]))
    assert (ds2.item_feat["genre"] > 0).sum(axis=1).tolist() == [0, 2, 1]


def test_unknown_scaling_field_suggests():
    with pytest.raises(ConfigError, match="no table has.*'r'"):
        from_dataframe(frame([("a", 1, 5, 1)]), "u", "i", "r", "t", float_scaling={"rr": "log"})


def test_scale_functions():
    assert scale(np.array([1.0, 3.0]), "standard", "x").tolist() == [-1.0, 1.0]
    assert np.allclose(scale(np.array([0.0, np.e - 1]), "log", "x"), [0, 1])
    with pytest.raises(DataError, match="> -1"):
        scale(np.array([-2.0]), "log", "x")


def test_missing_rating_field_with_threshold_is_an_error():
    df = pd.DataFrame({"u": [1], "i": [2]})
    with pytest.raises(Exception, match="no column 'stars'"):
        from_dataframe(df, "u", "i", rating="stars", rating_threshold=3)
