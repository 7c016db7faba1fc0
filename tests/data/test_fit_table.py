"""recstudio.fit_table / model.update / predict_table: a FeaturePipeline reaching training, checkpoints and
serving. Train on week A, update on week B (new users and items, a shifted price): the grown tables keep every
trained row (rows B never reads stay bit-identical), the new rows train; the pipeline path scores exactly as a
manual transform; save / load needs no data; /score encodes raw rows through the saved pipeline."""
import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data.features import Categorical, FeaturePipeline, Hashed, Numeric, TokenSeq
from recstudio.data.features.dataset import OOV_TOKEN, pipeline_split
from recstudio.utils.errors import ConfigError, DataError

TINY = dict(epochs=2, batch_size=64, eval_batch_size=256, quiet=True, embed_dim=4)


def week(n, users, items, seed, shift=0.0):
    """Raw rows: click depends on the user's parity, the item's parity and the price."""
    rng = np.random.default_rng(seed)
    u, i = rng.choice(users, n), rng.choice(items, n)
    price = rng.normal(10 + shift, 3, n)
    tags = ["|".join(f"t{t}" for t in rng.choice(6, size=rng.integers(1, 4), replace=False)) for _ in range(n)]
    logit = np.where(np.array([int(x[1:]) % 2 == 0 for x in u]), 1.0, -1.0) + np.where(i % 2 == 0, 0.8, -0.8) + 0.2 * (price - 10)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"user_id": u, "item_id": i, "price": price, "device": rng.choice(["ios", "web"], n),
                         "tags": tags, "click": click})


WEEK_A = week(600, np.array([f"u{k}" for k in range(20)]), np.arange(30), 0)
WEEK_B = week(400, np.array([f"u{k}" for k in range(12, 32)]), np.arange(22, 45), 1, shift=3.0)


def make_pipeline():
    return FeaturePipeline([Categorical("user_id"), Categorical("item_id"), Numeric("price"),
                            Hashed("device", buckets=16), TokenSeq("tags", max_len=3, sep="|")], labels=["click"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit_table")
    model = recstudio.fit_table("DeepFM", train=WEEK_A.iloc[:450], valid=WEEK_A.iloc[450:], pipeline=make_pipeline(),
                                label="click", run_dir=str(root / "a"), mlp_hidden=[8], **TINY)
    return model, root


def rows_of(model, key):
    return model.embedding.embed[key].table.weight.detach().clone()


def test_fit_table_trains_on_the_pipeline_ids(trained):
    model, _ = trained
    pipe = model.feature_pipeline
    assert pipe is not None and pipe.fitted
    for key, size in pipe.sizes().items():  # every token table has the pipeline's size, id 0 = padding
        assert model.embedding.embed[key].table.num_embeddings == size
    assert model.meta.num_users == pipe.sizes()["user_id"] and model.meta.user_tokens[0] == OOV_TOKEN
    assert set(model.table_metrics) >= {"auc", "logloss"} and model.table_metrics["auc"] > 0.6


def test_predict_table_equals_a_manual_transform(trained):
    model, _ = trained
    frame = WEEK_A.drop(columns="click")
    batch = {k: torch.from_numpy(v) for k, v in model.feature_pipeline.transform(frame).items()}
    model.eval()
    with torch.no_grad():
        manual = torch.sigmoid(model.forward(batch)).double().numpy()
    np.testing.assert_allclose(model.predict_table(frame), manual, rtol=0, atol=1e-12)
    # an unseen user / item falls into the OOV bucket (id 1), as the manual transform maps it
    ghost = frame.iloc[:2].assign(user_id=["nobody", "u1"], item_id=[999, 3])
    assert model.transform_table(ghost)["user_id"].tolist()[0] == 1
    assert model.predict_table(ghost).shape == (2,)


def test_update_grows_tables_keeps_old_rows_and_trains_new_ones(tmp_path):
    model = recstudio.fit_table("FM", train=WEEK_A, pipeline=make_pipeline(), label="click",
                                run_dir=str(tmp_path / "a"), **TINY)
    before = {k: rows_of(model, k) for k in ("user_id", "item_id")}
    old_sizes = model.feature_pipeline.sizes()
    old_pipe = FeaturePipeline.from_state(model.feature_pipeline.state_dict())
    price_mean = old_pipe.feature("price").stats.mean

    import pytorch_lightning as pl

    class Capture(pl.Callback):
        def on_fit_start(self, trainer, module):
            self.rows = {k: rows_of(module, k) for k in before}

    cap = Capture()
    model.update(WEEK_B, epochs=2, run_dir=str(tmp_path / "b"), callbacks=[cap])
    pipe = model.feature_pipeline
    new_sizes = pipe.sizes()
    assert pipe.feature("price").stats.mean > price_mean + 1  # the running statistics followed week B
    for key, old_rows in before.items():
        n_old, n_new = old_sizes[key], new_sizes[key]
        assert n_new > n_old and rows_of(model, key).shape[0] == n_new
        torch.testing.assert_close(cap.rows[key][:n_old], old_rows, rtol=0, atol=0)   # grown: old rows kept
        seen_b = np.unique(pipe.transform(WEEK_B)[key])
        untouched = np.setdiff1d(np.arange(2, n_old), seen_b)                        # A-only values
        assert len(untouched) > 0
        after = rows_of(model, key)
        torch.testing.assert_close(after[untouched], old_rows[untouched], rtol=0, atol=0)
        new_ids = np.arange(n_old, n_new)
        assert (after[new_ids] - cap.rows[key][new_ids]).abs().sum(-1).min() > 0     # every new row trained
    # old ids keep their meaning: week A's values map to the same ids before and after
    for key in before:
        assert pipe.transform(WEEK_A)[key].tolist() == old_pipe.transform(WEEK_A)[key].tolist()
    assert "embedding.embed.user_id.table.weight" in model.grown_tensors


def test_save_load_round_trip_scores_raw_rows_without_data(trained, tmp_path):
    model, root = trained
    path = model.save(tmp_path / "deepfm.pt")
    for source in (path, root / "a"):  # a saved file, and the run folder's best checkpoint
        loaded = recstudio.load(source)
        assert loaded.feature_pipeline.state_dict() == model.feature_pipeline.state_dict()
        frame = WEEK_B.drop(columns="click")  # new values -> OOV
        np.testing.assert_allclose(loaded.predict_table(frame), model.predict_table(frame), atol=1e-12)


def test_clear_errors(trained):
    model, _ = trained
    frame = WEEK_A.drop(columns="click").iloc[:3]
    with pytest.raises(DataError, match="unknown fields.*colour"):
        model.predict_table(frame.assign(colour="red"))
    with pytest.raises(DataError, match="price"):
        model.predict_table(frame.assign(price=["cheap", "1.0", "2.0"]))
    with pytest.raises(DataError, match="lacks columns.*device"):
        model.predict_table(frame.drop(columns="device"))
    with pytest.raises(ConfigError, match="feature \\(CTR\\) models"):
        recstudio.fit_table("BPR", train=WEEK_A, pipeline=make_pipeline(), label="click")
    with pytest.raises(ConfigError, match="labels"):
        recstudio.fit_table("FM", train=WEEK_A, pipeline=make_pipeline(), label="buy")
    with pytest.raises(ConfigError, match="user="):
        recstudio.fit_table("FM", train=WEEK_A, pipeline=make_pipeline(), label="click", user="price")
    with pytest.raises(ConfigError, match="multi-task"):
        recstudio.fit_table("MMoE", train=WEEK_A, pipeline=make_pipeline(), label="click")
    bpr_like = recstudio.get_model("FM")(**TINY)
    with pytest.raises(ConfigError, match="fit_table"):
        bpr_like.predict_table(frame)


def test_pipeline_split_keeps_ids_and_phase_rows():
    pipe = make_pipeline().fit(WEEK_A)
    split = pipeline_split(pipe, WEEK_A.iloc[:500], WEEK_A.iloc[500:550], WEEK_A.iloc[550:], labels=["click"])
    ds = split.dataset
    assert (len(split.train), len(split.valid), len(split.test)) == (500, 50, 50)
    assert np.all(np.diff(ds.users) >= 0)                                   # user-sorted
    assert ds.vocab_size("tags") == pipe.sizes()["tags"] and ds.num_items == pipe.sizes()["item_id"]
    # the rows of a phase carry the pipeline's ids of that phase's frame (as a multiset per user)
    valid = pipe.transform(WEEK_A.iloc[500:550])
    assert sorted(ds.inter["user_id"][split.valid].tolist()) == sorted(valid["user_id"].tolist())
    assert "click" in ds.inter and ds.decode_users([2])[0] == pipe.feature("user_id").vocab.values[0]


# ---- every kind of feature model at tiny size (RECSTUDIO_ALL_FEATURE_MODELS=1: every registered one) -------
HANDFUL = ["LR", "FM", "DeepFM", "DCN", "FFM", "AutoInt", "DIN", "MMoE"]


def feature_models():
    import os
    if not os.environ.get("RECSTUDIO_ALL_FEATURE_MODELS"):
        return HANDFUL
    return sorted(m["name"] for m in recstudio.list_models() if m["base"] == "Feature")


@pytest.mark.parametrize("name", feature_models())
def test_feature_models_train_update_and_score_from_tables(name, tmp_path):
    from recstudio.model.family.multitask import MultiTaskFeatureRecommender
    from recstudio.model.registry import conformance_settings, get_model
    cls = get_model(name)
    conf = {k: v for k, v in conformance_settings(cls)["config"].items()
            if k not in ("label_threshold", "label_field", "tasks", "rank_task")}
    multi = issubclass(cls, MultiTaskFeatureRecommender)
    a = WEEK_A.assign(buy=(WEEK_A.click & (WEEK_A.price > 10)).astype(int))
    b = WEEK_B.assign(buy=(WEEK_B.click & (WEEK_B.price > 12)).astype(int))
    pipe = make_pipeline()
    pipe.labels = []   # fit_table sets them from label=
    model = recstudio.fit_table(name, train=a.iloc[:450], valid=a.iloc[450:], pipeline=pipe,
                                label=["click", "buy"] if multi else "click", run_dir=str(tmp_path / "a"),
                                **{**TINY, **conf, "epochs": 1})
    raw = a.drop(columns=["click", "buy"]).iloc[:7]
    p = model.predict_table(raw)
    assert p.shape == ((7, 2) if multi else (7,)) and np.all((p > 0) & (p < 1))
    model.update(b, epochs=1, run_dir=str(tmp_path / "b"))
    assert model.embedding.embed["user_id"].table.num_embeddings == model.feature_pipeline.sizes()["user_id"] > 22
    loaded = recstudio.load(model.save(tmp_path / "m.pt"))
    frame = b.drop(columns=["click", "buy"]).iloc[:7]
    np.testing.assert_allclose(loaded.predict_table(frame), model.predict_table(frame), atol=1e-12)
