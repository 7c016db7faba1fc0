"""One test over every registered model (timm-style), on tiny synthetic data.

The data (``tests/conftest.py::write_tiny_world``) has what every family needs: ratings and times, a context
column, user and item feature tables, a knowledge graph with item links and a social network; each model
sees only what it declares in ``needs``. For each model: it trains briefly with a finite loss, every
trainable parameter gets a gradient, training is deterministic under one seed, full-ranking scores have
shape [users, num_items] and equal the scores of the same (user, item) pairs scored one by one,
``recommend`` never returns a seen item, save -> load gives identical scores and recommendations, for
decomposable score functions an ANN index over the item vectors returns the exact top-k (and faiss Flat
does too), and graph models' cached vectors change after a training step. A model opts out of a check only
through its YAML's ``conformance: skip`` (or its registry entry), with the reason in its docstring — never
through a list here.
"""
import contextlib
import math

import numpy as np
import pytest
import torch

import recstudio
from recstudio.model.base.config import model_options
from recstudio.model.registry import conformance_settings, get_model, list_models

MODEL_NAMES = [m["name"] for m in list_models()]
#: small sizes for keys a model may have
TINY = {"embed_dim": 8, "gmf_dim": 4, "mlp_dim": 4, "mlp_hidden": [8, 4], "max_seq_len": 8, "hidden_dims": [16],
        "latent_dim": 8, "n_layers": 1, "n_heads": 1}


@pytest.fixture(scope="module")
def tiny_split(tiny_world):
    return tiny_world


def tiny_config(cls):
    options = model_options(cls)
    cfg = {k: v for k, v in TINY.items() if k in options}
    if "content_path" in options:  # [item-content hook] (needs may be a property: test the option)
        cfg["content_path"] = tiny_content_path()
    cfg.update(conformance_settings(cls)["config"])
    return {"epochs": 2, "batch_size": 32, "eval_batch_size": 8, "quiet": True, "early_stop_patience": 2, **cfg}


_TINY_CONTENT = {}


def tiny_content_path():
    """[item-content hook] A tiny synthetic content file for models that need item content: one float32
    ``[2, 4]`` row per item of the tiny world (``i1``..``i30``, ids in the ``.ids.txt`` sidecar), written once."""
    if "path" not in _TINY_CONTENT:
        import tempfile
        from pathlib import Path
        folder = Path(tempfile.mkdtemp(prefix="recstudio-tiny-content-"))
        np.save(folder / "content.npy", np.random.default_rng(0).normal(size=(30, 2, 4)).astype(np.float32))
        (folder / "content.ids.txt").write_text("\n".join(f"i{i}" for i in range(1, 31)) + "\n")
        _TINY_CONTENT["path"] = str(folder / "content.npy")
    return _TINY_CONTENT["path"]


def skips(name):
    return conformance_settings(get_model(name))["skip"]


@pytest.fixture(scope="module")
def trained(tiny_split, tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cls = get_model(name)
            model = cls(**tiny_config(cls))
            metrics = model.fit(tiny_split, run_dir=tmp_path_factory.mktemp(name))
            cache[name] = (model, metrics)
        return cache[name]
    return get


@contextlib.contextmanager
def restored(model):
    """Put the model's parameters, buffers, gradients and mode back after the block."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    try:
        yield model
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def ranking_scores(model, batch):
    with torch.no_grad():
        return model.score_users(batch)


def eval_batch(model, split):
    ds = model._eval_dataset(split, "test")
    return next(iter(ds.loader(8)))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_trains_with_finite_metrics(name, trained):
    model, metrics = trained(name)
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert model.model_name == name and model.paper


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_trainable_parameter_gets_a_gradient(name, trained, tiny_split):
    if "gradients" in skips(name):
        pytest.skip("registry entry: no gradient training")
    model, _ = trained(name)
    if model.fit_mode != "gradient":
        assert not [p for p in model.parameters() if p.requires_grad], "non-gradient models hold no trainable params"
        return
    with restored(model):  # a training-mode forward moves batch-norm statistics: keep the shared model as it was
        check_gradients(model, tiny_split)


def check_gradients(model, tiny_split):
    ds = model._get_dataset_class()(tiny_split, "train", seed=0, **model._dataset_kwargs())
    batch = next(iter(ds.loader(256, shuffle=False)))
    model.train()
    model.zero_grad()
    loss = model.training_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scores_shape_and_recommend_excludes_seen(name, trained, tiny_split):
    model, _ = trained(name)
    model.eval()
    batch = eval_batch(model, tiny_split)
    with torch.no_grad():
        scores = model.score_users(batch) if model.eval_task == "ranking" else None
    if scores is not None:
        assert scores.shape == (len(batch[model.meta.uid_field]), model.meta.num_items)
    ds = tiny_split.dataset
    users = ds.decode_users(np.arange(1, 9))
    items, _ = model.recommend(list(users), k=5)
    assert items.shape == (8, 5)
    for u, row in zip(users, items):
        inner = ds.encode_users([u])[0]
        seen = set(ds.decode_items(ds.items[ds.user_offsets[inner]:ds.user_offsets[inner + 1]]))
        assert not seen & set(row), f"{name} recommended seen items to {u}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_gives_identical_scores(name, trained, tiny_split, tmp_path):
    model, _ = trained(name)
    path = model.save(tmp_path / "model.pt")
    again = recstudio.load(path)
    users = list(tiny_split.dataset.decode_users(np.arange(1, 6)))
    a_items, a_scores = model.recommend(users, k=5)
    b_items, b_scores = again.recommend(users, k=5)
    assert (a_items == b_items).all()
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index_name", ["exact", "flat"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_ann_equals_exact_for_decomposable_scorers(name, index_name, trained, tiny_split):
    """The torch index and faiss Flat (when installed) over the item vectors return the exact top-k."""
    if index_name != "exact":
        pytest.importorskip("faiss")
    model, _ = trained(name)
    scorer = getattr(model, "score_func", None)
    if scorer is None or not getattr(scorer, "decomposable", False) or "ann" in skips(name):
        pytest.skip("score function is not decomposable")
    from recstudio.ann import build_index
    batch = eval_batch(model, tiny_split)
    with torch.no_grad():
        query = scorer.query_vector(model.encode_query(batch))
        vectors = scorer.item_vector(model.item_vectors())[1:]
        exact = model.score_users(batch)[:, 1:].topk(5).indices + 1
    index = build_index(index_name, vectors, metric=scorer.metric, ids=torch.arange(1, model.meta.num_items))
    _, ids = index.search(query, 5)
    assert (ids == exact).float().mean() > 0.95


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_is_deterministic_under_one_seed(name, trained, tiny_split, tmp_path):
    if "determinism" in skips(name):
        pytest.skip("registry entry: not deterministic")
    model, metrics = trained(name)
    cls = get_model(name)
    again = cls(**tiny_config(cls))
    again_metrics = again.fit(tiny_split, run_dir=tmp_path / "again")
    assert again_metrics == pytest.approx(metrics, rel=1e-6, abs=1e-9)
    users = list(tiny_split.dataset.decode_users(np.arange(1, 9)))
    a_items, a_scores = model.recommend(users, k=5)
    b_items, b_scores = again.recommend(users, k=5)
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pair_scores_equal_full_ranking_scores(name, trained, tiny_split):
    model, _ = trained(name)
    if model.eval_task != "ranking" or "pair_scores" in skips(name):
        pytest.skip("no full ranking")
    model.eval()
    batch = eval_batch(model, tiny_split)
    full = ranking_scores(model, batch)
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(1, model.meta.num_items, (full.shape[0], 4), generator=gen)
    with torch.no_grad():
        state = model.prepare_scoring(batch)
        pairs = model.score_candidates(batch, state, items)
        single = model.score_candidates(batch, model.prepare_scoring(batch), items[:, 0])
    torch.testing.assert_close(pairs, full.gather(1, items), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(single, full.gather(1, items[:, :1]).squeeze(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_vectors_are_cached_and_change_after_a_training_step(name, trained, tiny_split):
    """Vectors propagated over the training graph are computed once per evaluation and reused, and a
    training step (through the hooks Lightning calls) makes the next evaluation recompute them."""
    model, _ = trained(name)
    if not ("train_graph" in model.needs and model.supports_ann and model.fit_mode == "gradient"):
        pytest.skip("not a graph model with item vectors")
    with restored(model):  # the step below must not change the shared trained model
        check_cache_refresh(model, tiny_split)


def check_cache_refresh(model, tiny_split):
    model.eval()
    with torch.no_grad():
        before = model.item_vectors().clone()
        assert torch.equal(model.item_vectors(), before)
    ds = model._get_dataset_class()(tiny_split, "train", seed=0, **model._dataset_kwargs())
    batch = next(iter(ds.loader(64, shuffle=False)))
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    opt.zero_grad()
    loss = model.training_loss(batch)
    loss.backward()
    opt.step()
    model.on_train_batch_end(loss, batch, 0)
    model.eval()
    with torch.no_grad():
        after = model.item_vectors()
    assert not torch.allclose(before, after), "cached vectors were not refreshed after a training step"
    model.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.item_vectors(), after)  # the refreshed cache is the true value
