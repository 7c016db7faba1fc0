"""The sequential family base: every loss and sampler trains, cloze batches, gBCE, item features, and
known-answer tests for GRU4Rec and BERT4Rec on a deterministic cycle."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import recstudio
from recstudio.data import from_dataframe
from recstudio.model.family.sequential import ItemWithFeatures, SequentialRecommender
from recstudio.model.loss import LOSSES, build_loss
from recstudio.model.loss.gbce import GBCELoss
from recstudio.model.registry import get_model
from recstudio.model.sampler import InBatchSampler, MaskedUniformSampler, PopularitySampler, UniformSampler
from recstudio.utils.errors import ConfigError

TINY = {"GRU4Rec": dict(embed_dim=16, hidden_dim=16, dropout=0.0, max_seq_len=10),
        "SASRec": dict(embed_dim=16, n_layers=1, n_heads=1, dropout=0.0, max_seq_len=10),
        "BERT4Rec": dict(embed_dim=16, n_layers=1, n_heads=1, ffn_dim=32, dropout=0.0, max_seq_len=10)}


def cycle_frame(n_items=20, n_users=60, seed=0):
    """Every user walks i1 -> i2 -> ... -> i{n} -> i1 from a random start: the next item is determined."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(8, 14))
        rows += [(f"u{u}", f"i{(start + t) % n_items + 1}", 1.0, float(t)) for t in range(length)]
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"])


def random_frame(seed=1, n_users=30, n_items=40):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([(f"u{u}", f"i{int(i)}", 1.0, float(t)) for u in range(n_users)
                         for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(5, 15)),
                                                          replace=False))], columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def random_split():
    return from_dataframe(random_frame(), "u", "i", "r", "t").split(split_mode="loo")


@pytest.fixture(scope="module")
def cycle_split():
    return from_dataframe(cycle_frame(), "u", "i", "r", "t").split(split_mode="loo")


@pytest.fixture(scope="module")
def feature_split():
    items = pd.DataFrame({"i": [f"i{k}" for k in range(1, 41)], "genre": [f"g{k % 4}" for k in range(1, 41)]})
    return from_dataframe(random_frame(), "u", "i", "r", "t", item_features=items).split(split_mode="loo")


def built(name, split, **cfg):
    model = get_model(name)(**{**TINY[name], "quiet": True, **cfg})
    return model.build(model.context_from(split))


def train_batch(model, split, size=64):
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    return next(iter(ds.loader(size, shuffle=False)))


LOSS_SAMPLERS = [("softmax", None), ("sampled_softmax", "uniform"), ("sampled_softmax", "popularity"),
                 ("sampled_softmax", "inbatch"), ("sampled_softmax", "masked_uniform"), ("bpr", "masked_uniform"),
                 ("bpr", "inbatch"), ("bce", "uniform"), ("gbce", "masked_uniform"), ("gbce", "popularity"),
                 ("infonce", "inbatch")]


@pytest.mark.parametrize("name", ["GRU4Rec", "BERT4Rec"])
@pytest.mark.parametrize("loss,sampler", LOSS_SAMPLERS)
def test_every_loss_and_sampler_trains(name, loss, sampler, random_split):
    torch.manual_seed(0)
    model = built(name, random_split, loss=loss, sampler=sampler, num_neg=4)
    expected = {None: type(None), "uniform": UniformSampler, "popularity": PopularitySampler,
                "inbatch": InBatchSampler, "masked_uniform": MaskedUniformSampler}[sampler]
    if model.loss_fn.needs_negatives:
        assert isinstance(model.sampler, expected)
    batch = train_batch(model, random_split)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    model.train()
    for _ in range(30):
        opt.zero_grad()
        value = model.training_loss(batch)
        assert torch.isfinite(value), (loss, sampler)
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bpr_with_masked_uniform_fits_and_negatives_avoid_the_window(random_split, tmp_path):
    # the bug: a sequential model with loss bpr + sampler masked_uniform failed with "needs negatives"
    model, metrics = recstudio.run(model="GRU4Rec", dataset=random_split, loss="bpr", sampler="masked_uniform",
                                   epochs=2, run_dir=str(tmp_path), quiet=True, **TINY["GRU4Rec"])
    assert isinstance(model.sampler, MaskedUniformSampler)
    assert all(math.isfinite(v) for v in metrics.values())
    batch = train_batch(model, random_split)
    _, neg, _ = model.sampler(None, 3, batch["target_seq"], batch["item_seq"])
    window = torch.cat([batch["item_seq"], batch["target_seq"]], 1)
    assert not (neg.unsqueeze(-1) == window[:, None, None, :]).any()
    # triplet models keep the dataset-drawn negatives (no sampler object)
    bpr = get_model("BPR")(embed_dim=8, quiet=True)
    bpr.build(bpr.context_from(random_split))
    assert bpr.sampler is None


def test_cloze_batches_mask_correctly(random_split):
    model = built("BERT4Rec", random_split, mask_ratio=0.3)
    n = model.meta.num_items
    assert model.num_tokens == n + 1 and model.mask_token == n
    assert model.item_encoder.embedding.num_embeddings == n + 1 and model.item_vectors().shape[0] == n
    ds = model._get_dataset_class()(random_split, "train", seed=0, **model._dataset_kwargs())
    loader = ds.loader(1000, shuffle=False)
    batch = next(iter(loader))
    seq, target = batch["item_seq"], batch["target_seq"]
    masked = seq == n
    assert torch.equal(masked, target > 0)  # a target exactly where the mask token is
    assert masked.any(1).all()  # at least one per row
    assert (seq[~masked] < n).all()
    # the unmasked sequence (mask token replaced by its target) is the user's latest train items, left-padded
    orig = torch.where(masked, target, seq)
    users = batch[random_split.dataset.uid_field]
    ds_ = random_split.dataset
    for row, u in zip(orig[:5], users[:5]):
        train_items = [int(i) for i in ds_.items[ds_.user_offsets[u]:ds_.user_offsets[u + 1]][:-2]]
        assert row[row > 0].tolist() == train_items[-model.cfg("max_seq_len"):]
    share = masked.sum().item() / (orig > 0).sum().item()
    assert 0.2 < share < 0.5
    # masks are redrawn per epoch
    loader.set_epoch(1)
    again = next(iter(loader))
    assert not torch.equal(again["item_seq"] == n, masked)


def test_cloze_query_appends_the_mask_token(random_split):
    model = built("BERT4Rec", random_split).eval()
    L = model.cfg("max_seq_len")
    assert model._eval_seq_len() == L - 1
    batch = next(iter(model._eval_dataset(random_split, "test").loader(8)))
    seq = batch["item_seq"]
    assert seq.shape[1] == L - 1
    with torch.no_grad():
        query = model.encode_query(batch)
        full = torch.cat([seq, torch.full((seq.size(0), 1), model.mask_token)], 1)
        torch.testing.assert_close(query, model.sequence_output(full)[:, -1])


def test_causal_eval_uses_the_latest_max_seq_len_items(random_split):
    model = built("GRU4Rec", random_split, max_seq_len=4).eval()
    assert model._eval_seq_len() == 4
    batch = next(iter(model._eval_dataset(random_split, "test").loader(8)))
    assert batch["item_seq"].shape == (8, 4)
    ds = random_split.dataset
    for u, row in zip(batch[ds.uid_field].tolist(), batch["item_seq"].tolist()):
        known = [int(i) for i in ds.items[ds.user_offsets[u]:ds.user_offsets[u + 1]][:-1]]  # all but the test item
        assert [i for i in row if i] == known[-4:]


def test_gbce_matches_a_hand_computation():
    num_items, t = 1001, 0.75  # 1000 real items
    pos = torch.tensor([1.5, -0.3])
    neg = torch.tensor([[0.2, -1.0, 0.7], [2.0, 0.1, -0.4]])
    loss = build_loss("gbce", context={"num_items": num_items}, t=t)
    assert isinstance(loss, GBCELoss) and "gbce" in LOSSES
    alpha = 3 / 999
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    rows = [-(beta * math.log(sig(p)) + sum(math.log(1 - sig(v)) for v in ns)) / 4
            for p, ns in zip(pos.tolist(), neg.tolist())]
    assert loss(pos, neg).item() == pytest.approx(np.mean(rows), rel=1e-5)
    # the gSASRec code form: BCE with the positive's logit transformed so that sigma(l') = sigma(pos)^beta
    l_pos = torch.log(1 / (torch.sigmoid(pos.double()) ** -beta - 1))
    logits = torch.cat([l_pos[:, None], neg.double()], 1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1
    ref = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).mean()
    assert loss(pos, neg).item() == pytest.approx(ref.item(), rel=1e-5)
    # t = 0 is plain BCE (averaged over the K + 1 terms); t = 1 gives beta = alpha
    assert GBCELoss(num_items, t=0.0).beta(3) == pytest.approx(1.0)
    assert GBCELoss(num_items, t=1.0).beta(3) == pytest.approx(alpha)
    bce = build_loss("bce", reduction="none")(pos, neg) / 4
    assert GBCELoss(num_items, t=0.0)(pos, neg).item() == pytest.approx(bce.mean().item(), rel=1e-5)
    # dropped negatives leave the sum and the count
    hit = torch.tensor([[False, True, False], [False, False, False]])
    row0 = -(beta * math.log(sig(1.5)) + math.log(1 - sig(0.2)) + math.log(1 - sig(0.7))) / 3
    assert GBCELoss(num_items, t=t, reduction="none")(pos, neg, neg_is_pos=hit)[0].item() == pytest.approx(row0, rel=1e-5)
    with pytest.raises(ConfigError):
        GBCELoss(num_items, t=1.5)


def test_gbce_t_reaches_the_loss(random_split):
    model = built("SASRec", random_split, loss="gbce", gbce_t=0.5, num_neg=8)
    assert isinstance(model.loss_fn, GBCELoss) and model.loss_fn.t == 0.5
    assert model.loss_fn.num_items == model.meta.num_items


def test_item_features_are_added_to_the_item_embedding(feature_split):
    model = built("GRU4Rec", feature_split, item_feature_fields=["genre"])
    assert "item_features" in model.needs and "item_features" not in built("GRU4Rec", feature_split).needs
    enc = model.item_encoder
    assert isinstance(enc, ItemWithFeatures)
    ids = torch.arange(model.meta.num_items)
    genre = model.item_feats(ids)["genre"]
    expected = enc.embedding_table(ids) + enc.encoder.encoders["genre"](genre)
    expected[0] = 0.0  # padding has no features
    torch.testing.assert_close(model.item_vectors(), expected)
    batch = train_batch(model, feature_split)
    loss = model.training_loss(batch)
    loss.backward()
    assert enc.encoder.encoders["genre"].embedding.weight.grad.abs().sum() > 0
    # BERT4Rec's mask token gets no features
    bert = built("BERT4Rec", feature_split, item_feature_fields=["genre"])
    mask = torch.tensor([bert.mask_token])
    torch.testing.assert_close(bert.item_encoder(mask), bert.item_encoder.embedding_table(mask))
    with pytest.raises(ConfigError, match="not item feature fields"):
        built("GRU4Rec", feature_split, item_feature_fields=["colour"])


def test_bad_configurations_are_clear_errors(random_split):
    with pytest.raises(ConfigError, match="pointwise"):
        built("GRU4Rec", random_split, loss="mse")
    with pytest.raises(ConfigError, match="needs negatives"):
        built("GRU4Rec", random_split, loss="bpr", sampler=None)
    with pytest.raises(ConfigError, match="max_seq_len >= 2"):
        built("BERT4Rec", random_split, max_seq_len=1)


def test_models_keep_only_their_encoder():
    for name in ("SASRec", "GRU4Rec", "BERT4Rec"):
        cls = get_model(name)
        assert issubclass(cls, SequentialRecommender)
        assert "training_loss" not in vars(cls) and "_get_sampler" not in vars(cls)
    assert get_model("BERT4Rec").seq_mode == "cloze" and get_model("GRU4Rec").seq_mode == "causal"
    cfg = get_model("GRU4Rec")().config
    assert (cfg["embed_dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["dropout"], cfg["loss"]) == \
        (64, 128, 1, 0.3, "softmax")
    assert get_model("BERT4Rec")().config["mask_ratio"] == 0.2


@pytest.mark.parametrize("name,cfg,min_hit1,min_recommended", [
    ("GRU4Rec", dict(embed_dim=32, hidden_dim=32, dropout=0.0, epochs=40, batch_size=32, learning_rate=0.01), 0.8, 16),
    # BERT4Rec ranks the true next item first for 85-98 % of the users over seeds 1-3 and 2022 (otherwise second:
    # its bidirectional training mostly reads a masked item off both neighbours; the last position has one)
    ("BERT4Rec", dict(embed_dim=32, n_layers=1, n_heads=1, ffn_dim=64, dropout=0.0, mask_ratio=0.3, epochs=40,
                      batch_size=8, learning_rate=0.005), 0.7, 12),
])
def test_learns_a_deterministic_cycle(name, cfg, min_hit1, min_recommended, cycle_split, tmp_path):
    # the next item is determined by the current one: after brief training it is ranked first for most users
    model, metrics = recstudio.run(
        model=name, dataset=cycle_split, max_seq_len=16, early_stop_patience=100, metrics=["hit"],
        early_stop_metric="hit@1", cutoffs=[1, 5], run_dir=str(tmp_path), quiet=True, **cfg)
    assert metrics["hit@1"] > min_hit1 and metrics["hit@5"] > 0.95, metrics
    ds = cycle_split.dataset
    users = list(ds.decode_users(np.arange(1, 21)))
    items, _ = model.recommend(users, k=1)
    hits = 0
    for u, (item,) in zip(users, items):
        inner = ds.encode_users([u])[0]
        last = int(ds.decode_items(ds.items[ds.user_offsets[inner + 1] - 1:ds.user_offsets[inner + 1]])[0][1:])
        hits += item == f"i{last % 20 + 1}"
    assert hits >= min_recommended
