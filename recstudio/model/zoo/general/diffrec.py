"""DiffRec: a diffusion model over the user's interaction vector, denoised by an MLP."""
import math
from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.zoo.general.multivae import MultiVAEQuery
from recstudio.utils.errors import ConfigError

NOISE_SCHEDULES = ("linear", "linear-var", "cosine", "binomial")
MEAN_TYPES = ("x0", "eps")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f_j), sin(t f_j)]`` of the steps ``t`` ``[B]``, ``f_j = max_period^(-j/half)``
    (``half = dim // 2``; a zero column is appended when ``dim`` is odd): ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def diffusion_betas(schedule: str, steps: int, scale: float, low: float, high: float) -> np.ndarray:
    """The forward-process variances ``beta_1..beta_T`` (float64). ``linear``: ``linspace(scale low, scale high)``;
    ``linear-var``: the betas whose cumulative ``1 - alpha_bar`` is that linspace (capped at 0.999);
    ``cosine``: Nichol & Dhariwal's ``alpha_bar(t) = cos((t + 0.008) / 1.008 pi / 2)^2``; ``binomial``:
    ``1 / (T - t + 1)``."""
    if schedule in ("linear", "linear-var"):
        var = np.linspace(scale * low, scale * high, steps, dtype=np.float64)
        if schedule == "linear":
            return var
        alpha_bar = 1.0 - var
        betas = [1.0 - alpha_bar[0]] + [min(1.0 - alpha_bar[i] / alpha_bar[i - 1], 0.999) for i in range(1, steps)]
        return np.array(betas, dtype=np.float64)
    if schedule == "cosine":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1.0 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)],
                        dtype=np.float64)
    if schedule == "binomial":
        return np.array([1.0 / (steps - t + 1) for t in range(steps)], dtype=np.float64)
    raise ConfigError(f"DiffRec noise_schedule must be one of {NOISE_SCHEDULES}, got {schedule!r}.")


class Denoiser(nn.Module):
    """The reverse-process network: ``MLP([x_t ; W emb(t)])`` with input dropout (and optional L2
    normalisation of ``x_t``), tanh between layers, a linear last layer of size ``num_items``."""

    def __init__(self, num_items: int, hidden_dims, emb_size: int, activation: str, dropout: float, norm: bool):
        super().__init__()
        self.emb_size, self.norm = emb_size, norm
        self.emb_layer = nn.Linear(emb_size, emb_size)
        self.mlp = MLP([num_items + emb_size, *hidden_dims, num_items], activation=activation)
        self.drop = nn.Dropout(dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.emb_layer(timestep_embedding(t, self.emb_size))
        if self.norm:
            x = nn.functional.normalize(x, dim=-1)
        return self.mlp(torch.cat([self.drop(x), emb], dim=-1))


@register_model("DiffRec", category="general",
                paper="W. Wang, Y. Xu, F. Feng, X. Lin, X. He, T.-S. Chua. Diffusion Recommender Model. SIGIR 2023.")
class DiffRec(TowerFreeRecommender):
    """DiffRec (Wang et al., SIGIR 2023). A user's interaction vector ``x_0`` (multi-hot over the items) is
    corrupted by a Gaussian forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` over
    ``steps`` steps (betas from ``noise_schedule`` times ``noise_scale``, ``beta_1`` fixed to 1e-5 with
    ``beta_fixed``); an MLP ``f(x_t, t)`` (:class:`Denoiser`) predicts ``x_0`` (``mean_type: x0``) or the
    noise (``eps``). Training: one step ``t`` per user, drawn uniformly until every step has
    ``history_num_per_term`` recorded losses, then by importance sampling ``p_t ~ sqrt(E[L_t^2])`` (mixed
    with 0.001 uniform); the loss is the per-user mean squared error, weighted with ``reweight`` by
    ``SNR(t-1) - SNR(t)`` (``x0``; 1 at ``t = 0``) or the ELBO weight (``eps``), divided by ``p_t``, averaged
    over the batch. Ranking: starting from the user's history ``x_0`` (noised to step ``sampling_steps``
    first if it is > 0), the reverse chain ``x_{t-1} = mu_theta(x_t, t)`` runs through all ``steps`` steps
    (plus posterior noise if ``sampling_noise``) and its output scores every item. ``noise_scale: 0``
    gives the noiseless variant (the MLP applied ``steps`` times at inference).

    Scoring is the output of a non-linear chain, so there is no item tower and no ANN index. With
    ``sampling_noise`` or ``sampling_steps > 0`` ranking is stochastic (torch's generator).

    Defaults are RecBole 1.2.1's: linear schedule, noise_scale 1e-3, noise_min 5e-4, noise_max 5e-3, 5 steps,
    x0 prediction, reweighting on, beta_fixed, one hidden layer of 300 (tanh), timestep embedding 10, input
    dropout 0.5, Adam 1e-3. Departures: 400 users per batch (the paper's code; RecBole's default 2048 is more
    than ml-100k's users, one update per epoch); T-DiffRec's time-aware reweighting and L-DiffRec's latent
    clustering (separate models in the paper) are not included; padding column 0 is an item column as in
    RecBole (always 0 in the input and the target).

    Args (config keys): ``hidden_dims``, ``emb_size``, ``activation``, ``dropout``, ``norm``, ``mean_type``,
    ``steps``, ``noise_schedule``, ``noise_scale``, ``noise_min``, ``noise_max``, ``beta_fixed``, ``reweight``,
    ``history_num_per_term``, ``sampling_steps``, ``sampling_noise``; defaults in ``diffrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DiffRec", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "hidden_dims": "hidden layer sizes of the denoising MLP (RecBole: [300])",
        "emb_size": "size of the sinusoidal timestep embedding (RecBole: 10)",
        "activation": "activation between the MLP layers (RecBole: tanh)",
        "dropout": "dropout on the denoiser's input x_t (RecBole: 0.5)",
        "norm": "L2-normalise x_t before the denoiser",
        "mean_type": "what the denoiser predicts: x0 (the clean vector) or eps (the noise)",
        "steps": "number of diffusion steps T",
        "noise_schedule": "beta schedule: linear | linear-var | cosine | binomial",
        "noise_scale": "scale of the linear schedules' betas (0 = no noise: the MLP alone, applied steps times)",
        "noise_min": "lower bound of the linear schedules (times noise_scale)",
        "noise_max": "upper bound of the linear schedules (times noise_scale)",
        "beta_fixed": "fix beta_1 to 1e-5 (against over-fitting the first step)",
        "reweight": "weight each step's loss (SNR difference for x0, ELBO weight for eps); off when noise_scale is 0",
        "history_num_per_term": "losses kept per step for importance sampling of the steps",
        "sampling_steps": "noise the history to this step before the reverse chain at inference (0 = none)",
        "sampling_noise": "add the posterior noise in the reverse chain at inference",
    }

    # ---- building ---------------------------------------------------------------------------
    def build_blocks(self) -> None:
        c = self.config
        if c["mean_type"] not in MEAN_TYPES:
            raise ConfigError(f"DiffRec mean_type must be one of {MEAN_TYPES}, got {c['mean_type']!r}.")
        if int(c["steps"]) < 1:
            raise ConfigError(f"DiffRec steps must be >= 1, got {c['steps']}.")
        if not 0 <= int(c["sampling_steps"]) <= int(c["steps"]):
            raise ConfigError(f"DiffRec sampling_steps must be in 0..steps ({c['steps']}), got {c['sampling_steps']}.")
        if not 0.0 <= float(c["dropout"]) < 1.0:
            raise ConfigError(f"DiffRec dropout must be in [0, 1), got {c['dropout']}.")
        if float(c["noise_scale"]) < 0 or int(c["history_num_per_term"]) < 1 or int(c["emb_size"]) < 1:
            raise ConfigError("DiffRec needs noise_scale >= 0, history_num_per_term >= 1 and emb_size >= 1.")
        steps = int(c["steps"])
        self.num_items = self.meta.num_items
        self.denoiser = Denoiser(self.num_items, list(c["hidden_dims"]), int(c["emb_size"]), c["activation"],
                                 float(c["dropout"]), bool(c["norm"]))
        self.noisy = float(c["noise_scale"]) != 0.0
        self.register_buffer("lt_history", torch.zeros(steps, int(c["history_num_per_term"]), dtype=torch.float64))
        self.register_buffer("lt_count", torch.zeros(steps, dtype=torch.long))
        if self.noisy:
            betas = diffusion_betas(c["noise_schedule"], steps, float(c["noise_scale"]), float(c["noise_min"]),
                                    float(c["noise_max"]))
            if c["beta_fixed"]:
                betas[0] = 1e-5
            if not ((betas > 0) & (betas <= 1)).all():
                raise ConfigError(f"DiffRec betas must lie in (0, 1], got {betas}; lower noise_scale / noise_max.")
            self._set_schedule(torch.as_tensor(betas, dtype=torch.float64))
        elif c["noise_schedule"] not in NOISE_SCHEDULES:
            raise ConfigError(f"DiffRec noise_schedule must be one of {NOISE_SCHEDULES}, got {c['noise_schedule']!r}.")

    def _set_schedule(self, betas: torch.Tensor) -> None:
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        tables = {
            "betas": betas, "abar": abar, "abar_prev": abar_prev,
            "sqrt_abar": abar.sqrt(), "sqrt_one_minus_abar": (1.0 - abar).sqrt(),
            "sqrt_recip_abar": (1.0 / abar).sqrt(), "sqrt_recipm1_abar": (1.0 / abar - 1.0).sqrt(),
            "post_log_var": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "post_coef1": betas * abar_prev.sqrt() / (1.0 - abar),
            "post_coef2": (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
        }
        for name, value in tables.items():
            self.register_buffer("_" + name, value, persistent=False)

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` as a ``[B, 1]`` column in ``like``'s dtype."""
        return table[t].to(like.dtype)[:, None]

    input = MultiVAEQuery.input

    # ---- diffusion ----------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``."""
        return self._at(self._sqrt_abar, t, x0) * x0 + self._at(self._sqrt_one_minus_abar, t, x0) * noise

    def _predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.cfg("mean_type") == "x0":
            return out
        return self._at(self._sqrt_recip_abar, t, x_t) * x_t - self._at(self._sqrt_recipm1_abar, t, x_t) * out

    def p_mean(self, x_t: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``p(x_{t-1} | x_t)``: the posterior ``q(x_{t-1} | x_t, x0_hat)``."""
        x0 = self._predict_x0(x_t, t, self.denoiser(x_t, t))
        mean = self._at(self._post_coef1, t, x_t) * x0 + self._at(self._post_coef2, t, x_t) * x_t
        return mean, self._at(self._post_log_var, t, x_t)

    def reverse(self, x0: torch.Tensor) -> torch.Tensor:
        """The inference chain from the history ``x0`` ``[B, num_items]``: item scores ``[B, num_items]``."""
        steps, b = int(self.cfg("steps")), x0.shape[0]
        x = x0
        if self.noisy and int(self.cfg("sampling_steps")) > 0:
            t = torch.full((b,), int(self.cfg("sampling_steps")) - 1, dtype=torch.long, device=x0.device)
            x = self.q_sample(x0, t, torch.randn_like(x0))
        for i in reversed(range(steps)):
            t = torch.full((b,), i, dtype=torch.long, device=x0.device)
            if not self.noisy:
                x = self.denoiser(x, t)
                continue
            mean, log_var = self.p_mean(x, t)
            if self.cfg("sampling_noise") and i > 0:
                mean = mean + torch.exp(0.5 * log_var) * torch.randn_like(x)
            x = mean
        return x

    # ---- scoring ------------------------------------------------------------------------------
    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.reverse(self.input(batch))

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        scores = self.reverse(self.input(batch))
        return scores.gather(1, items.view(len(items), -1)).view_as(items)

    # ---- training -----------------------------------------------------------------------------
    def sample_steps(self, b: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(t [B], p_t [B])``: uniform until every step's loss history is full, then importance sampling."""
        steps, full = int(self.cfg("steps")), int(self.cfg("history_num_per_term"))
        if not bool((self.lt_count == full).all()):
            return torch.randint(0, steps, (b,), device=device), torch.ones(b, device=device)
        lt = torch.sqrt((self.lt_history ** 2).mean(-1))
        p = lt / lt.sum() * (1 - 0.001) + 0.001 / steps
        t = torch.multinomial(p, b, replacement=True)
        return t, (p[t] * steps).float()

    def _record(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append the batch's losses to each step's history (the last ``history_num_per_term`` kept, in order)."""
        size = self.lt_history.shape[1]
        losses = losses.detach().to(self.lt_history.dtype)
        for step in torch.unique(t).tolist():
            n = int(self.lt_count[step])
            kept = torch.cat([self.lt_history[step, :n], losses[t == step]])[-size:]
            self.lt_history[step, :kept.shape[0]] = kept
            self.lt_count[step] = kept.shape[0]

    def _snr(self, t: torch.Tensor) -> torch.Tensor:
        return self._abar[t] / (1.0 - self._abar[t])

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = self.input(batch)
        b = x0.shape[0]
        t, pt = self.sample_steps(b, x0.device)
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise) if self.noisy else x0
        out = self.denoiser(x_t, t)
        target = x0 if self.cfg("mean_type") == "x0" else noise
        mse = ((target - out) ** 2).mean(-1)
        loss = mse
        if self.noisy and self.cfg("reweight"):
            if self.cfg("mean_type") == "x0":
                weight = torch.where(t == 0, torch.ones_like(self._abar[t]), self._snr((t - 1).clamp_min(0)) - self._snr(t))
            else:
                weight = (1 - self._abar[t]) / ((1 - self._abar_prev[t]) ** 2 * (1 - self._betas[t]))
                weight = torch.where(t == 0, torch.ones_like(weight), weight)
                nll = ((x0 - self._predict_x0(x_t, t, out)) ** 2).mean(-1) / 2.0
                loss = torch.where(t == 0, nll, mse)
            loss = weight.to(mse.dtype) * loss
        self._record(t, loss)
        return (loss / pt).mean()
