"""MultiVAE: annealing, the ELBO terms, exact item tower, padding column, training and recommend."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import recstudio
from recstudio.data import from_dataframe
from recstudio.data.types import UserDataset
from recstudio.model.base.meta import DataMeta
from recstudio.model.registry import get_model

SMALL = dict(hidden_dims=[32], latent_dim=8, epochs=3, batch_size=16, eval_batch_size=16, quiet=True,
             early_stop_patience=3)


def two_communities(n_users=40, n_items=40, per_user=10, seed=0):
    """Users of the first half only interact with the first half of the items, the others with the rest."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pool = np.arange(n_items // 2) if u < n_users // 2 else np.arange(n_items // 2, n_items)
        for t, i in enumerate(rng.choice(pool, size=per_user, replace=False)):
            rows.append((f"u{u}", f"i{i}", 1.0, float(t)))
    return pd.DataFrame(rows, columns=["u", "i", "r", "t"])


@pytest.fixture(scope="module")
def split():
    return from_dataframe(two_communities(), "u", "i", "r", "t").split()


def built(split, **cfg):
    model = get_model("MultiVAE")(**{**SMALL, **cfg})
    model.build(DataMeta.from_split(split))
    return model


def train_batch(model, split, n=16):
    return next(iter(UserDataset(split, "train", seed=0).loader(n, shuffle=False)))


def test_defaults_follow_the_paper():
    cfg = get_model("MultiVAE")().config
    assert (cfg["hidden_dims"], cfg["latent_dim"], cfg["dropout"]) == ([600], 200, 0.5)
    assert (cfg["anneal_cap"], cfg["total_anneal_steps"]) == (0.2, 200000)
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["weight_decay"]) == (0.001, 500, 0.0)
    assert cfg["split_mode"] == "user_entry"


def test_annealing_schedule():
    model = get_model("MultiVAE")(anneal_cap=0.2, total_anneal_steps=100)
    assert [model.kl_weight(s) for s in (0, 10, 19, 20, 21, 10 ** 6)] == pytest.approx([0, 0.1, 0.19, 0.2, 0.2, 0.2])
    assert get_model("MultiVAE")(anneal_cap=0.3, total_anneal_steps=0).kl_weight(0) == 0.3
    assert get_model("MultiVAE")().kl_weight(100000) == pytest.approx(0.2)
    assert get_model("MultiVAE")().kl_weight(20000) == pytest.approx(0.1)


def test_elbo_terms_are_finite_and_kl_is_nonnegative(split):
    model = built(split)
    batch = train_batch(model, split)
    model.train()
    torch.manual_seed(0)
    nll, kl = model.elbo_terms(batch)
    assert torch.isfinite(nll) and torch.isfinite(kl) and kl.item() >= 0
    assert 0 < nll.item() < batch["history"].sum(1).max().item() * math.log(model.meta.num_items - 1) * 2
    torch.manual_seed(0)
    torch.testing.assert_close(model.training_loss(batch), nll)  # outside a trainer: step 0, beta = 0
    (nll + kl).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_kl_known_values(split):
    model = built(split).eval()
    batch = train_batch(model, split)
    last = model.query_encoder.encoder.layers[-1]  # -> [mu ; logvar]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()  # q(z|x) = N(0, I): the prior
        assert model.elbo_terms(batch)[1].item() == 0.0
        last.bias[:8] = 1.0
        last.bias[8:] = math.log(4.0)  # mu = 1, sigma^2 = 4 in each of the 8 dims
        kl = model.elbo_terms(batch)[1].item()
    assert kl == pytest.approx(8 * 0.5 * (4.0 + 1.0 - 1.0 - math.log(4.0)), rel=1e-5)


def test_padding_column_is_outside_the_softmax(split):
    model = built(split).eval()
    batch = train_batch(model, split)
    with torch.no_grad():
        before, _ = model.elbo_terms(batch)
        model.item_encoder.bias[0] = 1e4  # a huge padding logit changes nothing
        after, _ = model.elbo_terms(batch)
    torch.testing.assert_close(before, after)


def test_item_tower_is_exactly_the_decoder(split):
    model = built(split).eval()
    batch = next(iter(model._eval_dataset(split, "test").loader(8)))  # CSR history (evaluation batches)
    with torch.no_grad():
        scores = model.score_users(batch)
        q = model.query_encoder
        x = q.input(batch)
        h = q.decoder(q.encode(x)[0])
        logits = h @ model.item_encoder.weight.t() + model.item_encoder.bias
        # the dense 'history' key (training batches) gives the same query as the CSR slices
        dense = model.encode_query({"history": x})
    assert scores.shape == (8, model.meta.num_items)
    torch.testing.assert_close(scores, logits)
    torch.testing.assert_close(dense, model.encode_query(batch))
    assert model.item_vectors().shape == (model.meta.num_items, SMALL["hidden_dims"][0] + 1)


def test_evaluation_is_deterministic(split):
    model = built(split).eval()
    batch = next(iter(model._eval_dataset(split, "test").loader(8)))
    with torch.no_grad():
        torch.testing.assert_close(model.score_users(batch), model.score_users(batch))


def test_trains_loss_decreases_and_recommends_unseen_items(split, tmp_path):
    model, metrics = recstudio.run(model="MultiVAE", dataset=split, run_dir=str(tmp_path), learning_rate=0.01,
                                   total_anneal_steps=20, **{**SMALL, "epochs": 30, "early_stop_patience": 30})
    assert all(math.isfinite(v) for v in metrics.values())
    log = pd.read_csv(model.run_dir / "logs" / "metrics.csv")
    losses = log["train/loss"].dropna().tolist()
    assert losses[-1] < losses[0]
    assert log["train/kl_weight"].dropna().max() == pytest.approx(0.2)
    # the community is the only structure: most of the top-5 come from the user's own community
    ds = split.dataset
    users = [f"u{u}" for u in range(40)]
    items, scores = model.recommend(users, k=5)
    assert items.shape == (40, 5) and np.isfinite(scores).all()
    own = 0
    for u, row in zip(users, items):
        inner = ds.encode_users([u])[0]
        seen = set(ds.decode_items(ds.items[ds.user_offsets[inner]:ds.user_offsets[inner + 1]]))
        assert not seen & set(row)
        assert all(isinstance(i, str) and i.startswith("i") for i in row)
        first_half = int(u[1:]) < 20
        own += sum((int(i[1:]) < 20) == first_half for i in row)
    assert own / items.size > 0.8
