"""Serving a model trained by recstudio.fit_table: /score and /rank encode raw rows through the FeaturePipeline
saved in the checkpoint (unseen values -> the OOV bucket, listed per row), bad rows are 422s naming the
field, and `recstudio serve --checkpoint` serves it with no data present."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import recstudio  # noqa: E402
from recstudio.data.features import Categorical, FeaturePipeline, Numeric, TokenSeq  # noqa: E402
from recstudio.serving import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def frame(n=500, seed=0):
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, 15, n), rng.integers(0, 20, n)
    return pd.DataFrame({"user": [f"u{x}" for x in u], "movie": i, "price": rng.normal(5, 2, n),
                         "tags": [" ".join(f"t{t}" for t in rng.choice(5, 2, replace=False)) for _ in range(n)],
                         "click": ((u + i) % 2).astype(int)})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_table")
    pipe = FeaturePipeline([Categorical("user"), Categorical("movie"), Numeric("price"),
                            TokenSeq("tags", max_len=2, sep=" ")], labels=["click"])
    model = recstudio.fit_table("FM", train=frame(), valid=frame(100, 1), pipeline=pipe, label="click",
                                user="user", item="movie", run_dir=str(root / "run"), epochs=1, batch_size=64,
                                embed_dim=4, quiet=True)
    return recstudio.load(model.save(root / "fm.pt")), root / "fm.pt"


@pytest.fixture(scope="module")
def client(saved):
    from fastapi.testclient import TestClient
    with TestClient(create_app(saved[0]), raise_server_exceptions=False) as c:
        yield c


ROW = {"user": "u3", "movie": 7, "price": 4.5, "tags": "t1 t2"}


def test_score_goes_through_the_pipeline(client, saved):
    model = saved[0]
    rows = [ROW, {**ROW, "user": "stranger", "movie": 12345}]
    body = client.post("/score", json={"rows": rows}).json()
    expected = model.predict_table(pd.DataFrame.from_records(rows))
    np.testing.assert_allclose(body["probabilities"], expected, atol=1e-9)
    assert body["oov"] == [[], ["user", "movie"]]
    fields = client.get("/fields").json()
    assert set(fields["fields"]) == {"user", "movie", "price", "tags"} and fields["servable"]


@pytest.mark.parametrize("row,needle", [({**ROW, "colour": "red"}, "unknown field 'colour'"),
                                        ({k: v for k, v in ROW.items() if k != "price"}, "missing fields"),
                                        ({**ROW, "price": "cheap"}, "price"),
                                        ({**ROW, "movie": [1, 2]}, "movie")])
def test_bad_rows_are_422_naming_the_field(client, row, needle):
    r = client.post("/score", json={"rows": [row]})
    assert r.status_code == 422 and needle in r.text


def test_rank_orders_known_candidates(client, saved):
    body = client.post("/rank", json={"user": "u3", "items": [1, 2, 3], "context": {"price": 4.5, "tags": "t1"}})
    assert body.status_code == 200, body.text
    body = body.json()
    assert sorted(body["items"]) == [1, 2, 3] and body["scores"] == sorted(body["scores"], reverse=True)
    assert client.post("/rank", json={"user": "u3", "items": [999], "context": {"price": 1, "tags": ""}}
                       ).status_code == 404


def test_serve_cli_scores_raw_rows(saved):
    from loopback import serve_process
    model, path = saved
    with serve_process(path, ROOT) as (url, _):
        body = httpx.post(url + "/score", json={"rows": [ROW, {**ROW, "user": "nobody"}]}).json()
        expected = model.predict_table(pd.DataFrame.from_records([ROW, {**ROW, "user": "nobody"}]))
        np.testing.assert_allclose(body["probabilities"], expected, atol=1e-9)
        assert body["oov"] == [[], ["user"]]


# ---- property-based: no generated /score or /rank body gets a 5xx ------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**40, max_value=10**40)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
            | st.sampled_from(["u1", "t1 t2", "ghost", "", "1e309", "7"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6)
_rows = (st.fixed_dictionaries({}, optional={k: _values for k in ("user", "movie", "price", "tags", "click", "x")})
         | st.fixed_dictionaries({k: _values for k in ("user", "movie", "price", "tags")}))  # every field, any value


def _post(client, path, body):  # NaN / inf sent as JSON's non-standard tokens, as a careless client would
    return client.post(path, content=json.dumps(body, allow_nan=True).encode(),
                       headers={"content-type": "application/json"})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(_rows, max_size=3), user=_scalars, items=st.lists(_scalars, max_size=3))
def test_no_request_gets_a_5xx(client, rows, user, items):
    r = _post(client, "/score", {"rows": rows})
    assert r.status_code < 500, r.text
    r = _post(client, "/rank", {"user": user, "items": items, "context": rows[0] if rows else {}})
    assert r.status_code < 500, r.text
