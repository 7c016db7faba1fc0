"""RecBole atomic folders with knowledge-graph, link and social-network files; save / load."""
import numpy as np
import pandas as pd
import pytest

from recstudio.data import RecDataset, from_atomic, from_dataframe
from recstudio.utils.errors import DataError


@pytest.fixture
def kg_folder(tmp_path):
    f = tmp_path / "kgtoy"
    f.mkdir()
    (f / "kgtoy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                   "1\t10\t5\t1\n1\t11\t4\t2\n2\t10\t3\t3\n3\t12\t5\t4\n")
    (f / "kgtoy.link").write_text("item_id:token\tentity_id:token\n10\tm.a\n11\tm.b\n99\tm.z\n")
    (f / "kgtoy.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n"
                                "m.a\tdirected_by\tm.c\nm.b\tdirected_by\tm.c\nm.a\tgenre\tm.d\n")
    (f / "kgtoy.net").write_text("source_id:token\ttarget_id:token\n1\t2\n2\t3\n3\t77\n")
    return f


def test_kg_link_net_are_remapped(kg_folder):
    ds = from_atomic(kg_folder)
    link, kg, net = ds.extra["link"], ds.extra["kg"], ds.extra["net"]
    assert len(link) == 2  # item 99 has no interaction: dropped
    ent = ds.id_maps["entity"]
    assert ent.decode(link["entity_id"]).tolist() == ["m.a", "m.b"]
    assert ds.decode_items(link["item_id"]).tolist() == ["10", "11"]
    assert ds.id_maps["relation"].decode(kg["relation_id"]).tolist() == ["directed_by", "directed_by", "genre"]
    assert ent.decode(kg["tail_id"]).tolist() == ["m.c", "m.c", "m.d"]
    assert len(net) == 2  # user 77 is unknown
    assert ds.decode_users(net["target_id"]).tolist() == ["2", "3"]
    assert "kg rows" in ds.statistics()


def test_save_and_load_round_trip(tmp_path, tiny_frame):
    items = pd.DataFrame({"item": tiny_frame.item.unique()})
    items["emb"] = [np.arange(4, dtype=np.float32) + k for k in range(len(items))]
    ds = from_dataframe(tiny_frame, "user", "item", "rating", "ts", item_features=items)
    assert ds.item_feat["emb"].shape == (ds.num_items, 4)
    path = ds.save(tmp_path / "ds.npz")
    back = RecDataset.load(path)
    assert np.array_equal(back.inter["rating"], ds.inter["rating"])
    assert np.array_equal(back.item_feat["emb"], ds.item_feat["emb"])
    assert back.decode_users([1, 2]).tolist() == ds.decode_users([1, 2]).tolist()
    assert back.split().summary() == ds.split().summary()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable saved RecDataset"):
        RecDataset.load(path)
    assert path.exists()  # a user's file is never deleted


def test_statistics_of_bundled_ml100k():
    from recstudio.data import load_dataset
    s = load_dataset("ml-100k").statistics()
    assert (s["users"], s["items"], s["interactions"]) == (943, 1682, 100000)
    assert s["interactions per user"]["min"] == 20 and s["interactions per user"]["max"] == 737
    assert s["ratings"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    assert s["user features"]["gender"] == "token, 2 values, 0 missing"
    assert 0.6 < s["item popularity gini"] < 0.65
    assert "interactions per item" in s.table()
