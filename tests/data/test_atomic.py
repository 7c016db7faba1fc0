import numpy as np
import pandas as pd
import pytest

from recstudio.data.atomic import AtomicTable, find_atomic_files, read_atomic, read_atomic_folder, write_atomic
from recstudio.data.fields import FieldType as F
from recstudio.data.fields import parse_header
from recstudio.utils.errors import DataError


def test_round_trip_all_types(tmp_path):
    t = AtomicTable(pd.DataFrame({"user_id": ["a", "b"], "item_id": [1, 2], "rating": [1.0, 2.5],
                                  "genre": [["x", "y"], "z"], "emb": [[0.5, 1.5], [2.0, 3.0]]}),
                    {"user_id": F.TOKEN, "item_id": F.TOKEN, "rating": F.FLOAT, "genre": F.TOKEN_SEQ,
                     "emb": F.FLOAT_SEQ})
    path = write_atomic(tmp_path / "d" / "d.inter", t)
    assert path.read_text().splitlines()[0] == \
        "user_id:token\titem_id:token\trating:float\tgenre:token_seq\temb:float_seq"
    back = read_atomic(path)
    assert list(back.types.values()) == [F.TOKEN, F.TOKEN, F.FLOAT, F.TOKEN_SEQ, F.FLOAT_SEQ]
    assert back.frame["user_id"].astype(str).tolist() == ["a", "b"]
    assert back.frame["rating"].tolist() == [1.0, 2.5]
    assert back.frame["genre"].tolist() == ["x y", "z"]
    assert back.frame["emb"].tolist() == ["0.5 1.5", "2.0 3.0"]
    assert not list(tmp_path.glob("d/*.part"))


def test_recbole_style_folder(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n")
    (folder / "toy.item").write_text("item_id:token\tclass:token_seq\n10\tAction Drama\n11\tComedy\n")
    files = find_atomic_files(folder)
    assert set(files) == {"inter", "item"}
    tables = read_atomic_folder(folder)
    assert len(tables["inter"]) == 3 and tables["item"].types["class"] == F.TOKEN_SEQ


def test_custom_seq_and_field_separators(tmp_path):
    p = tmp_path / "x.item"
    p.write_text("item_id:token,class:token_seq\n1,a|b\n")
    t = read_atomic(p, field_separator=",", seq_separator="|")
    assert t.frame["class"].tolist() == ["a|b"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_atomic(tmp_path / "nope.inter")


def test_wrong_separator_one_column(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token,item_id:token\n1,2\n")
    with pytest.raises(DataError, match="one column.*separated by ','"):
        read_atomic(p)


def test_unknown_header_type(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:tokn\n1\t2\n")
    with pytest.raises(DataError, match="unknown type 'tokn'.*Did you mean 'token'"):
        read_atomic(p)


def test_header_without_type():
    with pytest.raises(DataError, match="has no type"):
        parse_header(["user_id", "item_id:token"], "x")


def test_duplicate_header_names(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\tuser_id:token\n1\t2\n")
    with pytest.raises(DataError, match="appears twice"):
        read_atomic(p)


def test_non_numeric_rating(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t5\n1\t3\tgood\n")
    with pytest.raises(DataError, match="non-numeric"):
        read_atomic(p)


def test_ragged_row(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\n1\t2\n1\n")
    with pytest.raises(DataError, match="number of columns"):
        read_atomic(p)


def test_write_refuses_separator_in_value_and_leaves_nothing(tmp_path):
    t = AtomicTable(pd.DataFrame({"user_id": ["a\tb"]}), {"user_id": F.TOKEN})
    with pytest.raises(DataError, match="field separator"):
        write_atomic(tmp_path / "x.inter", t)
    assert list(tmp_path.iterdir()) == []


def test_write_keeps_old_file_on_failure(tmp_path):
    good = AtomicTable(pd.DataFrame({"user_id": ["a"]}), {"user_id": F.TOKEN})
    path = write_atomic(tmp_path / "x.user", good)
    bad = AtomicTable(pd.DataFrame({"user_id": ["a\nb"]}), {"user_id": F.TOKEN})
    with pytest.raises(DataError):
        write_atomic(path, bad)
    assert path.read_text() == "user_id:token\na\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.user"]


def test_load_subset_of_fields(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\tnote:token\n1\t2\tx\n")
    t = read_atomic(p, fields=["user_id", "item_id"])
    assert list(t.frame.columns) == ["user_id", "item_id"]
    with pytest.raises(DataError, match="not in the header"):
        read_atomic(p, fields=["price"])
