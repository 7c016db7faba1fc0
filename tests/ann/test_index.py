"""ANN indexes against brute force; exclusion, labels, padding, fallback and device errors."""
import numpy as np
import pytest
import torch

import recstudio.ann.base as ann_base
import recstudio.ann.faiss_index as faiss_index
from recstudio.ann import build_index
from recstudio.utils.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(20, 16, generator=g) * 3
    vectors = centers[torch.randint(0, 20, (1500,), generator=g)] + torch.randn(1500, 16, generator=g)
    queries = torch.randn(40, 16, generator=g) * 2
    return vectors, queries


def brute(vectors, queries, metric):
    if metric == "ip":
        return queries @ vectors.T
    if metric == "l2":
        return -torch.cdist(queries, vectors) ** 2
    n = torch.nn.functional.normalize
    return n(queries, dim=1) @ n(vectors, dim=1).T


def recall(ids, ref):
    return np.mean([len(set(a.tolist()) & set(b.tolist())) / ref.shape[1] for a, b in zip(ids, ref)])


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_exact_index_matches_brute_force_with_chunks(data, metric):
    vectors, queries = data
    ref = brute(vectors, queries, metric).topk(10)
    scores, ids = build_index("exact", vectors, metric=metric, item_chunk_size=97).search(queries, 10)
    assert torch.equal(ids, ref.indices)
    torch.testing.assert_close(scores, ref.values, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_faiss_flat_and_full_probe_ivf_equal_exact(data, metric):
    pytest.importorskip("faiss")
    vectors, queries = data
    ref = brute(vectors, queries, metric).topk(10).indices
    assert recall(build_index("flat", vectors, metric=metric).search(queries, 10)[1], ref) == 1.0
    assert recall(build_index("ivf", vectors, metric=metric, nlist=16, nprobe=16).search(queries, 10)[1], ref) == 1.0


def test_hnsw_recall(data):
    pytest.importorskip("faiss")
    vectors, queries = data
    ref = brute(vectors, queries, "ip").topk(10).indices
    assert recall(build_index("hnsw", vectors, metric="ip").search(queries, 10)[1], ref) >= 0.95


@pytest.mark.parametrize("name", ["exact", "flat", "ivf", "hnsw"])
def test_exclusion_labels_and_padding(data, name):
    if name != "exact":
        pytest.importorskip("faiss")
    vectors, queries = data
    labels = torch.arange(1, len(vectors) + 1)
    index = build_index(name, vectors, metric="ip", ids=labels)
    top = index.search(queries[:3], 5)[1]
    exclude = [top[0].tolist(), [], top[2, :2].tolist()]
    _, ids = index.search(queries[:3], 5, exclude=exclude)
    assert not set(ids[0].tolist()) & set(exclude[0]) and not set(ids[2].tolist()) & set(exclude[2])
    assert ids.min() >= 1  # labels, not positions
    indptr = torch.tensor([0, len(exclude[0]), len(exclude[0]), len(exclude[0]) + 2])
    _, ids_csr = index.search(queries[:3], 5, exclude=(indptr, torch.tensor(exclude[0] + exclude[2])))
    assert torch.equal(ids, ids_csr)
    small = build_index(name if name != "ivf" else "exact", vectors[:4], metric="ip")
    scores, ids = small.search(queries[:2], 6)
    assert (ids[:, 4:] == -1).all() and torch.isinf(scores[:, 4:]).all()


def test_bad_arguments(data):
    vectors, queries = data
    index = build_index("exact", vectors)
    with pytest.raises(ConfigError):
        index.search(queries, 0)
    with pytest.raises(ConfigError):
        index.search(queries[:, :8], 5)
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        build_index("exact", vectors, metric="cosin")
    with pytest.raises(ConfigError, match="unknown ANN index 'ivff'"):
        build_index("ivff", vectors)
    with pytest.raises(ConfigError, match="unknown parameter 'nprobes'"):
        build_index("ivf", vectors, nprobes=3)


def test_fallback_to_exact_without_faiss(data, monkeypatch):
    vectors, queries = data

    def missing():
        raise ImportError("No module named 'faiss'")
    monkeypatch.setattr(faiss_index, "_import_faiss", missing)
    ann_base._WARNED.clear()
    with pytest.warns(RuntimeWarning, match="faiss is not installed"):
        index = build_index("ivf", vectors, metric="ip", nlist=8)
    assert type(index).__name__ == "TorchExactIndex"
    assert torch.equal(index.search(queries, 5)[1], brute(vectors, queries, "ip").topk(5).indices)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_gpu_is_a_clear_error(data):
    pytest.importorskip("faiss")
    with pytest.raises(ConfigError, match="faiss-gpu|GPU|CUDA"):
        build_index("flat", data[0], device="cuda")
