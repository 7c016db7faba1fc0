"""Datasets over tables: in-memory batches, streamed CSV / Parquet shards, buffer shuffling."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from recstudio.data.features import Categorical, FeaturePipeline, Hashed, Numeric, TokenSeq
from recstudio.data.tables import DataFrameDataset, IterableDataFrameDataset, csv_byte_ranges
from recstudio.utils.errors import ConfigError, DataError


def table(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "row": np.arange(n),
        "user": [f"u{k}" for k in rng.integers(0, 50, n)],
        "zip": rng.integers(10000, 10099, n).astype(str),            # digits, fitted as strings
        "price": rng.normal(10, 2, n),
        "hist": ["|".join(map(str, rng.integers(1, 30, rng.integers(0, 4)))) for _ in range(n)],
        "click": rng.integers(0, 2, n),
    })


def pipeline(df):
    # "row" goes through a Numeric without scaling, so each batch says which rows it holds
    return FeaturePipeline([Numeric("row", scaling=None), Categorical("user"), Categorical("zip"),
                            Hashed("zip", buckets=16, output="zip_h"), Numeric("price"),
                            TokenSeq("hist", max_len=3, sep="|")], labels=["click"]).fit(df)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    df = table(1000)
    d = tmp_path_factory.mktemp("tables")
    df.to_csv(d / "t.csv", index=False)
    df.to_parquet(d / "t.parquet", row_group_size=64, index=False)
    return df, str(d / "t.csv"), str(d / "t.parquet")


def rows_of(batches):
    return np.concatenate([b["row"].numpy().astype(np.int64) for b in batches])


def test_dataframe_dataset_rows_batches_and_loader(files):
    df = files[0]
    pipe = pipeline(df)
    ds = DataFrameDataset(df, pipe)
    assert len(ds) == 1000 and ds[3]["hist"].shape == (3,)
    full = pipe.transform(df)
    b = ds[[5, 1]]
    assert b["user"].tolist() == full["user"][[5, 1]].tolist() and b["click"].dtype == torch.float32
    seen = rows_of(ds.loader(128, shuffle=True, seed=0))
    assert sorted(seen.tolist()) == list(range(1000)) and seen.tolist() != list(range(1000))
    default = next(iter(DataLoader(ds, batch_size=4)))                 # per-row default collation works
    assert default["hist"].shape == (4, 3)
    with pytest.raises(DataError, match="not fitted"):
        DataFrameDataset(df, FeaturePipeline([Categorical("user")]))


@pytest.mark.parametrize("which, engine", [(1, "pyarrow"), (1, "pandas"), (2, "pyarrow")])
def test_stream_equals_in_memory_transform(files, which, engine):
    df, path = files[0], files[which]
    pipe = pipeline(df)
    ds = IterableDataFrameDataset(path, pipe, batch_size=100, chunk_rows=128, csv_engine=engine)
    batches = list(ds)
    assert [len(b["row"]) for b in batches] == [100] * 10
    full = pipe.transform(df)
    for k in full:
        got = torch.cat([b[k] for b in batches]).numpy()
        np.testing.assert_array_equal(got, full[k], err_msg=k)


def test_csv_byte_ranges_cover_every_line(files):
    path = files[1]
    n_lines = sum(1 for _ in open(path, "rb")) - 1
    for parts in (1, 2, 3, 7, 50):
        header, ranges, first = csv_byte_ranges(path, parts)
        assert header.startswith("row,user")
        assert ranges[0][0] == first and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        data = open(path, "rb").read()
        counted = sum(data[a:b].count(b"\n") for a, b in ranges)
        assert counted == n_lines
        for a, _ in ranges:
            assert data[a - 1:a] == b"\n"                                   # every range starts at a line


@pytest.mark.parametrize("which", [1, 2])
def test_shards_disjoint_and_cover_all_rows_across_ranks_and_workers(files, which):
    df, path = files[0], files[which]
    pipe = pipeline(df)
    per_rank = []
    for rank in range(3):
        ds = IterableDataFrameDataset(path, pipe, batch_size=50, chunk_rows=64, shuffle_buffer=200,
                                      rank=rank, world_size=3, seed=1)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        per_rank.append(rows_of(loader))
    allrows = np.concatenate(per_rank)
    assert sorted(allrows.tolist()) == list(range(len(df)))                 # cover, no duplicate
    assert all(len(r) > 0 for r in per_rank)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(per_rank) for b in per_rank[i + 1:])


def test_buffer_shuffle_is_a_permutation_and_follows_the_epoch(files):
    df, path = files[0], files[1]
    pipe = pipeline(df)
    ds = IterableDataFrameDataset(path, pipe, batch_size=32, chunk_rows=100, shuffle_buffer=300, seed=0)
    first = rows_of(ds)
    assert sorted(first.tolist()) == list(range(1000)) and first.tolist() != list(range(1000))
    assert rows_of(ds).tolist() == first.tolist()                          # same epoch: same order
    ds.set_epoch(1)
    second = rows_of(ds)
    assert sorted(second.tolist()) == list(range(1000)) and second.tolist() != first.tolist()
    # rows travel further than one chunk: the buffer mixes chunks
    assert np.abs(first - np.arange(1000)).max() > 100
    drop = IterableDataFrameDataset(path, pipe, batch_size=300, shuffle_buffer=0, drop_last=True)
    assert [len(b["row"]) for b in drop] == [300, 300, 300]


def test_stream_errors(files, tmp_path):
    df, path = files[0], files[1]
    pipe = pipeline(df)
    with pytest.raises(DataError, match="no file"):
        IterableDataFrameDataset(str(tmp_path / "nope.csv"), pipe)
    with pytest.raises(ConfigError, match="rank and world_size"):
        IterableDataFrameDataset(path, pipe, rank=1)
    with pytest.raises(ConfigError, match="0 <= rank < world_size"):
        IterableDataFrameDataset(path, pipe, rank=3, world_size=2)
    bad = df.copy()
    bad["row"] = bad["row"].astype(object)
    bad.loc[500, "row"] = "oops"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="does not match the type"):
        list(IterableDataFrameDataset(str(tmp_path / "bad.csv"), pipe, chunk_rows=100, csv_engine="pyarrow"))
    with pytest.raises(DataError, match="'row' is numeric but got 'oops'"):
        list(IterableDataFrameDataset(str(tmp_path / "bad.csv"), pipe, chunk_rows=100))
    with pytest.raises(ConfigError, match="csv_engine='pandas'"):
        IterableDataFrameDataset(path, pipe, read_options={"dtype": {}}, csv_engine="pyarrow")
    df.drop(columns="price").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"lacks columns \['price'\]"):
        list(IterableDataFrameDataset(str(tmp_path / "short.csv"), pipe))
