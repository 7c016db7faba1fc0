"""DiffRec's diffusion arithmetic against hand computations of the paper's / RecBole's formulas."""
import math

import numpy as np
import pytest
import torch

from recstudio.model.registry import get_model
from recstudio.model.zoo.general.diffrec import diffusion_betas, timestep_embedding
from recstudio.utils.errors import ConfigError

TINY = {"hidden_dims": [16], "batch_size": 8, "eval_batch_size": 4, "quiet": True, "epochs": 2,
        "early_stop_patience": 2, "steps": 4, "history_num_per_term": 3}


@pytest.fixture
def split(make_split):
    return make_split(3, 16, 20, (5, 11))


def built(split, **kw):
    model = get_model("DiffRec")(**{**TINY, **kw})
    model.build(model.context_from(split))
    return model


def user_batch(model, split):
    ds = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    return next(iter(ds.loader(8, shuffle=False)))


def test_linear_schedule_and_posterior_coefficients(split):
    model = built(split, noise_scale=0.1, noise_min=0.01, noise_max=0.05, beta_fixed=True)
    betas = np.linspace(0.001, 0.005, 4)
    betas[0] = 1e-5
    abar = np.cumprod(1 - betas)
    prev = np.concatenate([[1.0], abar[:-1]])
    np.testing.assert_allclose(model._betas.numpy(), betas)
    np.testing.assert_allclose(model._abar.numpy(), abar)
    np.testing.assert_allclose(model._post_coef1.numpy(), betas * np.sqrt(prev) / (1 - abar))
    np.testing.assert_allclose(model._post_coef2.numpy(), (1 - prev) * np.sqrt(1 - betas) / (1 - abar))
    var = betas * (1 - prev) / (1 - abar)
    np.testing.assert_allclose(model._post_log_var.numpy(), np.log(np.concatenate([[var[1]], var[1:]])))


def test_other_schedules():
    lv = diffusion_betas("linear-var", 3, 1.0, 0.1, 0.3)
    np.testing.assert_allclose(1 - np.cumprod(1 - lv), [0.1, 0.2, 0.3])  # cumulative variance is the linspace
    np.testing.assert_allclose(diffusion_betas("binomial", 3, 1.0, 0, 0), [1 / 4, 1 / 3, 1 / 2])
    cos = diffusion_betas("cosine", 10, 1.0, 0, 0)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert np.cumprod(1 - cos)[4] == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    with pytest.raises(ConfigError):
        diffusion_betas("quadratic", 3, 1.0, 0, 0)


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0, 3]), 5)
    half = 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / half)
    np.testing.assert_allclose(emb[1].numpy(), np.r_[np.cos(3 * freqs), np.sin(3 * freqs), 0.0], rtol=1e-6)
    assert emb.shape == (2, 5)


def test_loss_history_keeps_the_last_values_in_order(split):
    model = built(split)
    ref = np.zeros((4, 3))
    count = np.zeros(4, int)

    def recbole_update(ts, losses):  # RecBole's update_Lt_history, one loss at a time
        for t, x in zip(ts, losses):
            if count[t] == 3:
                ref[t, :-1] = ref[t, 1:].copy()
                ref[t, -1] = x
            else:
                ref[t, count[t]] = x
                count[t] += 1

    rng = np.random.default_rng(0)
    for _ in range(4):
        ts, losses = rng.integers(0, 4, 5), rng.random(5)
        model._record(torch.tensor(ts), torch.tensor(losses))
        recbole_update(ts, losses)
        np.testing.assert_allclose(model.lt_history.numpy(), ref)
        np.testing.assert_array_equal(model.lt_count.numpy(), count)


def test_x0_loss_is_snr_weighted_mse_over_pt(split):
    model = built(split, noise_scale=0.1, noise_min=0.1, noise_max=0.5, dropout=0.0).train()
    batch = user_batch(model, split)
    x0 = model.input(batch)
    torch.manual_seed(0)
    loss = model.training_loss(batch).item()
    torch.manual_seed(0)  # the same draws: uniform steps (history not full yet), then the noise
    t = torch.randint(0, 4, (x0.shape[0],))
    noise = torch.randn_like(x0)
    abar = model._abar.numpy()
    xt = np.sqrt(abar[t])[:, None] * x0.numpy() + np.sqrt(1 - abar[t])[:, None] * noise.numpy()
    with torch.no_grad():
        out = model.denoiser(torch.tensor(xt, dtype=torch.float32), t).numpy()
    mse = ((x0.numpy() - out) ** 2).mean(1)
    snr = abar / (1 - abar)
    w = np.where(t.numpy() == 0, 1.0, snr[np.maximum(t.numpy() - 1, 0)] - snr[t.numpy()])
    assert loss == pytest.approx(float((w * mse).mean()), rel=1e-4)


def test_noiseless_variant_applies_the_mlp_steps_times(split):
    model = built(split, noise_scale=0.0, steps=3).eval()
    batch = user_batch(model, split)
    x = model.input(batch)
    with torch.no_grad():
        want = x
        for i in (2, 1, 0):
            want = model.denoiser(want, torch.full((x.shape[0],), i))
        got = model.score_all_candidates(batch, None)
    torch.testing.assert_close(got, want)


def test_reverse_chain_uses_the_posterior_mean(split):
    model = built(split, noise_scale=0.1, noise_min=0.1, noise_max=0.5, steps=2).eval()
    batch = user_batch(model, split)
    x = model.input(batch)
    with torch.no_grad():
        want = x
        for i in (1, 0):
            t = torch.full((x.shape[0],), i)
            x0_hat = model.denoiser(want, t)
            want = (model._post_coef1[i].float() * x0_hat + model._post_coef2[i].float() * want)
        got = model.score_all_candidates(batch, None)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("bad", [{"mean_type": "v"}, {"sampling_steps": 9}, {"dropout": 1.0},
                                 {"noise_schedule": "quadratic"}])
def test_bad_config_is_a_clear_error(split, bad):
    with pytest.raises(ConfigError):
        built(split, **bad)
