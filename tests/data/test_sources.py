import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recstudio.data import from_csr, from_csv, from_dataframe
from recstudio.utils.errors import DataError


def test_from_dataframe_does_not_modify_input(tiny_frame):
    before = tiny_frame.copy()
    from_dataframe(tiny_frame, "user", "item", "rating", "ts", min_user_inter=4)
    pd.testing.assert_frame_equal(tiny_frame, before)


def test_from_dataframe_missing_column_suggests(tiny_frame):
    with pytest.raises(DataError, match="no column 'users'.*Did you mean 'user'"):
        from_dataframe(tiny_frame, user="users", item="item")


def test_from_csv_with_mapping(tmp_path, tiny_frame):
    p = tmp_path / "r.csv"
    tiny_frame.rename(columns={"user": "userId", "item": "movieId"}).to_csv(p, index=False)
    ds = from_csv(p, user="userId", item="movieId", rating="rating", time="ts")
    ref = from_dataframe(tiny_frame, "user", "item", "rating", "ts")
    assert ds.num_interactions == ref.num_interactions and ds.name == "r"
    assert set(ds.decode_users(ds.users)) == set(tiny_frame.user)


def test_from_csv_without_header(tmp_path):
    p = tmp_path / "r.tsv"
    p.write_text("1\t10\t5\n2\t10\t3\n")
    ds = from_csv(p, user="u", item="i", rating="r", sep="\t", header=None, names=["u", "i", "r"])
    assert ds.num_interactions == 2


def test_from_csv_wrong_separator_and_missing_file(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("u;i\n1;2\n")
    with pytest.raises(DataError, match="found one column"):
        from_csv(p, user="u", item="i")
    with pytest.raises(DataError, match="does not exist"):
        from_csv(tmp_path / "nope.csv")


def test_from_csr_keeps_original_ids():
    m = sp.csr_matrix(np.array([[0, 2.0, 0], [1.0, 0, 3.0]]))
    ds = from_csr(m, user_ids=["alice", "bob"], item_ids=["x", "y", "z"])
    assert ds.num_interactions == 3
    mat = ds.interaction_matrix(value="rating")
    b = ds.encode_users(["bob"])[0]
    z = ds.encode_items(["z"])[0]
    assert mat[b, z] == 3.0
    with pytest.raises(DataError, match="has 2 entries"):
        from_csr(m, item_ids=["x", "y"])
