"""chunked_softmax: the full softmax's value and gradients, in blocks of items."""
import pytest
import torch

from recstudio.model.loss import LOSSES, SoftmaxLoss, build_loss
from recstudio.model.loss.chunked import ChunkedSoftmaxLoss, chunk_columns, decomposed_vectors
from recstudio.model.scorer import get_score_func as build_scorer
from recstudio.utils.errors import ConfigError


def _full(query, items, pos, temperature=1.0):
    scores = query @ items.t()
    scores[:, 0] = float("-inf")
    return SoftmaxLoss(temperature=temperature)(all_score=scores, pos_index=pos)


@pytest.mark.parametrize("chunk_mb", [1e-5, 4e-4, 256.0])  # one column, several blocks, one block
@pytest.mark.parametrize("temperature", [1.0, 0.2])
def test_value_and_gradients_equal_full_softmax(chunk_mb, temperature):
    torch.manual_seed(0)
    q = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(211, 16, dtype=torch.float64, requires_grad=True)
    pos = torch.randint(1, 211, (37,))
    full = _full(q, v, pos, temperature)
    gq, gv = torch.autograd.grad(full, (q, v))
    loss = ChunkedSoftmaxLoss(temperature=temperature, chunk_mb=chunk_mb)(query=q, item_vectors=v, pos_index=pos)
    cq, cv = torch.autograd.grad(loss, (q, v))
    assert torch.allclose(loss, full, atol=1e-10)
    assert torch.allclose(cq, gq, atol=1e-10) and torch.allclose(cv, gv, atol=1e-10)
    assert cv[0].abs().max() == 0  # the padding row is never a candidate


def test_gradcheck_and_reductions():
    torch.manual_seed(1)
    q = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(13, 4, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([1, 2, 12, 5, 5])
    fn = ChunkedSoftmaxLoss(chunk_mb=1e-4, reduction="none")
    assert torch.autograd.gradcheck(lambda a, b: fn(query=a, item_vectors=b, pos_index=pos), (q, v))
    per_row = fn(query=q, item_vectors=v, pos_index=pos)
    assert per_row.shape == (5,)
    total = ChunkedSoftmaxLoss(reduction="sum")(query=q, item_vectors=v, pos_index=pos)
    assert torch.allclose(total, per_row.sum())


def test_chunk_size_follows_the_budget():
    assert chunk_columns(1000, 1.0, 10 ** 6) == 2 ** 20 // 4000
    assert chunk_columns(10 ** 9, 1.0, 100) == 1
    assert chunk_columns(10, 1024.0, 100) == 100


def test_cosine_scorer_folds_its_temperature():
    torch.manual_seed(2)
    scorer = build_scorer("cosine", temperature=0.5)
    q, v = torch.randn(3, 6), torch.randn(9, 6)
    a, b = decomposed_vectors(scorer, q, v)
    assert torch.allclose(a @ b.t(), scorer.score_all(q, v), atol=1e-6)
    with pytest.raises(ConfigError, match="inner-product or cosine"):
        decomposed_vectors(build_scorer("euclidean"), q, v)


def test_bad_options_and_missing_inputs():
    with pytest.raises(ConfigError, match="chunk_mb"):
        ChunkedSoftmaxLoss(chunk_mb=0)
    with pytest.raises(ConfigError, match="temperature"):
        ChunkedSoftmaxLoss(temperature=float("nan"))
    with pytest.raises(ConfigError, match="query"):
        ChunkedSoftmaxLoss()(pos_score=torch.zeros(2))
    assert isinstance(build_loss("Chunked_Softmax"), ChunkedSoftmaxLoss)
    assert "chunked_softmax" in LOSSES


@pytest.mark.parametrize("model", ["SASRec", "BPR"])
def test_a_model_trains_with_it_and_matches_softmax(make_split, tmp_path, model):
    """Same batch, same weights: the same loss and gradients as loss softmax; then a short fit."""
    from recstudio.model.base.meta import DataMeta
    from recstudio.model.registry import get_model
    split = make_split(0, 20, 30, (5, 12), **({"split_mode": "loo"} if model == "SASRec" else {}))
    small = dict(embed_dim=8, batch_size=64, quiet=True, epochs=2, early_stop_patience=2, eval_batch_size=16)
    if model == "SASRec":
        small.update(n_layers=1, n_heads=1, max_seq_len=6, dropout=0.0)
    results = {}
    for name in ("softmax", "chunked_softmax"):
        torch.manual_seed(0)
        m = get_model(model)(loss=name, **small)
        m.build(DataMeta.from_split(split))
        ds = m._get_dataset_class()(split, "train", seed=0, **m._dataset_kwargs())
        batch = next(iter(ds.loader(64, shuffle=False)))
        loss = m.training_loss(batch)
        grads = torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad], allow_unused=True)
        results[name] = (loss.detach(), [g for g in grads if g is not None])
    (a, ga), (b, gb) = results["softmax"], results["chunked_softmax"]
    assert torch.allclose(a, b, atol=1e-5)
    assert len(ga) == len(gb) and all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))
    fitted = get_model(model)(loss="chunked_softmax", **small)
    metrics = fitted.fit(split, run_dir=str(tmp_path / model))
    assert all(v == v for v in metrics.values()) and "ndcg@10" in metrics


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_softmax_from_vectors_matches_the_score_path(temperature):
    """loss softmax given the vectors (one [P, N] buffer reused in place) = loss softmax given the scores."""
    torch.manual_seed(3)
    q = torch.randn(29, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(57, 8, dtype=torch.float64, requires_grad=True)
    pos = torch.randint(1, 57, (29,))
    for reduction in ("mean", "sum", "none"):
        fn = SoftmaxLoss(temperature=temperature, reduction=reduction)
        scores = q @ v.t()
        scores[:, 0] = float("-inf")
        ref = fn(all_score=scores, pos_index=pos)
        got = fn(query=q, item_vectors=v, pos_index=pos)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-10)
        w = torch.randn(ref.shape, dtype=torch.float64)  # a non-uniform upstream gradient for 'none'
        gr = torch.autograd.grad((ref * w).sum(), (q, v))
        gg = torch.autograd.grad((got * w).sum(), (q, v))
        assert all(torch.allclose(x, y, atol=1e-10) for x, y in zip(gr, gg))


def test_one_block_backward_refuses_a_second_pass():
    q = torch.randn(3, 4, requires_grad=True)
    v = torch.randn(9, 4, requires_grad=True)
    loss = SoftmaxLoss()(query=q, item_vectors=v, pos_index=torch.tensor([1, 2, 3]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()


def test_the_sequential_family_hands_softmax_the_vectors(make_split, monkeypatch):
    """SASRec's loss softmax goes through the vector path (inner product), with the value of the score path."""
    from recstudio.model.base.meta import DataMeta
    from recstudio.model.loss import chunked
    from recstudio.model.registry import get_model
    split = make_split(0, 20, 30, (5, 12), split_mode="loo")
    torch.manual_seed(0)
    m = get_model("SASRec")(loss="softmax", embed_dim=8, n_layers=1, max_seq_len=6, dropout=0.0, quiet=True)
    m.build(DataMeta.from_split(split))
    batch = next(iter(m._get_dataset_class()(split, "train", seed=0, **m._dataset_kwargs()).loader(64, shuffle=False)))
    calls = []
    original = chunked.softmax_from_vectors
    monkeypatch.setattr(chunked, "softmax_from_vectors", lambda *a, **k: calls.append(1) or original(*a, **k))
    fused = m.training_loss(batch)
    assert calls == [1]
    monkeypatch.setattr(type(m.loss_fn), "accepts_vectors", False)  # the [P, N] score path
    scored = m.training_loss(batch)
    assert len(calls) == 1 and torch.allclose(fused, scored, atol=1e-5)
