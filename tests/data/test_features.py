"""The feature pipeline: vocabularies and growth, hashing, running statistics, buckets, sequences, errors."""
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recstudio.data.features import (Bucketized, Categorical, FeaturePipeline, Hashed, Numeric, RunningStats,
                                     TokenSeq, grow_embedding, grow_field_embedding)
from recstudio.model.module.field_embedding import FieldEmbedding
from recstudio.model.module.pooling import SequencePooling
from recstudio.utils.errors import ConfigError, DataError


def frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": [f"u{k}" for k in rng.integers(0, 30, n)],
        "item": rng.integers(100, 140, n),
        "device": [f"d{k}" for k in rng.integers(0, 1000, n)],
        "price": rng.lognormal(2.0, 1.0, n),
        "age": rng.normal(40, 10, n),
        "hist": ["|".join(f"i{j}" for j in rng.integers(0, 20, rng.integers(0, 6))) for _ in range(n)],
        "click": rng.integers(0, 2, n),
    })


def make_pipeline():
    return FeaturePipeline([
        Categorical("user", min_freq=2), Categorical("item"), Hashed("device", buckets=64),
        Numeric("price", scaling="standard", log=True), Numeric("age", scaling="minmax", output="age_mm"),
        Bucketized("age", bins=5, strategy="quantile"), TokenSeq("hist", max_len=4, sep="|"),
    ], labels=["click"])


# -- running statistics ---------------------------------------------------------------------------------
def test_running_stats_equal_batch_stats_in_any_chunking():
    x = np.random.default_rng(1).normal(5.0, 3.0, 10_001)
    for cuts in ([10_001], [1, 10_000], [17, 500, 3000, 6484], list(np.full(100, 100)) + [1]):
        s = RunningStats()
        for part in np.split(x, np.cumsum(cuts)[:-1]):
            s.update(part)
        assert s.n == x.size
        assert s.mean == pytest.approx(x.mean(), rel=1e-12)
        assert s.var == pytest.approx(x.var(), rel=1e-10)
        assert (s.min, s.max) == (x.min(), x.max())
    a, b = RunningStats().update(x[:300]), RunningStats().update(x[300:])
    assert a.merge(b).var == pytest.approx(x.var(), rel=1e-10)


def test_numeric_partial_fit_equals_fit_on_all():
    df = frame(500)
    whole = FeaturePipeline([Numeric("price", log=True), Numeric("age", scaling="minmax")]).fit(df)
    parts = FeaturePipeline([Numeric("price", log=True), Numeric("age", scaling="minmax")]).fit(df.iloc[:100])
    for s in (slice(100, 101), slice(101, 350), slice(350, None)):
        parts.partial_fit(df.iloc[s])
    a, b = whole.transform(df), parts.transform(df)
    np.testing.assert_allclose(a["price"], b["price"], rtol=1e-5)
    np.testing.assert_allclose(a["age"], b["age"], rtol=1e-5)
    lp = np.log1p(df["price"].to_numpy())
    np.testing.assert_allclose(a["price"], (lp - lp.mean()) / lp.std(), rtol=1e-4, atol=1e-5)
    assert a["age"].min() == 0.0 and a["age"].max() == pytest.approx(1.0)


def test_numeric_missing_and_wrong_type():
    pipe = FeaturePipeline([Numeric("x")]).fit(pd.DataFrame({"x": [1.0, 3.0]}))
    assert pipe.transform(pd.DataFrame({"x": [None, 2.0, 3.0]}))["x"].tolist() == [0.0, 0.0, 1.0]
    assert pipe.transform(pd.DataFrame({"x": ["2", "3"]}))["x"].tolist() == [0.0, 1.0]   # numeric strings read
    with pytest.raises(DataError, match=r"'x' is numeric but got 'abc'"):
        pipe.transform(pd.DataFrame({"x": [1.0, "abc"]}))


# -- buckets ----------------------------------------------------------------------------------------------
def test_bucketize_uniform_and_quantile():
    x = pd.DataFrame({"v": np.arange(100, dtype=float)})
    uni = FeaturePipeline([Bucketized("v", bins=4, strategy="uniform")]).fit(x)
    ids = uni.transform(pd.DataFrame({"v": [-5.0, 0.0, 24.0, 25.0, 99.0, 500.0, None]}))["v"]
    assert ids.tolist() == [1, 1, 1, 2, 4, 4, 0]
    q = FeaturePipeline([Bucketized("v", bins=4)]).fit(pd.DataFrame({"v": np.random.default_rng(0).lognormal(size=4000)}))
    counts = np.bincount(q.transform(pd.DataFrame({"v": np.random.default_rng(0).lognormal(size=4000)}))["v"])
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 1000) <= 1)
    assert q.specs() == {"v": ("token", 5)}


def test_bucketize_reservoir_is_exact_below_sample_size_and_frozen_edges_stay():
    x = np.random.default_rng(3).normal(size=3000)
    f = Bucketized("v", bins=10, sample_size=5000)
    f.partial_fit(pd.Series(x[:1000]))
    f.partial_fit(pd.Series(x[1000:]))
    np.testing.assert_allclose(f.edges, np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
    g = Bucketized("v", bins=10, sample_size=100, freeze=True)
    g.partial_fit(pd.Series(x[:1000]))
    edges = g.edges.copy()
    g.partial_fit(pd.Series(x[1000:] + 50))
    np.testing.assert_array_equal(g.edges, edges)
    big = Bucketized("v", bins=4, sample_size=500)
    for part in np.array_split(np.random.default_rng(4).uniform(0, 1, 20_000), 7):
        big.partial_fit(pd.Series(part))
    assert big.sample.size == 500
    np.testing.assert_allclose(big.edges, [0.25, 0.5, 0.75], atol=0.07)


# -- vocabulary ------------------------------------------------------------------------------------------
def test_min_freq_oov_and_missing():
    f = Categorical("c", min_freq=2)
    f.partial_fit(pd.Series(["a", "a", "b", "c", "c", "c"]))
    assert f.transform(pd.Series(["c", "a", "b", "zzz", None]))["c"].tolist() == [2, 3, 1, 1, 0]
    assert f.size == 4


def test_vocabulary_growth_keeps_old_ids_and_counts_across_chunks():
    f = Categorical("c", min_freq=2)
    f.partial_fit(pd.Series(["a", "a", "b"]))
    before = f.transform(pd.Series(["a", "b"]))["c"].tolist()
    assert before == [2, 1]
    f.partial_fit(pd.Series(["b", "d", "d", "a"]))            # b reaches 2 over two chunks; d is new
    after = f.transform(pd.Series(["a", "b", "d", "e"]))["c"].tolist()
    assert after[0] == 2 and sorted(after[1:3]) == [3, 4] and after[3] == 1
    assert f.size == 5
    assert f.vocab.decode([0, 1, 2]).tolist() == [None, None, "a"]


def test_int_vocabulary_and_type_coercion():
    f = Categorical("item").partial_fit(pd.Series([5, 7, 7]))
    assert f.vocab.kind == "int"
    assert f.transform(pd.Series(["7", 5, None], dtype=object))["item"].tolist() == [2, 3, 0]
    assert f.transform(pd.Series([7.0, np.nan]))["item"].tolist() == [2, 0]
    with pytest.raises(DataError, match="fitted on integer values but got 'abc'"):
        f.transform(pd.Series(["abc"]))
    s = Categorical("city").partial_fit(pd.Series(["x", "7"]))
    assert s.transform(pd.Series([7]))["city"].tolist() == [2]          # ints read as their decimal text
    with pytest.raises(DataError, match="one scalar value per row"):
        s.transform(pd.Series([["x"], "x"], dtype=object))
    with pytest.raises(DataError, match="integers or strings"):
        Categorical("f").partial_fit(pd.Series([0.5, 1.0]))


def test_grow_embedding_keeps_rows():
    old = nn.Embedding(5, 3, padding_idx=0)
    new = grow_embedding(old, 9)
    assert new.num_embeddings == 9 and torch.equal(new.weight[:5], old.weight)
    assert torch.all(new.weight[0] == 0)
    with pytest.raises(ConfigError, match="cannot shrink"):
        grow_embedding(old, 3)


def test_grow_field_embedding_after_partial_fit():
    df = frame(100)
    pipe = FeaturePipeline([Categorical("user"), Numeric("price"), TokenSeq("hist", max_len=4, sep="|")]).fit(df.iloc[:20])
    emb = FieldEmbedding(pipe.specs(), dim=4)
    rows = {k: emb.embed[k].table.weight.detach().clone() for k in pipe.sizes()}
    old_ids = pipe.transform(df.iloc[:20])
    pipe.partial_fit(df.iloc[20:])
    new_ids = pipe.transform(df.iloc[:20])
    for k in pipe.sizes():
        np.testing.assert_array_equal(new_ids[k], old_ids[k])            # old values keep their ids
    grown = grow_field_embedding(emb, pipe.sizes())
    assert grown and all(emb.embed[k].table.num_embeddings == pipe.sizes()[k] for k in pipe.sizes())
    for k, w in rows.items():
        assert torch.equal(emb.embed[k].table.weight[:len(w)], w)
    out = emb({k: torch.from_numpy(v) for k, v in pipe.transform(df).items()})
    assert out.shape == (100, 3, 4)


# -- hashing ---------------------------------------------------------------------------------------------
def test_hashing_deterministic_in_range_and_stable_across_processes():
    values = pd.Series([f"v{k}" for k in range(5000)] + [None])
    f = Hashed("h", buckets=97).partial_fit(values)
    ids = f.transform(values)["h"]
    assert ids[-1] == 0 and ids[:-1].min() >= 1 and ids[:-1].max() <= 97
    assert np.array_equal(ids, Hashed("h", buckets=97).partial_fit(values).transform(values)["h"])
    assert len(np.unique(ids[:-1])) == 97                           # spreads over every bucket
    code = ("import pandas as pd; from recstudio.data.features import Hashed; "
            "print(Hashed('h', buckets=97).partial_fit(pd.Series(['v1','v2','v3'])).transform("
            "pd.Series(['v1','v2','v3']))['h'].tolist())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1", "PATH": ""})
    assert json.loads(other.stdout) == ids[1:4].tolist()
    ints = Hashed("n", buckets=10).partial_fit(pd.Series([1, 2, 3]))
    assert ints.transform(pd.Series(["2"]))["n"].tolist() == ints.transform(pd.Series([2]))["n"].tolist()


# -- sequences -------------------------------------------------------------------------------------------
def test_token_seq_latest_first_padding_truncation_and_weights():
    df = pd.DataFrame({"h": ["a|b|c|d|e", "b", "", None], "w": ["1|2|3|4|5", "0.5", "", None]})
    f = TokenSeq("h", max_len=3, sep="|", weight="w")
    pipe = FeaturePipeline([f]).fit(df)
    out = pipe.transform(df)
    ids = {v: i for i, v in enumerate(f.lookup.values, start=2)}
    assert out["h"].tolist() == [[ids["e"], ids["d"], ids["c"]], [ids["b"], 0, 0], [0, 0, 0], [0, 0, 0]]
    assert out["w"].tolist() == [[5.0, 4.0, 3.0], [0.5, 0.0, 0.0], [0.0] * 3, [0.0] * 3]
    assert pipe.specs() == {"h": ("token_seq", 7), "w": ("float_seq", 3)} and pipe.seq_weights() == {"h": "w"}
    lists = pd.DataFrame({"h": [["a", "b"], [], None], "w": [[1.0, 2.0], [], None]})
    g = FeaturePipeline([TokenSeq("h", max_len=3, weight="w", order="latest_first")]).fit(lists)
    assert g.transform(lists)["h"].tolist() == [[2, 3, 0], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(DataError, match="2 tokens but its weight column 'w' has 1"):
        pipe.transform(pd.DataFrame({"h": ["a|b"], "w": ["1"]}))
    with pytest.raises(DataError, match="set sep"):
        FeaturePipeline([TokenSeq("h", max_len=2)]).fit(pd.DataFrame({"h": ["a|b"]}))


def test_token_seq_shared_vocabulary_and_hashing():
    df = pd.DataFrame({"item": [10, 11, 12], "hist": ["12|10", "11", ""]})
    pipe = FeaturePipeline([Categorical("item"), TokenSeq("hist", max_len=2, sep="|", vocab_of="item")]).fit(df)
    out = pipe.transform(df)
    item_id = dict(zip(df["item"], out["item"]))
    assert out["hist"].tolist() == [[item_id[10], item_id[12]], [item_id[11], 0], [0, 0]]
    h = FeaturePipeline([TokenSeq("hist", max_len=2, sep="|", buckets=8)]).fit(df).transform(df)["hist"]
    assert h.max() <= 8 and (h[2] == 0).all()


def test_sequence_pooling_weighted():
    e = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [7.0, 7.0]], [[5.0, 5.0], [1.0, 1.0], [1.0, 1.0]]])
    ids = torch.tensor([[3, 4, 0], [0, 0, 0]])
    w = torch.tensor([[1.0, 3.0, 9.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(SequencePooling("sum")(e, ids, w), torch.tensor([[1.0, 6.0], [0.0, 0.0]]))
    assert torch.allclose(SequencePooling("mean")(e, ids, w), torch.tensor([[0.25, 1.5], [0.0, 0.0]]))
    assert torch.allclose(SequencePooling("mean")(e, ids), torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    att = SequencePooling("attention", dim=2)
    with torch.no_grad():
        for p in att.parameters():
            p.zero_()                                            # equal scores: the weights decide
    assert torch.allclose(att(e, ids, w), torch.tensor([[0.25, 1.5], [0.0, 0.0]]))
    q = SequencePooling("attention", dim=2, with_query=True)
    out = q(e, ids, w, query=torch.randn(2, 2))
    assert out.shape == (2, 2) and torch.isfinite(out).all() and torch.all(out[1] == 0)
    out.sum().backward()
    with pytest.raises(ConfigError):
        SequencePooling("max")


# -- the pipeline ----------------------------------------------------------------------------------------
def test_pipeline_errors():
    df = frame(50)
    pipe = make_pipeline()
    with pytest.raises(DataError, match="not fitted"):
        pipe.transform(df)
    pipe.fit(df)
    with pytest.raises(DataError, match=r"lacks columns \['price'\]"):
        pipe.transform(df.drop(columns="price"))
    with pytest.raises(DataError, match=r"unknown fields \['colour'\]"):
        pipe.transform(df.assign(colour="red"), strict=True)
    with pytest.raises(DataError, match="no field 'prise'.*Did you mean 'price'"):
        pipe.feature("prise")
    with pytest.raises(DataError, match="unknown fields"):
        pipe.transform_records([{"user": "u1", "itme": 3}])
    with pytest.raises(ConfigError, match="produced twice"):
        FeaturePipeline([Numeric("age"), Bucketized("age")])
    with pytest.raises(ConfigError, match="vocab_of"):
        FeaturePipeline([Numeric("item"), TokenSeq("hist", max_len=2, vocab_of="item")])


def test_fit_on_train_only_and_serving_records():
    df = frame(300)
    pipe = make_pipeline().fit(df.iloc[:200])
    rec = df.iloc[250].drop("click").to_dict()
    rec["user"] = "never-seen"
    t = pipe.transform_records(rec)
    assert t["user"].tolist() == [1]                                     # OOV bucket
    row = pipe.transform(df.iloc[250:251])
    for k in ("item", "device", "price", "hist"):
        np.testing.assert_array_equal(t[k].numpy(), row[k])


def test_state_round_trip_json_and_torch_save(tmp_path):
    df = frame(300)
    pipe = make_pipeline().fit(df.iloc[:150])
    pipe.partial_fit(df.iloc[150:250])
    expected = pipe.transform(df)
    json.dumps(pipe.state_dict())                                        # plain data
    pipe.save(tmp_path / "p.json")
    buf = io.BytesIO()
    torch.save({"pipeline": pipe.state_dict()}, buf)
    buf.seek(0)
    for other in (FeaturePipeline.load(tmp_path / "p.json"),
                  FeaturePipeline.from_state(torch.load(buf, weights_only=True)["pipeline"])):
        got = other.transform(df)
        assert got.keys() == expected.keys()
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k])
        assert other.specs() == pipe.specs()
    # the loaded pipeline keeps learning exactly like the original
    a, b = FeaturePipeline.load(tmp_path / "p.json"), pipe
    a.partial_fit(df.iloc[250:])
    b.partial_fit(df.iloc[250:])
    for k, v in a.transform(df).items():
        np.testing.assert_array_equal(v, b.transform(df)[k])
    with pytest.raises(DataError, match="version"):
        FeaturePipeline.from_state({"version": 99})


def test_pandas_string_dtype_columns():
    df = pd.DataFrame({"c": pd.array(["a", "b", None], dtype="string"), "h": pd.array(["a|b", None, ""], dtype="string")})
    pipe = FeaturePipeline([Categorical("c"), TokenSeq("h", max_len=2, sep="|")]).fit(df)
    out = pipe.transform(df)
    assert out["c"].tolist() == [2, 3, 0] and out["h"].tolist() == [[3, 2], [0, 0], [0, 0]]
