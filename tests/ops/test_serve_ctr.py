"""Serving a feature (CTR) model: POST /score maps RAW feature values exactly as the data layer encoded the
training data (vocabularies, float_scaling statistics, discretize bins, token sequences) from what the
checkpoint of `recstudio.run` saved; unknown values fall into the out-of-vocabulary bucket; POST /rank orders
candidates by the model's scores; every bad request is a 4xx naming the row / field; `recstudio serve` serves it."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import recstudio  # noqa: E402
from recstudio.data import RecDataset, from_dataframe  # noqa: E402
from recstudio.model.base.meta import DataMeta  # noqa: E402
from recstudio.model.registry import get_model  # noqa: E402
from recstudio.serving import create_app  # noqa: E402
from loopback import serve_process  # noqa: E402
from test_serving import Server  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 1500


def ctr_raw_frame(n=N_ROWS, seed=0):
    """Raw CTR rows: a token context field, a standard-scaled float, a discretized float, a token_seq of tags;
    label = (ctx mod 3 == item mod 3). Items carry a category feature (read from the item id)."""
    rng = np.random.default_rng(seed)
    users, items, ctx = rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(0, 6, n)
    tags = [" ".join(f"t{t}" for t in rng.choice(8, size=rng.integers(1, 4), replace=False)) for _ in range(n)]
    df = pd.DataFrame({"u": [f"u{x}" for x in users], "i": [f"i{x}" for x in items], "ctx": [f"c{c}" for c in ctx],
                       "noise": np.round(rng.random(n) * 10, 3), "hour": rng.integers(0, 24, n).astype(float),
                       "tags": tags, "label": ((ctx % 3) == (items % 3)).astype(float)})
    item_feat = pd.DataFrame({"i": [f"i{x}" for x in range(30)], "cat": [f"k{i % 3}" for i in range(30)]})
    return df, item_feat


def build_dataset(df, item_feat):
    return from_dataframe(df, "u", "i", item_features=item_feat, dedup="all", split_mode="entry",
                          split_ratio=[0.7, 0.2, 0.1], field_types={"tags": "token_seq"},
                          float_scaling={"noise": "standard"}, discretize={"hour": 4})


@pytest.fixture(scope="module")
def data():
    df, item_feat = ctr_raw_frame()
    return df, build_dataset(df, item_feat)


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    model, _ = recstudio.run(model="DeepFM", dataset=data[1].split(), run_dir=str(tmp_path_factory.mktemp("ctr")),
                             embed_dim=8, epochs=2, batch_size=256, quiet=True)
    return Path(model.run_dir)


@pytest.fixture(scope="module")
def model(run_dir):
    return recstudio.load(run_dir)  # what `recstudio serve --checkpoint <run dir>` serves


@pytest.fixture(scope="module")
def server(model):
    with Server(create_app(model)) as s:
        with httpx.Client(base_url=s.url, timeout=60) as client:
            yield client


def raw_rows(df, fields=("u", "i", "ctx", "noise", "hour", "tags")):
    return [{f: (r[f].item() if hasattr(r[f], "item") else r[f]) for f in fields} for _, r in df.iterrows()]


def model_probabilities(model, batch):
    with torch.no_grad():
        return torch.sigmoid(model.forward(batch).double()).numpy()


def test_fields_endpoint_lists_what_a_row_sends(server):
    body = server.get("/fields").json()
    assert list(body["fields"]) == ["u", "i", "ctx", "noise", "hour", "tags"]
    assert body["fields"]["noise"] == {"type": "float", "scaling": "standard", "role": "context"}
    assert body["fields"]["hour"] == {"type": "float", "encoding": "discretize", "bins": 4, "role": "context"}
    assert body["fields"]["ctx"]["vocabulary_size"] == 6 and body["fields"]["tags"]["type"] == "token_seq"
    assert body["from_ids"] == {"cat": "item"} and body["servable"] is True
    assert {"/score", "/rank", "/fields"} <= set(server.get("/openapi.json").json()["paths"])


def test_score_maps_raw_values_exactly_as_the_data_layer_did(server, model, data):
    """Every raw training row, sent to /score, gets the probability the model gives the data layer's encoding
    of that row (rows matched by their encoded values, as the data layer re-sorts interactions)."""
    df, ds = data
    encoder = create_app(model).state.engine.features
    batch, oov = encoder.encode_rows(raw_rows(df))
    assert not any(oov)
    inter = ds.inter

    def keyed(cols):  # one sortable tuple per row: ids, ctx, hour bin, tags, noise
        return [(int(u), int(i), int(c), int(h), tuple(int(t) for t in tg if t), round(float(x), 5))
                for u, i, c, h, tg, x in zip(*cols)]
    ours = keyed([batch[k].numpy() for k in ("u", "i", "ctx", "hour", "tags", "noise")])
    theirs = keyed([inter[k] for k in ("u", "i", "ctx", "hour", "tags", "noise")])
    assert sorted(ours) == sorted(theirs)  # the same encoded rows: vocabularies, scaling, bins, sequences
    np.testing.assert_allclose(batch["noise"].numpy(), (df["noise"] - df["noise"].mean()) / df["noise"].std(ddof=0),
                               rtol=1e-5, atol=1e-6)

    body = server.post("/score", json={"rows": raw_rows(df)}).json()
    assert body["oov"] == [[]] * len(df)
    got = dict(zip(ours, body["probabilities"]))
    width = inter["tags"].shape[1]
    ds_batch = {"u": torch.as_tensor(inter["u"]), "i": torch.as_tensor(inter["i"]),
                "ctx": torch.as_tensor(inter["ctx"]), "hour": torch.as_tensor(inter["hour"]),
                "noise": torch.as_tensor(inter["noise"]), "tags": torch.as_tensor(inter["tags"][:, :width])}
    want = model_probabilities(model, ds_batch)
    for key, p in zip(theirs, want):
        assert got[key] == pytest.approx(float(p), abs=1e-6)


def test_unknown_categorical_values_fall_into_the_oov_bucket(server, model):
    base = {"u": "u1", "i": "i3", "ctx": "c1", "noise": 3.5, "hour": 7, "tags": ["t1", "t2"]}
    rows = [base, {**base, "ctx": "never-seen"}, {**base, "ctx": None},
            {**base, "u": "stranger", "i": "new-item"}, {**base, "tags": ["t1", "t2", "zzz"]},
            {**base, "tags": "t1 t2"}, {**base, "hour": 1e6}, {**base, "hour": 23}]
    r = server.post("/score", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    p = body["probabilities"]
    assert body["oov"] == [[], ["ctx"], [], ["u", "i"], ["tags"], [], [], []]
    assert all(0 < x < 1 for x in p)
    assert p[1] == pytest.approx(p[2], abs=1e-12)   # unknown token == the missing id 0 (the data layer's padding)
    assert p[1] != pytest.approx(p[0], abs=1e-9)
    assert p[4] == pytest.approx(p[0], abs=1e-12)   # an unknown tag is skipped by the pooling
    assert p[5] == pytest.approx(p[0], abs=1e-12)   # a token_seq may come as the training text
    assert p[6] == pytest.approx(p[7], abs=1e-12)   # above the last training bin edge: the last bin
    enc = create_app(model).state.engine.features
    batch, _ = enc.encode_rows([rows[3]])
    assert batch["u"].tolist() == [0] and batch["i"].tolist() == [0]
    # the server scored 8 rows at once, this 1: float32 kernels of other shapes differ in the last bits
    assert p[3] == pytest.approx(float(model_probabilities(model, batch)[0]), abs=1e-6)


def test_rank_orders_candidates_by_the_model_scores(server, model, data):
    ds = data[1]
    cands = [f"i{j}" for j in range(30)]
    r = server.post("/rank", json={"user": "u5", "context": {"ctx": "c2", "noise": 1.0}, "items": cands})
    assert r.status_code == 200, r.text
    body = r.json()
    # the model's own scores of the data layer's encoding (hour, tags left out: absent, id 0)
    n = len(cands)
    noise = (1.0 - data[0]["noise"].mean()) / data[0]["noise"].std(ddof=0)
    batch = {"u": torch.as_tensor(ds.encode_users(["u5"] * n)), "i": torch.as_tensor(ds.encode_items(cands)),
             "ctx": torch.as_tensor(ds.id_maps["ctx"].encode(["c2"] * n)), "hour": torch.zeros(n, dtype=torch.long),
             "noise": torch.full((n,), float(noise)), "tags": torch.zeros(n, 1, dtype=torch.long)}
    want = model_probabilities(model, batch)
    order = np.argsort(-want, kind="stable")
    assert body["items"] == [cands[j] for j in order]
    np.testing.assert_allclose(body["scores"], want[order], rtol=1e-5, atol=1e-7)
    assert body["scores"] == sorted(body["scores"], reverse=True) and body["oov"] == []
    top = server.post("/rank", json={"user": "u5", "context": {"ctx": "c2", "noise": 1.0}, "items": cands,
                                     "k": 3}).json()
    assert top["items"] == body["items"][:3]
    cold = server.post("/rank", json={"user": "stranger", "items": cands[:5]}).json()
    assert cold["oov"] == ["u"] and len(cold["items"]) == 5


@pytest.mark.parametrize("path, payload, status, message", [
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": 2.5, "noise": 1, "hour": 3, "tags": []}]}, 422,
     "row 0: field 'ctx' is categorical and takes a string or an integer, got number 2.5"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": []},
                         {"u": "u1", "i": "i1", "ctx": "c1", "noise": "high", "hour": 3, "tags": []}]}, 422,
     "row 1: field 'noise' must be a number, got string 'high'"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": True, "hour": 3, "tags": []}]}, 422,
     "field 'noise' must be a number, got boolean"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": [3], "tags": []}]}, 422,
     "row 0: field 'hour' must be a number, got list"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": {"a": 1}}]}, 422,
     "row 0: field 'tags' is a token_seq field and takes a list"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": [["t1"]]}]}, 422,
     "row 0, position 0: field 'tags' is categorical"),
    ("/score", {"rows": [{"u": ["u1"], "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": []}]}, 422,
     "row 0: field 'u' is an id and takes a string or an integer, got list"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctxx": "c1", "noise": 1, "hour": 3, "tags": []}]}, 422,
     "row 0: unknown field 'ctxx'"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3}]}, 422,
     "row 0: missing field ['tags']"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": [], "cat": "k1"}]}, 422,
     "field 'cat' is an item feature, which the model reads from the item id"),
    ("/score", {"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3, "tags": [], "label": 1}]}, 422,
     "unknown field 'label'"),
    ("/score", {"rows": {"u": "u1"}}, 422, "valid list"),
    ("/score", {"rows": ["u1"]}, 422, "valid dictionary"),
    ("/score", {"rows": [], "extra": 1}, 422, "Extra inputs are not permitted"),
    ("/rank", {"user": "u1", "items": ["i1", "ghost", "i2", "phantom"]}, 404, "unknown item ids ['ghost', 'phantom']"),
    ("/rank", {"user": "u1", "items": ["i1", "i2", "i1"]}, 422, "items[2]: item 'i1' is already a candidate"),
    ("/rank", {"user": "u1", "items": ["i1"], "context": {"ctx": 1.5}}, 422, "context: field 'ctx' is categorical"),
    ("/rank", {"user": "u1", "items": ["i1"], "context": {"weekday": 1}}, 422, "context: unknown field 'weekday'"),
    ("/rank", {"user": "u1", "items": ["i1"], "context": {"i": "i2"}}, 422, "context: field 'i' is given by items"),
    ("/rank", {"user": "u1", "items": []}, 422, "at least 1 item"),
    ("/rank", {"user": "u1", "items": ["i1"], "k": 0}, 422, "greater than or equal to 1"),
    ("/rank", {"user": 2.5, "items": ["i1"]}, 422, "valid string"),
    ("/rank", {"items": ["i1"]}, 422, "Field required"),
])
def test_bad_feature_requests_get_a_4xx_naming_the_row_and_field(server, path, payload, status, message):
    r = server.post(path, json=payload)
    assert r.status_code == status, r.text
    assert message in r.text, r.text


@pytest.mark.parametrize("body, message", [
    (b'{"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": NaN, "hour": 3, "tags": []}]}',
     "row 0: field 'noise' must be a finite number, got nan"),
    (b'{"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1e309, "hour": 3, "tags": []}]}',
     "field 'noise' must be a finite number, got inf"),
    (b'{"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": -Infinity, "tags": []}]}',
     "field 'hour' must be a finite number"),
    (b'{"user": "u1", "items": ["i1"], "context": {"noise": 1' + b'0' * 400 + b'}}',
     "field 'noise' must be a finite number"),
])
def test_non_finite_numbers_get_a_422(server, body, message):
    r = server.post("/score" if b"rows" in body else "/rank", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_existing_endpoints_still_serve_the_ctr_model(server, model):
    health = server.get("/health").json()
    assert health["model"] == "DeepFM" and health["base"] == "Feature"
    got = server.post("/recommend", json={"users": ["u1"], "k": 3}).json()["results"][0]["items"]
    assert got == model.recommend(["u1"], k=3)[0][0].tolist()


def test_a_model_that_is_no_feature_model_says_so(data):
    bpr = get_model("BPR")(quiet=True).build(DataMeta.from_split(data[1].split()))
    with Server(create_app(bpr)) as s, httpx.Client(base_url=s.url, timeout=30) as client:
        for path, payload in (("/score", {"rows": []}), ("/rank", {"user": "u1", "items": ["i1"]})):
            r = client.post(path, json=payload)
            assert r.status_code == 400 and "not a feature (CTR) model" in r.json()["detail"]
        assert client.get("/fields").status_code == 400
        assert client.post("/recommend", json={"users": ["u1"], "k": 2}).status_code == 200


def test_a_checkpoint_without_the_encoding_refuses_raw_features_but_still_recommends(run_dir):
    old = recstudio.load(run_dir)
    old.meta.context_encoding = {}  # as a checkpoint written before the encoding was saved
    with Server(create_app(old)) as s, httpx.Client(base_url=s.url, timeout=30) as client:
        r = client.post("/score", json={"rows": [{"u": "u1", "i": "i1", "ctx": "c1", "noise": 1, "hour": 3,
                                                  "tags": []}]})
        assert r.status_code == 400 and "retrain the model" in r.json()["detail"]
        assert client.get("/fields").json()["servable"] is False
        assert client.post("/recommend", json={"users": ["u1"], "k": 2}).status_code == 200


def test_scaling_statistics_survive_the_dataset_cache(data, tmp_path):
    ds = data[1]
    assert ds.float_transforms["noise"]["scaling"] == "standard"
    edges = np.quantile(data[0]["hour"], [0, 0.25, 0.5, 0.75, 1])  # pd.qcut's quartile edges
    np.testing.assert_allclose(ds.float_transforms["hour"]["discretize"], edges)
    again = RecDataset.load(ds.save(tmp_path / "ctr.npz"))
    assert again.float_transforms == ds.float_transforms


def test_serve_cli_serves_score_and_rank(run_dir, model):
    with serve_process(run_dir, ROOT) as (url, _):
        row = {"u": "u2", "i": "i4", "ctx": "c0", "noise": 2.0, "hour": 12, "tags": ["t3"]}
        p = httpx.post(url + "/score", json={"rows": [row]}).json()["probabilities"][0]
        enc = create_app(model).state.engine.features
        assert p == pytest.approx(float(model_probabilities(model, enc.encode_rows([row])[0])[0]), abs=1e-9)
        ranked = httpx.post(url + "/rank", json={"user": "u2", "items": ["i1", "i2", "i3"]}).json()
        assert sorted(ranked["items"]) == ["i1", "i2", "i3"]


# ---- property-based: no generated /score or /rank body gets a 5xx ------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**40, max_value=10**40)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
            | st.sampled_from(["u1", "i1", "c1", "t1 t2", "ghost", "", "1e309"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
_field_names = st.sampled_from(["u", "i", "ctx", "noise", "hour", "tags", "cat", "label", "x"])
_rows = st.dictionaries(_field_names, _values, max_size=8)
_score = st.fixed_dictionaries({"rows": st.lists(_rows, max_size=3)})
_rank = st.fixed_dictionaries({"user": _scalars, "items": st.lists(_scalars, max_size=4)},
                              optional={"context": st.dictionaries(_field_names, _values, max_size=4), "k": _scalars})


@pytest.fixture(scope="module")
def test_client(model):
    from fastapi.testclient import TestClient
    with TestClient(create_app(model), raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path_body=st.one_of(_score.map(lambda b: ("/score", b)), _rank.map(lambda b: ("/rank", b)),
                           _values.map(lambda b: ("/score", b)), _values.map(lambda b: ("/rank", b))))
def test_generated_feature_bodies_never_get_a_5xx(test_client, path_body):
    path, body = path_body
    r = test_client.post(path, content=json.dumps(body, allow_nan=True).encode(),
                         headers={"content-type": "application/json"})
    assert r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["detail"]
    else:
        scores = r.json()["probabilities" if path == "/score" else "scores"]
        assert all(math.isfinite(x) for x in scores)
