"""One test over every registered model (timm-style), on tiny synthetic data.

For each model: it trains briefly with a finite loss, every trainable parameter gets a gradient,
full-ranking scores have shape [users, num_items], ``recommend`` never returns a seen item,
save -> load gives identical scores, and for decomposable score functions an ANN index over the
item vectors returns the exact top-k. A model opts out of a check only through its registry entry
(``register_model(..., conformance={"skip": [...], "config": {...}})``), never through a list here.
"""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.model.base.config import model_options
from recstudio.model.registry import conformance_settings, get_model, list_models

MODEL_NAMES = [m["name"] for m in list_models()]
#: small sizes for keys a model may have
TINY = {"embed_dim": 8, "gmf_dim": 4, "mlp_dim": 4, "mlp_hidden": [8, 4], "max_seq_len": 8, "hidden_dims": [16],
        "latent_dim": 8, "n_layers": 1, "n_heads": 1}


@pytest.fixture(scope="module")
def tiny_split():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(24):
        items = rng.choice(np.arange(1, 31), size=int(rng.integers(6, 14)), replace=False)
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), float(t)))
    df = pd.DataFrame(rows, columns=["u", "i", "r", "t"])
    return from_dataframe(df, "u", "i", "r", "t").split()


def tiny_config(cls):
    options = model_options(cls)
    cfg = {k: v for k, v in TINY.items() if k in options}
    cfg.update(conformance_settings(cls)["config"])
    return {"epochs": 2, "batch_size": 32, "eval_batch_size": 8, "quiet": True, "early_stop_patience": 2, **cfg}


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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_ann_equals_exact_for_decomposable_scorers(name, trained, tiny_split):
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
    index = build_index("exact", vectors, metric=scorer.metric, ids=torch.arange(1, model.meta.num_items))
    _, ids = index.search(query, 5)
    assert (ids == exact).float().mean() > 0.95
