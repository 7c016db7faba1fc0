"""The FEATURE (CTR) family: field embeddings, FM / DeepFM, batches of the used fields, ctr evaluation,
labels, ranking all items, a known answer, and the frappe converter."""
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.data.converters import get_converter
from recstudio.model.module import FieldEmbedding
from recstudio.model.zoo.ctr.fm import fm_pairwise
from recstudio.utils.errors import ConfigError, DataError

FRAPPE = Path("/work/shared/datasets/frappe")
QUIET = {"quiet": True, "embed_dim": 8, "batch_size": 256, "eval_batch_size": 512}


def ctr_frame(n=3000, seed=0):
    """Label = (context c mod 3 == the item's category): a known function of context x item field."""
    rng = np.random.default_rng(seed)
    users, items, ctx = rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(0, 6, n)
    label = ((ctx % 3) == (items % 3)).astype(float)
    df = pd.DataFrame({"u": users, "i": items, "ctx": [f"c{c}" for c in ctx], "noise": rng.random(n),
                       "stars": rng.integers(1, 6, n).astype(float), "label": label})
    item_feat = pd.DataFrame({"i": range(30), "cat": [f"k{i % 3}" for i in range(30)],
                              "price": np.linspace(0, 1, 30)})
    return df, item_feat


@pytest.fixture(scope="module")
def ctr_split():
    df, item_feat = ctr_frame()
    ds = from_dataframe(df, "u", "i", rating="stars", item_features=item_feat, dedup="all", split_mode="entry",
                        split_ratio=[0.7, 0.2, 0.1])
    return ds.split()


@pytest.fixture(scope="module")
def trained_fm(ctr_split, tmp_path_factory):
    model = recstudio.get_model("FM")(epochs=20, learning_rate=0.01, early_stop_patience=3, **QUIET)
    metrics = model.fit(ctr_split, run_dir=tmp_path_factory.mktemp("fm"))
    return model, metrics


# ---- the field embedding -------------------------------------------------------------------------
def test_field_embedding_shapes_and_values_per_type():
    torch.manual_seed(0)
    emb = FieldEmbedding({"tok": ("token", 5), "seq": ("token_seq", 6), "seq_weight": ("float_seq", 3),
                          "plain": ("token_seq", 6), "x": ("float", 1), "vec": ("float_seq", 4)}, dim=3,
                         seq_weights={"seq": "seq_weight"})
    values = {"tok": torch.tensor([1, 0]), "seq": torch.tensor([[1, 2, 0], [0, 0, 0]]),
              "seq_weight": torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 0.0]]),
              "plain": torch.tensor([[1, 2, 0], [3, 0, 0]]), "x": torch.tensor([2.0, 0.0]), "vec": torch.randn(2, 4)}
    out = emb(values)
    assert emb.names == ["tok", "seq", "plain", "x", "vec"] and out.shape == (2, 5, 3)  # the weight is no field
    seq_table, plain_table = emb.embed["seq"].table.weight, emb.embed["plain"].table.weight
    torch.testing.assert_close(out[0, 1], 0.25 * seq_table[1] + 0.75 * seq_table[2])     # weighted pooling
    torch.testing.assert_close(out[0, 2], (plain_table[1] + plain_table[2]) / 2)         # mean pooling
    torch.testing.assert_close(out[1, 2], plain_table[3])
    torch.testing.assert_close(out[0, 3], 2.0 * emb.embed["x"].vector)                   # value * vector
    for f in (0, 1, 3):  # padding id / all-padding sequence / float 0: absent, the zero vector
        assert torch.count_nonzero(out[1, f]) == 0
    assert emb.first_order(values).shape == (2,)
    assert emb(values, ["x", "tok"]).shape == (2, 2, 3)
    with pytest.raises(ConfigError, match="token_seq"):
        FieldEmbedding({"a": ("token", 3), "b": ("float", 1)}, 2, seq_weights={"a": "b"})
    with pytest.raises(DataError, match="lack fields"):
        emb({"tok": torch.tensor([1])})


def test_fm_second_order_equals_the_pairwise_sum():
    torch.manual_seed(1)
    emb = torch.randn(7, 4, 6, 5)
    brute = sum((emb[..., f, :] * emb[..., g, :]).sum(-1) for f, g in itertools.combinations(range(6), 2))
    torch.testing.assert_close(fm_pairwise(emb), brute, rtol=1e-5, atol=1e-5)


# ---- batches carry exactly the used fields ---------------------------------------------------------
def test_training_and_evaluation_batches_carry_exactly_the_used_fields(ctr_split):
    model = recstudio.get_model("FM")(feature_fields=["u", "i", "ctx", "cat"], **QUIET)
    model.build(model.context_from(ctr_split))
    assert model.used_fields == ["u", "ctx", "i", "cat"]
    assert {n: (f.type, f.size) for n, f in model.context.context_fields.items()} == {
        "ctx": ("token", 7), "noise": ("float", 1)}                      # not rating / label
    train = model._get_dataset_class()(ctr_split, "train", seed=0, **model._dataset_kwargs())
    batch = next(iter(train.loader(64)))
    assert set(batch) == {"u", "i", "ctx", "label"}                      # no item table joined, no noise
    valid = next(iter(model._eval_dataset(ctr_split, "valid").loader(64)))
    assert set(valid) == {"u", "i", "ctx", "label"}
    assert len(model._eval_dataset(ctr_split, "valid")) == len(ctr_split.valid)
    assert torch.isfinite(model.training_loss(batch))                    # item features gathered by id
    every = recstudio.get_model("FM")(**QUIET)
    every.build(every.context_from(ctr_split))
    assert every.used_fields == ["u", "ctx", "noise", "i", "cat", "price"]
    assert set(next(iter(every._eval_dataset(ctr_split, "test").loader(8)))) == {"u", "i", "ctx", "noise", "label"}
    with pytest.raises(ConfigError, match="unknown field 'cta'.*ctx"):
        bad = recstudio.get_model("FM")(feature_fields=["cta"], **QUIET)
        bad.build(bad.context_from(ctr_split))


# ---- ctr evaluation and early stopping ------------------------------------------------------------
def test_fit_reports_auc_gauc_logloss_and_monitors_auc(trained_fm):
    model, metrics = trained_fm
    assert set(metrics) == {"auc", "gauc", "logloss"}
    assert 0.5 < metrics["auc"] <= 1 and metrics["logloss"] > 0
    assert model.monitor == "valid/auc" and model.monitor_mode == "max"
    log = pd.read_csv(Path(model.run_dir) / "logs" / "metrics.csv")
    assert log["valid/auc"].notna().sum() >= 2


def test_early_stopping_on_auc_stops_when_auc_does_not_improve(ctr_split, tmp_path):
    model = recstudio.get_model("FM")(epochs=20, learning_rate=0.0, early_stop_patience=2, **QUIET)
    model.fit(ctr_split, run_dir=tmp_path)
    log = pd.read_csv(tmp_path / "logs" / "metrics.csv")
    assert log["valid/auc"].notna().sum() == 3          # the first epoch, then patience 2 without a gain


def test_ctr_metrics_are_checked():
    with pytest.raises(ConfigError, match="auc"):
        recstudio.get_model("FM")(metrics=["auc", "ndcg"], **QUIET)
    with pytest.raises(ConfigError, match="early_stop_metric"):
        recstudio.get_model("FM")(metrics=["logloss"], **QUIET)


# ---- labels -------------------------------------------------------------------------------------
def test_label_threshold_vs_label_field(ctr_split):
    batch = {"stars": torch.tensor([1.0, 4.0, 5.0]), "label": torch.tensor([1.0, 0.0, 1.0]),
             "click": torch.tensor([0.0, 0.0, 1.0])}
    by_threshold = recstudio.get_model("FM")(label_threshold=4, **QUIET)
    by_threshold.build(by_threshold.context_from(ctr_split))
    assert by_threshold.ctr_labels(batch).tolist() == [0.0, 1.0, 1.0]
    assert "label" in by_threshold.context.context_fields               # a plain column when not the label
    default = recstudio.get_model("FM")(**QUIET)
    default.build(default.context_from(ctr_split))
    assert default.ctr_labels(batch).tolist() == [1.0, 0.0, 1.0]        # the 'label' column
    with pytest.raises(ConfigError, match="not both"):
        recstudio.get_model("FM")(label_threshold=4, label_field="label", **QUIET).context_from(ctr_split)
    with pytest.raises(DataError, match="0/1 labels"):
        recstudio.get_model("FM")(label_field="stars", **QUIET).context_from(ctr_split)
    df = pd.DataFrame({"u": [1, 1, 2, 2], "i": [1, 2, 1, 2]})
    with pytest.raises(ConfigError, match="needs a label"):
        recstudio.get_model("FM")(**QUIET).context_from(from_dataframe(df, "u", "i").split(split_mode="entry"))
    ones = from_dataframe(df.assign(label=1.0), "u", "i").split(split_mode="entry")
    with pytest.raises(DataError, match="both"):
        recstudio.get_model("FM")(**QUIET).context_from(ones)


# ---- ranking every item ---------------------------------------------------------------------------
def test_rank_all_matches_pair_scores_and_recommend_excludes_seen(trained_fm, ctr_split):
    model, _ = trained_fm
    model.eval()
    users = torch.tensor([1, 2, 3])
    batch = model.query_batch(users)                  # no context: padding, i.e. absent
    with torch.no_grad():
        all_scores = model.score_users(batch)
        items = torch.tensor([[1, 5, 9], [2, 3, 4], [7, 8, 30]])
        pairs = model.score_candidates(batch, model.prepare_scoring(batch), items)
    assert all_scores.shape == (3, model.meta.num_items)
    torch.testing.assert_close(all_scores.gather(1, items), pairs)
    ds = ctr_split.dataset
    names = list(ds.decode_users([1, 2]))
    top, _ = model.recommend(names, k=1)
    for u, row in zip([1, 2], top):
        seen = set(ds.decode_items(ds.items[ds.user_offsets[u]:ds.user_offsets[u + 1]]))
        assert not seen & {x for x in row if x is not None}


def test_a_row_score_uses_its_context(trained_fm, ctr_split):
    model, _ = trained_fm
    batch = next(iter(model._eval_dataset(ctr_split, "test").loader(16)))
    with torch.no_grad():
        with_ctx = model(batch)
        without = model({k: v for k, v in batch.items() if k != "ctx"})
    assert not torch.allclose(with_ctx, without)


def test_save_load_keeps_the_context_fields(trained_fm, ctr_split, tmp_path):
    model, _ = trained_fm
    again = recstudio.load(model.save(tmp_path / "fm.pt"))
    assert again.context.context_fields == model.context.context_fields
    batch = next(iter(model._eval_dataset(ctr_split, "test").loader(32)))
    with torch.no_grad():
        torch.testing.assert_close(again(batch), model(batch))


# ---- known answer ---------------------------------------------------------------------------------
def test_fm_learns_a_context_by_item_field_rule(trained_fm):
    _, metrics = trained_fm
    assert metrics["auc"] > 0.95, metrics


def test_deepfm_trains_and_learns_the_rule(ctr_split, tmp_path):
    model = recstudio.get_model("DeepFM")(epochs=15, learning_rate=0.01, early_stop_patience=3, mlp_hidden=[32, 16],
                                          **QUIET)
    metrics = model.fit(ctr_split, run_dir=tmp_path)
    assert metrics["auc"] > 0.9, metrics
    assert model.mlp.in_dim == model.num_fields * 8


# ---- frappe -----------------------------------------------------------------------------------------
def write_tiny_frappe(folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for n in range(60):
        rows.append([int(rng.integers(0, 5)), int(rng.integers(0, 12)), int(rng.integers(1, 9)),
                     rng.choice(["morning", "evening"]), rng.choice(["monday", "sunday"]), "weekday", "unknown",
                     "free", rng.choice(["sunny", "cloudy"]), "Spain", str(int(rng.integers(0, 3)))])
    df = pd.DataFrame(rows, columns=["user", "item", "cnt", "daytime", "weekday", "isweekend", "homework", "cost",
                                     "weather", "country", "city"])
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "frappe.csv", sep="\t", index=False)
    return df


def test_frappe_converter_adds_two_unused_negatives_per_log_in_its_context(tmp_path):
    raw = write_tiny_frappe(tmp_path / "Mobile_Frappe" / "frappe")
    inter = get_converter("frappe")(tmp_path)["inter"]
    df = inter.frame
    assert len(df) == 3 * len(raw) and list(df["label"][:3]) == [1.0, 0.0, 0.0]
    assert "cnt" not in df.columns and inter.types["label"].value == "float"
    used = raw.astype(str).groupby("user")["item"].agg(set)
    neg = df[df["label"] == 0]
    assert all(item not in used[user] for user, item in zip(neg["user"], neg["item"]))
    ctx = ["user", "daytime", "weekday", "weather", "city"]
    pos = df[df["label"] == 1].reset_index(drop=True)
    for k in (1, 2):  # each positive is followed by its negatives, in the same context
        assert (df.iloc[k::3][ctx].reset_index(drop=True) == pos[ctx]).all().all()
    again = get_converter("frappe")(tmp_path)["inter"].frame
    assert again.equals(df)                                             # seeded
    other = get_converter("frappe")(tmp_path, seed=7)["inter"].frame
    assert not other["item"].equals(df["item"])
    with pytest.raises(ConfigError, match="meta.csv"):
        get_converter("frappe")(tmp_path, item_features=["short desc"])


def test_frappe_registry_entry_keeps_negatives_as_rows_of_a_random_split(tmp_path):
    from recstudio.data.registry import get_spec
    spec = get_spec("frappe")
    assert spec.converter == "frappe" and spec.config["dedup"] == "all" and spec.config["split_mode"] == "entry"
    assert set(spec.extracted_checksums) == {"frappe.csv", "meta.csv", "README.txt"}
    raw = write_tiny_frappe(tmp_path / "frappe" / "raw")
    ds = from_dataframe(get_converter("frappe")(tmp_path / "frappe" / "raw")["inter"].frame, "user", "item",
                        dedup="all", split_mode="entry", split_ratio=[0.7, 0.2, 0.1])
    split = ds.split()
    assert ds.num_interactions == 3 * len(raw)
    assert sum(len(split.rows(p)) for p in ("train", "valid", "test")) == 3 * len(raw)
    assert 0 < ds.inter["label"][split.valid].mean() < 1


@pytest.mark.skipif(not (FRAPPE / "frappe.csv").is_file(), reason="needs the shared real frappe files")
def test_real_frappe_has_288609_rows(tmp_path):
    raw = tmp_path / "frappe" / "raw"
    raw.mkdir(parents=True)
    for name in ("frappe.csv", "meta.csv", "README.txt"):
        (raw / name).symlink_to(FRAPPE / name)
    ds = recstudio.data.load_dataset("frappe", data_dir=str(tmp_path))
    assert ds.num_interactions == 288_609 and (ds.num_users - 1, ds.num_items - 1) == (957, 4082)
    assert abs(float(ds.inter["label"].mean()) - 1 / 3) < 1e-6
    manifest = json.loads((tmp_path / "frappe" / "atomic" / "manifest.json").read_text())
    assert manifest["rows"] == {"inter": 288_609}
    split = ds.split()
    assert (len(split.train), len(split.valid), len(split.test)) == (202_028, 57_721, 28_860)


def test_embed_reg_adds_the_l2_penalty_of_the_embeddings(ctr_split):
    torch.manual_seed(0)
    plain = recstudio.get_model("FM")(**QUIET)
    plain.build(plain.context_from(ctr_split))
    reg = recstudio.get_model("FM")(embed_reg=0.5, **QUIET)
    reg.build(reg.context_from(ctr_split))
    reg.load_state_dict(plain.state_dict())
    batch = next(iter(plain._get_dataset_class()(ctr_split, "train", **plain._dataset_kwargs()).loader(64)))
    penalty = 0.25 * sum(p.pow(2).sum() for p in plain.embedding.parameters())
    torch.testing.assert_close(reg.training_loss(batch), plain.training_loss(batch) + penalty)


def test_a_model_can_be_refitted_on_other_data(ctr_split):
    model = recstudio.get_model("FM")(**QUIET)
    model.context_from(ctr_split)
    df, item_feat = ctr_frame(n=500, seed=1)
    other = from_dataframe(df.drop(columns=["noise"]), "u", "i", rating="stars", dedup="all",
                           split_mode="entry").split()
    model.build(model.context_from(other))                       # a fresh fit reads the new data's fields
    assert list(model.context.context_fields) == ["ctx"] and model.used_fields == ["u", "ctx", "i"]
