"""Training options of the feature (CTR) models: pos_weight, negative down-sampling with calibration,
embedding sizes per field (int / dict / auto), per-field L2 on the batch's embedding rows, gradient
clipping; each validated, and honoured (or refused) by every registered feature model."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from recstudio.data import from_dataframe
from recstudio.model.base.defaults import model_yaml
from recstudio.model.family.feature import FeatureRecommender, FieldRowsDataset, calibrate
from recstudio.model.module.field_embedding import FieldEmbedding, auto_dim
from recstudio.model.registry import conformance_settings, get_model, list_models
from recstudio.utils.errors import ConfigError, DataError

QUIET = {"quiet": True, "embed_dim": 4, "batch_size": 256, "eval_batch_size": 1024, "num_threads": 1}
CTR_MODELS = sorted(m["name"] for m in list_models() if m["category"] == "ctr")


def rare_click_frame(n=12000, seed=0):
    """Clicks from a logistic model of the context and the item's group: base rate about 9%."""
    rng = np.random.default_rng(seed)
    users, items, ctx = rng.integers(0, 60, n), rng.integers(0, 40, n), rng.integers(0, 5, n)
    logit = -3.8 + np.array([0.0, 0.5, 1.0, 1.5, 2.0])[ctx] + np.array([-1.0, 0.0, 0.5, 1.0])[items % 4]
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame({"u": users, "i": items, "ctx": [f"c{c}" for c in ctx], "label": label})


@pytest.fixture(scope="module")
def rare_split():
    ds = from_dataframe(rare_click_frame(), "u", "i", dedup="all", split_mode="entry", split_ratio=[0.7, 0.2, 0.1])
    return ds.split()


@pytest.fixture(scope="module")
def feat_split():
    """A table with a token field, a float item feature and a token item feature (for the row penalties)."""
    rng = np.random.default_rng(1)
    n = 800
    df = pd.DataFrame({"u": rng.integers(0, 20, n), "i": rng.integers(0, 15, n),
                       "ctx": [f"c{c}" for c in rng.integers(0, 4, n)], "label": rng.integers(0, 2, n).astype(float)})
    item_feat = pd.DataFrame({"i": range(15), "cat": [f"k{i % 3}" for i in range(15)], "price": np.linspace(0, 1, 15)})
    return from_dataframe(df, "u", "i", item_features=item_feat, dedup="all", split_mode="entry").split()


def built(name, split, **cfg):
    model = get_model(name)(**{**QUIET, **cfg})
    return model.build(model.context_from(split))


def train_batch(model, split, size=256):
    ds = model._get_dataset_class()(split, "train", seed=model.config["seed"], **model._dataset_kwargs())
    return next(iter(ds.loader(size)))


# ---- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,match", [
    ("pos_weight", 0, "pos_weight must be a number > 0"),
    ("pos_weight", -2.0, "pos_weight must be a number > 0"),
    ("neg_sample_rate", 0.0, r"neg_sample_rate must be in \(0, 1\]"),
    ("neg_sample_rate", 1.5, r"neg_sample_rate must be in \(0, 1\]"),
    ("embed_dim", 0, "embed_dim must be an int >= 1, 'auto', or a dict"),
    ("embed_dim", 2.5, "embed_dim must be an int >= 1, 'auto'"),
    ("embed_dim", "big", "embed_dim must be an int >= 1, 'auto'"),
    ("embed_dim", {"u": -1}, r"embed_dim\['u'\] must be"),
    ("embed_dim", {}, "embed_dim is an empty dict"),
    ("embed_l2", -0.1, "embed_l2 must be a number >= 0"),
    ("embed_l2", {"u": "x"}, r"embed_l2\['u'\] must be a number >= 0"),
])
def test_bad_values_are_config_errors_naming_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        get_model("FM")(**{**QUIET, key: value})


def test_wrong_types_are_refused_by_the_config_layer():
    with pytest.raises(ConfigError, match="'pos_weight' expects"):
        get_model("FM")(pos_weight="heavy")
    with pytest.raises(ConfigError, match="'embed_l2' expects"):
        get_model("FM")(embed_l2=[0.1])
    assert get_model("FM")(embed_dim=16.0).config["embed_dim"] == 16     # a tuner's 16.0 is 16


def test_every_feature_model_takes_the_options_without_listing_them_in_its_yaml():
    for name in CTR_MODELS:
        cls = get_model(name)
        assert "pos_weight" not in model_yaml(cls)["model"]
        cfg = cls().config
        assert (cfg["pos_weight"], cfg["neg_sample_rate"], cfg["embed_l2"]) == (1.0, 1.0, 0.0), name
        assert cfg["embed_dim"] == model_yaml(cls)["model"]["embed_dim"], name       # the YAML default stays
    with pytest.raises(ConfigError, match="unknown key 'pos_weight'"):
        get_model("BPR")(pos_weight=2.0)                     # only the feature family has them


def test_losses_other_than_bce_refuse_pos_weight_and_down_sampling(rare_split):
    with pytest.raises(ConfigError, match="binary cross-entropy on logits"):
        built("FM", rare_split, loss="mse", pos_weight=2.0)


# ---- pos_weight ------------------------------------------------------------------------------------------
def test_pos_weight_weights_the_positive_term_of_the_bce(rare_split):
    torch.manual_seed(0)
    plain = built("FM", rare_split)
    heavy = built("FM", rare_split, pos_weight=4.0)
    heavy.load_state_dict(plain.state_dict())
    batch = train_batch(plain, rare_split)
    z, y = plain.forward(batch).detach(), plain.ctr_labels(batch)
    hand = -(4.0 * y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()
    torch.testing.assert_close(heavy.training_loss(batch).detach(), hand)
    torch.testing.assert_close(plain.training_loss(batch).detach(), F.binary_cross_entropy_with_logits(z, y))


# ---- negative down-sampling and calibration -----------------------------------------------------------------
def test_calibration_formula_is_a_logit_shift():
    q = torch.tensor([0.01, 0.3, 0.5, 0.99])
    for r in (0.05, 0.5, 1.0):
        p = calibrate(q, r)
        torch.testing.assert_close(torch.logit(p), torch.logit(q) + math.log(r))
    assert calibrate(0.5, 1.0) == 0.5


def test_down_sampling_keeps_every_positive_and_a_fixed_share_of_negatives(rare_split):
    model = built("LR", rare_split, neg_sample_rate=0.25)
    kwargs = model._dataset_kwargs()
    assert kwargs["neg_sample_rate"] == 0.25 and kwargs["label"] == ("label", None)
    full = FieldRowsDataset(rare_split, "train", keep_fields=["label"], num_neg=0)
    down = FieldRowsDataset(rare_split, "train", seed=model.config["seed"], **kwargs)
    again = FieldRowsDataset(rare_split, "train", seed=model.config["seed"], **kwargs)
    other = FieldRowsDataset(rare_split, "train", seed=model.config["seed"] + 1, **kwargs)
    y_full, y_down = full.columns["label"], down.columns["label"]
    assert int(y_down.sum()) == int(y_full.sum())                                   # every positive
    neg_full, neg_down = int((y_full == 0).sum()), int((y_down == 0).sum())
    sd = math.sqrt(neg_full * 0.25 * 0.75)
    assert abs(neg_down - 0.25 * neg_full) < 4 * sd                                  # ~ r of the negatives
    assert np.array_equal(down.rows, again.rows) and not np.array_equal(down.rows, other.rows)  # fixed by the seed
    assert set(np.asarray(down.rows).tolist()) <= set(np.asarray(full.rows).tolist())
    assert len(model._eval_dataset(rare_split, "test")) == len(rare_split.test)       # evaluation keeps every row


def test_down_sampling_with_a_threshold_label_and_refusals(rare_split):
    split = from_dataframe(rare_click_frame(2000).assign(stars=lambda d: 1 + 4 * d["label"]).drop(columns="label"),
                           "u", "i", rating="stars", dedup="all", split_mode="entry").split()
    model = built("LR", split, label_threshold=4, neg_sample_rate=0.5)
    ds = FieldRowsDataset(split, "train", **model._dataset_kwargs())
    assert model._dataset_kwargs()["label"] == ("stars", 4.0) and 0 < len(ds) < len(split.train)
    with pytest.raises(DataError, match="keeps none of the"):
        FieldRowsDataset(rare_split, "train", keep_fields=["label"], neg_sample_rate=1e-9, label=("label", None))
    soft = from_dataframe(rare_click_frame(500).assign(label=lambda d: d["label"] * 0.5 + 0.25), "u", "i",
                          dedup="all", split_mode="entry").split()
    with pytest.raises(DataError, match="needs 0/1 labels"):
        FieldRowsDataset(soft, "train", keep_fields=["label"], neg_sample_rate=0.5, label=("label", None))


def test_training_loss_sees_the_down_sampled_probability(rare_split):
    torch.manual_seed(0)
    plain = built("FM", rare_split)
    down = built("FM", rare_split, neg_sample_rate=0.2)
    down.load_state_dict(plain.state_dict())
    batch = train_batch(plain, rare_split)
    z, y = plain.forward(batch).detach(), plain.ctr_labels(batch)
    assert down.logit_offset == pytest.approx(-math.log(0.2))
    # the model's output z is logit(p); the loss sees logit(q) = logit(p) - log(r), i.e. q = p / (p + (1 - p) r)
    torch.testing.assert_close(down.training_loss(batch).detach(),
                               F.binary_cross_entropy_with_logits(z - math.log(0.2), y))
    q = torch.sigmoid(z - math.log(0.2))
    torch.testing.assert_close(calibrate(q, 0.2), torch.sigmoid(z))


def test_a_model_trained_on_down_sampled_rows_predicts_calibrated_probabilities(rare_split, tmp_path):
    rate = 0.2
    train_cfg = dict(epochs=8, learning_rate=0.05, early_stop_patience=8, seed=3)
    model = get_model("LR")(neg_sample_rate=rate, **QUIET, **train_cfg)
    metrics = model.fit(rare_split, run_dir=tmp_path / "down")
    test = model._eval_dataset(rare_split, "test")
    model.eval()
    with torch.no_grad():
        batch = next(iter(test.loader(len(test))))
        z = model.score_candidates(batch, None, batch[model.meta.iid_field])
        y = model.ctr_labels(batch)
    p = torch.sigmoid(z)
    base = float(y.mean())
    train_rate = float(FieldRowsDataset(rare_split, "train", seed=3, **model._dataset_kwargs()).columns["label"].mean())
    assert 0.05 < base < 0.15 and train_rate > 2.5 * base                            # really down-sampled
    assert abs(float(p.mean()) - base) < 0.2 * base                                  # calibrated to the true rate
    q = torch.sigmoid(z + model.logit_offset)                                         # what the down-sampled rows saw
    assert abs(float(q.mean()) - train_rate) < abs(float(q.mean()) - base)
    # the reported logloss is that of the calibrated probabilities, and beats the uncalibrated ones by far
    logloss = float(F.binary_cross_entropy(p.double(), y.double()))
    assert metrics["logloss"] == pytest.approx(logloss, abs=1e-5)
    assert float(F.binary_cross_entropy(q.double(), y.double())) > logloss + 0.1
    # and it is close to the logloss of a model trained on every row
    full = get_model("LR")(**QUIET, **train_cfg).fit(rare_split, run_dir=tmp_path / "full")
    assert metrics["logloss"] < full["logloss"] + 0.02 and metrics["auc"] > full["auc"] - 0.02


# ---- embedding sizes ----------------------------------------------------------------------------------------
def test_auto_dim_rule():
    assert [auto_dim("token", n) for n in (1, 16, 81, 10_000, 10 ** 12)] == [6, 12, 18, 60, 64]
    assert auto_dim("float", 1) == 6 and auto_dim("float_seq", 16) == 12


def test_an_int_embed_dim_builds_the_single_width_module(rare_split):
    model = built("FM", rare_split, embed_dim=6)
    assert model.field_dims is None and model.embedding.project is None and model.embed_dim == 6
    assert not any("project" in k for k in model.state_dict())


def test_field_dims_are_projected_to_the_common_width():
    emb = FieldEmbedding({"a": ("token", 5), "b": ("token", 7), "x": ("float", 1)}, dim=4, field_dims={"a": 2})
    assert emb.embed["a"].table.weight.shape == (5, 2) and sorted(emb.project) == ["a"]
    values = {"a": torch.tensor([3, 0]), "b": torch.tensor([1, 2]), "x": torch.tensor([1.0, 2.0])}
    out = emb(values)
    assert out.shape == (2, 3, 4)
    row = emb.embed["a"].table.weight[3]
    torch.testing.assert_close(out[0, 0], torch.cat([row, row.new_zeros(2)]))       # starts as zero padding
    assert torch.count_nonzero(out[1, 0]) == 0                                       # padding stays absent
    with torch.no_grad():
        emb.project["a"].weight.normal_()
    torch.testing.assert_close(emb(values)[0, 0], emb.project["a"].weight @ row)
    with pytest.raises(ConfigError, match=r"field_dims\['a'\] must be an int in \[1, dim=4\]"):
        FieldEmbedding({"a": ("token", 5)}, dim=4, field_dims={"a": 8})
    with pytest.raises(ConfigError, match="no field"):
        FieldEmbedding({"a": ("token", 5)}, dim=4, field_dims={"z": 2})


def test_embed_dim_per_field_dict_and_auto(rare_split, tmp_path):
    model = built("DeepFM", rare_split, embed_dim={"u": 8, "default": 3}, mlp_hidden=[8])
    assert model.field_dims == {"u": 8, "ctx": 3, "i": 3} and model.embed_dim == 8
    assert sorted(model.embedding.project) == ["ctx", "i"]
    assert model.embedding.embed["ctx"].table.weight.shape[1] == 3
    model.training_loss(train_batch(model, rare_split, 64)).backward()
    assert all(bool(p.grad.any()) for p in model.embedding.project.parameters())    # the projections learn
    sizes = {f.key: f.size for f in model.fields}
    auto = built("FM", rare_split, embed_dim="auto")
    assert auto.field_dims == {k: auto_dim("token", n) for k, n in sizes.items()}
    assert auto.embed_dim == max(auto.field_dims.values())
    mixed = built("FM", rare_split, embed_dim={"u": "auto", "default": 2})
    assert mixed.field_dims == {"u": auto_dim("token", sizes["u"]), "ctx": 2, "i": 2}
    metrics = get_model("FM")(**{**QUIET, "embed_dim": {"u": 6, "default": 2}, "epochs": 2}).fit(
        rare_split, run_dir=tmp_path)
    assert metrics["auc"] > 0.6
    with pytest.raises(ConfigError, match=r"no size for the fields \['ctx', 'i'\]"):
        built("FM", rare_split, embed_dim={"u": 4})
    with pytest.raises(ConfigError, match="embed_dim names \\['usr'\\].*Did you mean"):
        built("FM", rare_split, embed_dim={"usr": 4, "default": 2})


@pytest.mark.parametrize("name", ["FFM", "HOFM", "ONN", "FNN"])
def test_models_packing_vectors_per_field_refuse_sizes_per_field(name):
    with pytest.raises(ConfigError, match="needs one size for every field: set embed_dim to an int"):
        get_model(name)(embed_dim="auto")


# ---- embed_l2 -----------------------------------------------------------------------------------------------
def rows_norm(model, batch, key):
    """By hand: sum over the batch's rows of the squared norm of field ``key``'s table row and weight."""
    f = model.field_by_key[key]
    enc, lin = model.embedding.embed[key], model.embedding.weights[key]
    if f.owner == "item":
        ids = batch[model.meta.iid_field]
        value = ids if key == model.meta.iid_field else model.item_feats[f.source][ids]
    elif f.owner == "user":
        value = batch[model.meta.uid_field]
    else:
        value = batch[f.source]
    if f.type == "float":
        return (enc.vector.pow(2).sum() + lin.vector.pow(2).sum()) * len(value)
    return enc.table.weight[value].pow(2).sum() + lin.table.weight[value].pow(2).sum()


def test_embed_l2_penalises_the_rows_the_batch_reads(feat_split):
    torch.manual_seed(0)
    plain = built("FM", feat_split)
    assert plain.used_fields == ["u", "ctx", "i", "cat", "price"]
    for l2 in (0.3, {"i": 0.5, "price": 2.0}, {"cat": 1.0, "default": 0.1}):
        reg = built("FM", feat_split, embed_l2=l2)
        reg.load_state_dict(plain.state_dict())
        with torch.no_grad():   # rows far from their init, so that the penalty is large
            for p in reg.embedding.parameters():
                p.normal_()
        batch = train_batch(plain, feat_split, 128)
        weights = reg.embed_l2
        hand = sum(weights[k] / 2 * rows_norm(reg, batch, k) for k in reg.used_fields) / 128
        neutral = built("FM", feat_split)
        neutral.load_state_dict(reg.state_dict())
        torch.testing.assert_close(reg.training_loss(batch), neutral.training_loss(batch) + hand)
    assert reg.embed_l2 == {"u": 0.1, "ctx": 0.1, "i": 0.1, "cat": 1.0, "price": 0.1}
    with pytest.raises(ConfigError, match="embed_l2 names \\['item'\\]"):
        built("FM", feat_split, embed_l2={"item": 1.0})


def test_embed_l2_gradient_reaches_only_the_rows_read(feat_split):
    model = built("LR", feat_split, embed_l2={"u": 1.0})
    batch = train_batch(model, feat_split, 16)
    model.training_loss(batch).backward()
    grad = model.embedding.weights["u"].table.weight.grad.abs().sum(1)
    read = torch.zeros_like(grad, dtype=torch.bool)
    read[batch["u"]] = True
    assert bool((grad[~read] == 0).all()) and bool((grad[batch["u"]] > 0).all())


def test_record_rows_counts_pooled_sequences_and_does_not_nest():
    emb = FieldEmbedding({"tags": ("token_seq", 5)}, dim=2, linear=False)
    with emb.record_rows() as rows:
        emb({"tags": torch.tensor([[1, 2, 0], [2, 0, 0]])})
        with pytest.raises(ConfigError, match="already active"):
            with emb.record_rows():
                pass
    t = emb.embed["tags"].table.weight
    torch.testing.assert_close(rows["tags"], t[1].pow(2).sum() + 2 * t[2].pow(2).sum())
    assert emb._record is None


# ---- gradient clipping -------------------------------------------------------------------------------------
class ParamTrace(Callback):
    def on_train_start(self, trainer, module):
        self.start = torch.cat([p.detach().flatten().clone() for p in module.parameters() if p.requires_grad])
        self.steps = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1

    def on_train_end(self, trainer, module):
        self.end = torch.cat([p.detach().flatten().clone() for p in module.parameters() if p.requires_grad])


def test_gradient_clip_bounds_each_step_of_a_feature_model(rare_split, tmp_path):
    cfg = {**QUIET, "optimizer": "sgd", "learning_rate": 1.0, "epochs": 1, "embed_dim": 4}
    moved = {}
    for clip in (None, 1e-3):
        trace = ParamTrace()
        get_model("DeepFM")(**cfg, mlp_hidden=[8], gradient_clip=clip).fit(
            rare_split, run_dir=tmp_path / str(clip), callbacks=[trace])
        moved[clip] = float((trace.end - trace.start).norm())
    # with SGD and lr 1 each step moves the parameters by the clipped gradient: norm <= clip
    assert moved[1e-3] <= trace.steps * 1e-3 * (1 + 1e-4) and moved[None] > 10 * moved[1e-3]


def test_every_feature_model_trains_by_automatic_optimisation():
    """Lightning's gradient_clip_val (the gradient_clip key) applies to automatic optimisation only."""
    for name in CTR_MODELS:
        cls = get_model(name)
        assert cls.fit_mode == "gradient" and cls().automatic_optimization, name


# ---- every feature model honours the options or refuses them -----------------------------------------------
def zoo_config(cls):
    cfg = {"embed_dim": 4, "mlp_hidden": [4], "max_seq_len": 4, "quiet": True}
    cfg = {k: v for k, v in cfg.items() if k in cls().config}
    return {**cfg, **conformance_settings(cls)["config"]}


@pytest.mark.parametrize("name", CTR_MODELS)
def test_every_feature_model_applies_each_option_or_refuses_it(name, tiny_world):
    """pos_weight / neg_sample_rate change the loss by exactly the BCE's change on the model's logits,
    embed_l2 adds a penalty; a model whose own loss cannot apply one refuses it when created."""
    cls = get_model(name)
    base_cfg = zoo_config(cls)
    neutral = cls(**base_cfg)
    torch.manual_seed(0)
    neutral.build(neutral.context_from(tiny_world))
    neutral.eval()
    batch = train_batch(neutral, tiny_world, 64)
    with torch.no_grad():
        reference = neutral.training_loss(batch)
        z, y = neutral.forward(batch), neutral.ctr_labels(batch)
    for key, value in (("pos_weight", 3.0), ("neg_sample_rate", 0.5), ("embed_l2", 5.0)):
        try:
            model = cls(**base_cfg, **{key: value})
        except ConfigError as e:
            assert "does not apply" in str(e) and key in str(e), (name, key, e)
            continue
        model.build(model.context_from(tiny_world))
        model.load_state_dict(neutral.state_dict())
        model.eval()
        if key == "embed_l2":
            with torch.no_grad():  # embedding rows far from their 1e-4 init, so that an L2 on them shows
                for p in model.embedding.parameters():
                    p.normal_(std=0.5)
            plain = cls(**base_cfg)
            plain.build(plain.context_from(tiny_world))
            plain.load_state_dict(model.state_dict())
            plain.eval()
            with torch.no_grad():
                gap = float(model.training_loss(batch) - plain.training_loss(batch))
            assert gap > 1e-3, (name, gap)
            continue
        offset = -math.log(value) if key == "neg_sample_rate" else 0.0
        w = torch.tensor(value if key == "pos_weight" else 1.0)
        with torch.no_grad():
            gap = model.training_loss(batch) - reference
        expected = (F.binary_cross_entropy_with_logits(z + offset, y, pos_weight=w)
                    - F.binary_cross_entropy_with_logits(z, y))
        assert abs(float(expected)) > 1e-3
        torch.testing.assert_close(gap, expected, rtol=1e-4, atol=1e-5, msg=f"{name} {key}")
    try:
        model = cls(**{**base_cfg, "embed_dim": {"default": 2, neutral.used_fields[0]: 4}})
    except ConfigError as e:
        assert "set embed_dim to an int" in str(e), (name, e)
        return
    torch.manual_seed(0)
    model.build(model.context_from(tiny_world))
    model.train()
    loss = model.training_loss(train_batch(model, tiny_world, 64))
    loss.backward()
    assert math.isfinite(float(loss.detach())) and model.embed_dim == 4
    assert model.field_dims[neutral.used_fields[0]] == 4 and set(model.field_dims.values()) == {2, 4}
    if name != "LR":  # LR reads the first-order weights only (its tables are frozen)
        assert any(p.grad is not None and bool(p.grad.any()) for p in model.embedding.embed.parameters())


def test_which_options_an_overriding_training_loss_applies():
    from recstudio.model.family.feature import _applied_loss_options
    from recstudio.model.zoo.ctr.fm import FM

    class Delegating(FM):
        def training_loss(self, batch):
            return super().training_loss(batch) + 1.0

    class Own(FM):
        def training_loss(self, batch):
            return self.loss_fn(pos_score=self.forward(batch), label=self.ctr_labels(batch))

    class Declared(Own):
        applied_loss_options = ("pos_weight", "neg_sample_rate")

        def training_loss(self, batch):
            return self.ctr_loss(self.forward(batch), self.ctr_labels(batch))

    class Below(Delegating, Declared):
        pass

    assert _applied_loss_options(FM, FeatureRecommender) == ("pos_weight", "neg_sample_rate", "embed_l2")
    assert _applied_loss_options(Delegating, FeatureRecommender) == ("pos_weight", "neg_sample_rate", "embed_l2")
    assert _applied_loss_options(Own, FeatureRecommender) == ()
    assert _applied_loss_options(Declared, FeatureRecommender) == ("pos_weight", "neg_sample_rate")
    assert _applied_loss_options(Below, FeatureRecommender) == ("pos_weight", "neg_sample_rate")
