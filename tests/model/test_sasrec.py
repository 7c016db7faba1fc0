"""SASRec: training at every position, causality, evaluation query, and a known-answer test."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.model.base.meta import DataMeta
from recstudio.model.registry import get_model

SMALL = dict(embed_dim=16, n_layers=1, n_heads=1, max_seq_len=10, epochs=3, batch_size=16, eval_batch_size=16,
             quiet=True, early_stop_patience=3)


def cycle_frame(n_items=20, n_users=60, seed=0):
    """Every user walks the cycle i1 -> i2 -> ... -> i{n} -> i1 from a random start: the next item is
    always determined by the current one."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(8, 14))
        for t in range(length):
            rows.append((f"u{u}", f"i{(start + t) % n_items + 1}", 1.0, float(t)))
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def cycle_split():
    return from_dataframe(cycle_frame(), "u", "i", "r", "t").split(split_mode="loo")


@pytest.fixture(scope="module")
def random_split():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{int(i)}", 1.0, float(t)) for u in range(30)
            for t, i in enumerate(rng.choice(np.arange(1, 41), size=int(rng.integers(5, 15)), replace=False))]
    return from_dataframe(pd.DataFrame(rows, columns=["u", "i", "r", "t"]), "u", "i", "r", "t").split(split_mode="loo")


def train_losses(run_dir):
    df = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return df["train/loss"].dropna().tolist()


def built(split, **cfg):
    model = get_model("SASRec")(**{**SMALL, **cfg})
    model.build(DataMeta.from_split(split))
    return model


def test_defaults_follow_the_paper():
    cfg = get_model("SASRec")().config
    assert cfg["split_mode"] == "loo" and cfg["loss"] == "softmax"
    assert (cfg["n_layers"], cfg["n_heads"], cfg["dropout"], cfg["max_seq_len"]) == (2, 1, 0.2, 200)
    assert cfg["learning_rate"] == 0.001 and list(cfg["adam_betas"]) == [0.9, 0.98]


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_trains_and_loss_decreases(random_split, tmp_path, loss):
    model, metrics = recstudio.run(model="SASRec", dataset=random_split, loss=loss, run_dir=str(tmp_path),
                                   **{**SMALL, "epochs": 8, "learning_rate": 0.01, "early_stop_patience": 8})
    assert all(math.isfinite(v) for v in metrics.values())
    losses = train_losses(model.run_dir)
    assert len(losses) >= 2 and losses[-1] < losses[0]
    opt = model.configure_optimizers()
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)


def test_item_embedding_is_shared_with_the_query_encoder(random_split):
    model = built(random_split)
    assert model.query_encoder.encoder.item_embedding is model.item_encoder


def test_scores_shape_and_query_is_the_last_position(random_split):
    model = built(random_split).eval()
    batch = next(iter(model._eval_dataset(random_split, "test").loader(8)))
    assert batch["item_seq"].shape == (8, SMALL["max_seq_len"])
    with torch.no_grad():
        scores = model.score_users(batch)
        hidden = model.sequence_output(batch["item_seq"])
        query = model.encode_query(batch)
    assert scores.shape == (8, model.meta.num_items)
    torch.testing.assert_close(query, hidden[:, -1])  # left padding: the latest item is in the last column
    torch.testing.assert_close(scores, query @ model.item_vectors().t())


def test_no_future_leakage(random_split):
    model = built(random_split, n_layers=2, dropout=0.3).eval()
    torch.manual_seed(0)
    n, L = model.meta.num_items, SMALL["max_seq_len"]
    seq = torch.randint(1, n, (4, L))
    seq[1, :3] = 0  # a left-padded row
    with torch.no_grad():
        base = model.sequence_output(seq)
        for t in range(L - 1):
            changed = seq.clone()
            changed[:, t + 1:] = torch.randint(1, n, (4, L - t - 1))
            out = model.sequence_output(changed)
            torch.testing.assert_close(out[:, :t + 1], base[:, :t + 1])
            assert not torch.allclose(out[:, -1], base[:, -1])


def test_padding_outputs_are_zero_and_rows_are_independent(random_split):
    model = built(random_split).eval()
    seq = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        both = model.sequence_output(seq)
        alone = model.sequence_output(seq[:1])
    torch.testing.assert_close(both[:1], alone)
    assert (both[0, :5] == 0).all() and (both[0, 5:] != 0).any(-1).all()


def test_bce_negatives_avoid_the_sequence(random_split):
    model = built(random_split, loss="bce")
    from recstudio.model.sampler import MaskedUniformSampler
    assert isinstance(model.sampler, MaskedUniformSampler)
    ds = model._get_dataset_class()(random_split, "train", seed=0, **model._dataset_kwargs())
    batch = next(iter(ds.loader(64, shuffle=False)))
    _, neg, _ = model.sampler(None, 3, batch["target_seq"], batch["item_seq"])
    window = torch.cat([batch["item_seq"], batch["target_seq"]], 1)
    assert not (neg.unsqueeze(-1) == window[:, None, None, :]).any()
    loss = model.training_loss(batch)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_learns_a_deterministic_cycle(cycle_split, tmp_path, loss):
    # each next item is determined by the current one: after brief training the true next item is ranked first
    model, metrics = recstudio.run(
        model="SASRec", dataset=cycle_split, loss=loss, embed_dim=32, n_layers=1, n_heads=1, max_seq_len=16,
        dropout=0.1, learning_rate=0.01, batch_size=32, epochs=40, early_stop_patience=40, metrics=["hit"], early_stop_metric="hit@1",
        cutoffs=[1, 5], run_dir=str(tmp_path), quiet=True)
    assert metrics["hit@1"] > 0.8, metrics
    # and recommend() continues each user's walk (original ids, seen items excluded)
    ds = cycle_split.dataset
    users = list(ds.decode_users(np.arange(1, 11)))
    items, _ = model.recommend(users, k=1)
    hits = 0
    for u, (item,) in zip(users, items):
        inner = ds.encode_users([u])[0]
        last = int(ds.decode_items(ds.items[ds.user_offsets[inner + 1] - 1:ds.user_offsets[inner + 1]])[0][1:])
        hits += item == f"i{last % 20 + 1}"
    assert hits >= 7
