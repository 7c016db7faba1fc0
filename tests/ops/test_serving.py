"""The HTTP server: every endpoint over real HTTP (uvicorn on 127.0.0.1, httpx), every bad request
is a 4xx with a message, concurrent requests are answered correctly, and the `recstudio serve` CLI."""
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import recstudio  # noqa: E402
from recstudio.model.base.meta import DataMeta  # noqa: E402
from recstudio.model.registry import get_model  # noqa: E402
from recstudio.serving import create_app  # noqa: E402
from recstudio.utils.errors import ConfigError  # noqa: E402
from loopback import serve_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split(make_split):
    return make_split(5, n_users=40, n_items=30, length=(3, 10))


@pytest.fixture(scope="module")
def trained(split, tmp_path_factory):
    """A tiny trained BPR and its run directory."""
    run_dir = tmp_path_factory.mktemp("serve-run")
    model, _ = recstudio.run(model="BPR", dataset=split, run_dir=str(run_dir), embed_dim=8, epochs=2,
                             batch_size=64, quiet=True)
    return model, model.run_dir


class Server:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a background thread."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def server(trained):
    with Server(create_app(trained[0])) as s:
        with httpx.Client(base_url=s.url, timeout=30) as client:
            yield client


def test_health_and_openapi_docs(server, trained):
    model = trained[0]
    health = server.get("/health").json()
    assert health == {"status": "ok", "model": "BPR", "base": "TwoTower", "num_users": model.meta.num_users - 1,
                      "num_items": model.meta.num_items - 1, "ann": None, "similar_items": True}
    spec = server.get("/openapi.json").json()
    assert {"/recommend", "/recommend/{user}", "/similar_items", "/health"} <= set(spec["paths"])
    assert "RecommendRequest" in spec["components"]["schemas"]
    docs = server.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_recommend_endpoints_match_the_model(server, trained):
    model = trained[0]
    items, scores = model.recommend(["u1", "u7"], k=5)
    body = server.post("/recommend", json={"users": ["u1", "u7"], "k": 5}).json()
    assert body["k"] == 5 and [r["user"] for r in body["results"]] == ["u1", "u7"]
    for row, want_items, want_scores in zip(body["results"], items, scores):
        assert row["items"] == want_items.tolist() and np.allclose(row["scores"], want_scores, atol=1e-6)
        assert row["fallback"] is None
    one = server.get("/recommend/u7", params={"k": 5}).json()
    assert one["items"] == items[1].tolist()
    seen_too = server.post("/recommend", json={"users": ["u7"], "k": 5, "exclude_seen": False}).json()
    assert seen_too["results"][0]["items"] == model.recommend(["u7"], k=5, exclude_seen=False)[0][0].tolist()
    # a list shorter than k (every unseen item) comes back without padding
    n_items = model.meta.num_items - 1
    full = server.get("/recommend/u7", params={"k": n_items}).json()
    assert len(full["items"]) == len(full["scores"]) < n_items and None not in full["items"]


def test_popularity_fallback_on_request(server, trained):
    model = trained[0]
    body = server.post("/recommend", json={"users": ["u1", "stranger"], "k": 3, "unknown": "popular"}).json()
    assert [r["fallback"] for r in body["results"]] == [None, "popular"]
    assert body["results"][1]["items"] == model.recommend(["x"], k=3, unknown="popular")[0][0].tolist()
    one = server.get("/recommend/stranger", params={"k": 3, "unknown": "popular"}).json()
    assert one["fallback"] == "popular" and one["items"] == body["results"][1]["items"]


def test_similar_items_endpoint(server, trained):
    model = trained[0]
    items, scores = model.similar_items(["i1", "i4"], k=3)
    body = server.post("/similar_items", json={"items": ["i1", "i4"], "k": 3}).json()
    assert [r["item"] for r in body["results"]] == ["i1", "i4"]
    assert [r["items"] for r in body["results"]] == items.tolist()


@pytest.mark.parametrize("method, path, payload, status, message", [
    ("post", "/recommend", {"users": ["u1", "ghost"], "k": 3}, 404, "unknown user ids ['ghost']"),
    ("get", "/recommend/ghost", None, 404, "unknown='popular'"),
    ("post", "/recommend", {"users": ["u1"], "k": 0}, 422, "greater than or equal to 1"),
    ("post", "/recommend", {"users": ["u1"], "k": 10_000}, 400, "k must be between 1 and the number of items"),
    ("get", "/recommend/u1?k=0", None, 422, "greater than or equal to 1"),
    ("get", "/recommend/u1?k=ten", None, 422, "valid integer"),
    ("post", "/recommend", {"users": "u1", "k": 3}, 422, "valid list"),
    ("post", "/recommend", {"users": ["u1"], "k": "ten"}, 422, "valid integer"),
    ("post", "/recommend", {"users": ["u1"], "k": 2.5}, 422, "valid integer"),
    ("post", "/recommend", {"users": [["u1"]], "k": 3}, 422, "users"),
    ("post", "/recommend", {"users": ["u1"], "exclude_seen": "maybe"}, 422, "valid boolean"),
    ("post", "/recommend", {"users": ["u1"], "unknown": "guess"}, 422, "'error' or 'popular'"),
    ("post", "/recommend", {"users": ["u1"], "kk": 3}, 422, "Extra inputs are not permitted"),
    ("post", "/recommend", {"k": 3}, 422, "Field required"),
    ("post", "/recommend", {"users": ["u1"] * 10_001}, 422, "at most 10000 items"),
    ("post", "/similar_items", {"items": ["i1", "zzz"], "k": 3}, 404, "unknown item ids ['zzz']"),
    ("post", "/similar_items", {"items": ["i1"], "k": 500}, 400, "number of items - 1"),
])
def test_bad_requests_get_a_4xx_with_a_message(server, method, path, payload, status, message):
    response = server.post(path, json=payload) if method == "post" else server.get(path)
    assert response.status_code == status, response.text
    assert message in response.text


def test_malformed_json_is_a_422(server):
    response = server.post("/recommend", content=b'{"users": ["u1", ', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON decode error" in response.text


@pytest.mark.parametrize("path, body, status, message", [
    ("/recommend", b'{"users": ["u1"], "k": 1e309}', 422, "valid integer"),
    ("/recommend", b'{"users": ["u1"], "k": -1e309}', 422, "valid integer"),
    ("/recommend", b'{"users": ["u1"], "k": NaN}', 422, "valid integer"),
    ("/recommend", b'{"users": ["u1"], "k": Infinity}', 422, "valid integer"),
    ("/recommend", b'{"users": [NaN], "k": 1}', 422, "valid integer"),
    ("/recommend", b'{"users": [1e309], "k": 1}', 422, "valid string"),
    ("/recommend", b'{"users": ["u1"], "k": 1e20}', 422, "valid integer"),
    ("/recommend", b'{"users": ["u1"], "k": -1}', 422, "greater than or equal to 1"),
    ("/recommend", b'{"users": ["u1"], "k": "x"}', 422, "valid integer"),
    ("/recommend", b'{"users": ["u1"], "k": 100000000000000000000000000000000}', 400, "k must be between"),
    ("/recommend", b'{"users": {"a": [1, {"b": NaN}]}, "k": [[-Infinity]]}', 422, "valid list"),
    ("/recommend", b'{"users": ["u1"], "exclude_seen": NaN}', 422, "valid boolean"),
    ("/recommend", b'[' * 50_000, 400, "error parsing the body"),
    ("/recommend", b'\xff\xfe\x00', 400, "error parsing the body"),
    ("/recommend", b'NaN', 422, "valid dictionary"),
    ("/similar_items", b'{"items": [-Infinity], "k": 2}', 422, "valid integer"),
    ("/similar_items", b'{"items": ["i1"], "k": 1e309}', 422, "valid integer"),
])
def test_non_finite_huge_and_garbage_numbers_get_a_4xx(server, path, body, status, message):
    response = server.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.text and "detail" in response.json()


def test_non_finite_query_numbers_get_a_4xx(server):
    for k in ("1e309", "nan", "inf", "-1", "1e20", "x", "99999999999999999999999999"):
        response = server.get(f"/recommend/u1?k={k}")
        assert 400 <= response.status_code < 500, (k, response.text)
        assert response.json()["detail"]
    assert server.get("/health").status_code == 200


def test_concurrent_requests_are_all_answered_correctly(server, trained):
    model = trained[0]
    users = [f"u{u}" for u in range(40)]
    expected = {u: model.recommend([u], k=4)[0][0].tolist() for u in users}

    def ask(i):
        user = users[i % len(users)]
        with httpx.Client(base_url=str(server.base_url), timeout=30) as client:
            got = [client.post("/recommend", json={"users": [user], "k": 4}).json()["results"][0]["items"]
                   for _ in range(5)]
        return user, got

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ask, range(32)))
    assert len(answers) == 32
    for user, got in answers:
        assert got == [expected[user]] * 5


def test_tower_free_model_says_similar_items_is_unsupported(split):
    ncf = get_model("NCF")(quiet=True).build(DataMeta.from_split(split))
    with Server(create_app(ncf)) as s, httpx.Client(base_url=s.url, timeout=30) as client:
        assert client.get("/health").json()["similar_items"] is False
        r = client.post("/similar_items", json={"items": ["i1"], "k": 3})
        assert r.status_code == 400 and "TowerFree model, which has no item vectors" in r.json()["detail"]
        assert client.post("/recommend", json={"users": ["u1"], "k": 3}).status_code == 200


def test_missing_fastapi_names_the_extra(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[serving\]"'):
        create_app(trained[0])


def test_serve_cli_serves_a_run_directory(trained):
    with serve_process(trained[1], ROOT) as (url, proc):
        health = httpx.get(url + "/health", timeout=2).json()
        assert health["model"] == "BPR" and health["ann"] is None
        best = recstudio.load(trained[1] / "checkpoints" / "best.ckpt")
        got = httpx.post(url + "/recommend", json={"users": ["u3"], "k": 3}).json()["results"][0]["items"]
        assert got == best.recommend(["u3"], k=3)[0][0].tolist()
    assert "serving BPR" in proc.stdout.read()


def test_serve_cli_errors(tmp_path):
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "recstudio", "serve", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
    missing = serve("--checkpoint", str(tmp_path / "nope.ckpt"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    empty = serve("--checkpoint", str(tmp_path))
    assert empty.returncode == 2 and "without checkpoints/best.ckpt" in empty.stderr
    bad_ann = serve("--checkpoint", str(tmp_path), "--ann", "annoy")
    assert bad_ann.returncode == 2 and "invalid choice" in bad_ann.stderr


def test_ann_index_is_built_at_startup_and_answers_like_exact(trained):
    pytest.importorskip("faiss")
    from recstudio.commands.serve import choose_ann
    model = recstudio.load(trained[1] / "checkpoints" / "best.ckpt")
    assert choose_ann(model, None) is None and choose_ann(model, "exact") is None and choose_ann(model, "hnsw") == "hnsw"
    exact = model.recommend(["u2", "u9"], k=4)[0].tolist()
    model.config["ann"] = "flat"
    app = create_app(model)
    assert model._ann_index is not None  # built by create_app, before any request
    with Server(app) as s, httpx.Client(base_url=s.url, timeout=30) as client:
        assert client.get("/health").json()["ann"] == "flat"
        body = client.post("/recommend", json={"users": ["u2", "u9"], "k": 4}).json()
        assert [r["items"] for r in body["results"]] == exact


# ---- property-based: no generated body or query string gets a 5xx --------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-10**40, max_value=10**40)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
            | st.sampled_from(["u1", "u7", "i1", "ghost", "", "popular", "error", "1e309"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_keys = st.sampled_from(["users", "items", "k", "exclude_seen", "unknown", "kk"])
_bodies = st.one_of(
    st.dictionaries(_keys, _json, max_size=5).map(lambda d: json.dumps(d, allow_nan=True).encode()),
    _json.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.binary(max_size=40),
    st.sampled_from([b'{"users": ["u1"], "k": 1e309}', b'{"users": ["u1"], "k": NaN}', b'[' * 2000, b'{"a":']),
)
_query_values = st.one_of(st.text(max_size=10), st.sampled_from(["1e309", "nan", "inf", "-1", "0", "3", "true",
                                                                   "popular", "9" * 30]))
_queries = st.dictionaries(st.sampled_from(["k", "exclude_seen", "unknown", "x"]), _query_values, max_size=4)


@pytest.fixture(scope="module")
def test_client(trained):
    from fastapi.testclient import TestClient
    with TestClient(create_app(trained[0]), raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/recommend", "/similar_items"]), body=_bodies,
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]))
def test_generated_bodies_never_get_a_5xx(test_client, path, body, content_type):
    response = test_client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["detail"]
    assert test_client.get("/health").status_code == 200


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.one_of(st.text(min_size=1, max_size=10), st.sampled_from(["u1", "ghost", "1e309", "NaN"])),
       query=_queries, endpoint=st.sampled_from(["user", "health", "recommend", "similar_items"]))
def test_generated_query_strings_never_get_a_5xx(test_client, user, query, endpoint):
    from urllib.parse import quote
    path = {"user": f"/recommend/{quote(user, safe='')}", "health": "/health", "recommend": "/recommend",
            "similar_items": "/similar_items"}[endpoint]
    response = test_client.get(path, params=query)
    assert response.status_code < 500, (path, query, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["detail"]
    assert test_client.get("/health").status_code == 200
