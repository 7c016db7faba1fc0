"""RecVAE: Mult-VAE with a residual encoder, a composite prior and alternating encoder / decoder updates."""
import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.model.zoo.general.multivae import DecoderOutputItems, MultiVAEQuery
from recstudio.utils.errors import ConfigError


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log N(z; mu, exp(logvar))``."""
    return -0.5 * (logvar + math.log(2 * math.pi) + (z - mu).pow(2) / logvar.exp())


class RecVAEEncoder(nn.Module):
    """``q(z|x)``: five dense layers with swish, LayerNorm (eps 0.1) and dense residual connections
    (layer ``k`` gets the sum of every earlier layer's output), then linear ``mu`` and ``logvar``."""

    def __init__(self, num_items: int, hidden: int, latent: int, num_layers: int = 5):
        super().__init__()
        self.num_items = num_items
        self.fcs = nn.ModuleList([nn.Linear(num_items if i == 0 else hidden, hidden) for i in range(num_layers)])
        self.lns = nn.ModuleList([nn.LayerNorm(hidden, eps=0.1) for _ in range(num_layers)])
        self.fc_mu, self.fc_logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, dropout: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
        h = F.dropout(F.normalize(x, dim=1), dropout, training=self.training)
        acc = None
        for fc, ln in zip(self.fcs, self.lns):
            pre = fc(h) if acc is None else fc(h) + acc
            h = ln(F.silu(pre))
            acc = h if acc is None else acc + h
        return self.fc_mu(h), self.fc_logvar(h)


class RecVAEQuery(nn.Module):
    """The encoder as a query encoder: ``[mu ; 1]`` (evaluation uses the posterior mean)."""

    def __init__(self, encoder: RecVAEEncoder):
        super().__init__()
        self.num_items = encoder.num_items
        self.encoder = encoder

    input = MultiVAEQuery.input

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        mu, _ = self.encoder(self.input(batch))
        return torch.cat([mu, torch.ones_like(mu[..., :1])], dim=-1)


@register_model("RecVAE", category="general",
                paper="I. Shenbin, A. Alekseev, E. Tutubalina, V. Malykh, S. I. Nikolenko. RecVAE: A New "
                      "Variational Autoencoder for Top-N Recommendations with Implicit Feedback. WSDM 2020.")
class RecVAE(ItemTowerRecommender):
    """RecVAE (Shenbin et al., WSDM 2020).

    Mult-VAE with (1) a deeper encoder: five swish / LayerNorm layers of ``hidden_dim`` units with
    dense residual connections; (2) a composite prior
    ``p(z) = w_1 N(0, I) + w_2 q_old(z|x) + w_3 N(0, e^10 I)`` (``mixture_weights``), ``q_old`` a frozen
    copy of the encoder taken at the start of every epoch; (3) a per-user KL weight
    ``β_u = gamma · |x_u|`` (``gamma: 0`` uses the constant ``beta``); (4) alternating training:
    per batch ``n_enc_epochs`` encoder updates (input dropout ``dropout``) then ``n_dec_epochs``
    decoder updates (no dropout), each with its own optimizer. The loss is::

        -E_q[Σ_i x_i log softmax(W z + b)_i] + β_u · (log q(z|x) - log p(z)),   z = mu + eps · sigma

    (the KL term estimated with the one sample, as in the paper's code). The decoder is one linear
    layer, so the item tower is ``[W_i ; b_i]`` and the query ``[mu ; 1]``: exact ANN top-k.

    Departures from the paper: the paper's code runs ``n_enc_epochs`` full passes of the encoder, then
    ``n_dec_epochs`` of the decoder; here both alternate within every batch (identical when an epoch
    is one batch, as RecBole's 2048-user batches on ml-100k; the prior is refreshed once per epoch as
    in the paper, before the encoder passes). ``noise_std`` 0.01 is RecBole 1.2.1's
    reparameterisation noise (the paper samples ``eps ~ N(0, I)``, ``noise_std: 1``); lr 1e-3
    (RecBole; the paper's code 5e-4). Manual optimisation (two optimizers): ``gradient_clip`` and
    ``scheduler`` are refused.

    Args (config keys): ``hidden_dim``, ``latent_dim``, ``dropout``, ``beta``, ``gamma``,
    ``mixture_weights``, ``n_enc_epochs``, ``n_dec_epochs``, ``noise_std``; defaults in ``recvae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="RecVAE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "hidden_dim": "units of each of the five encoder layers (paper: 600)",
        "latent_dim": "size of z (paper: 200)",
        "dropout": "input dropout of the encoder updates (paper: 0.5)",
        "beta": "constant KL weight, used when gamma is 0",
        "gamma": "per-user KL weight gamma * (number of the user's items); 0 = use beta (paper: 0.005)",
        "mixture_weights": "weights of the prior's N(0, I), q_old(z|x) and N(0, e^10 I) (paper: [0.15, 0.75, 0.1])",
        "n_enc_epochs": "encoder updates per batch (paper: 3 passes)",
        "n_dec_epochs": "decoder updates per batch (paper: 1 pass)",
        "noise_std": "std of the reparameterisation noise eps (RecBole: 0.01; paper: 1)",
    }

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        c = self.config
        if c["gradient_clip"] is not None or c["scheduler"] is not None:
            raise ConfigError("RecVAE alternates two optimizers by hand (manual optimisation), where Lightning "
                              "cannot clip gradients or step a scheduler; remove gradient_clip and scheduler.")
        w = list(c["mixture_weights"])
        if len(w) != 3 or min(w) <= 0:
            raise ConfigError(f"RecVAE mixture_weights must be three positive numbers, got {w}.")
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"RecVAE dropout must be in [0, 1), got {c['dropout']}.")
        if c["n_enc_epochs"] < 1 or c["n_dec_epochs"] < 1:
            raise ConfigError("RecVAE n_enc_epochs and n_dec_epochs must be >= 1.")
        if c["beta"] < 0 or c["gamma"] < 0 or c["noise_std"] < 0:
            raise ConfigError("RecVAE beta, gamma and noise_std must be >= 0.")
        self.automatic_optimization = False

    # ---- blocks ------------------------------------------------------------------------------
    def _get_item_encoder(self) -> nn.Module:
        return DecoderOutputItems(self.meta.num_items, self.cfg("latent_dim"))

    def _get_query_encoder(self) -> nn.Module:
        return RecVAEQuery(RecVAEEncoder(self.meta.num_items, self.cfg("hidden_dim"), self.cfg("latent_dim")))

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def _get_loss_func(self):
        return None  # the negative ELBO below

    def build_blocks(self) -> None:
        super().build_blocks()
        enc = self.query_encoder.encoder
        self.encoder_old = RecVAEEncoder(self.meta.num_items, self.cfg("hidden_dim"), self.cfg("latent_dim"),
                                         len(enc.fcs))
        self.encoder_old.requires_grad_(False)
        self.update_prior()

    def update_prior(self) -> None:
        """``q_old`` <- the current encoder."""
        self.encoder_old.load_state_dict(self.query_encoder.encoder.state_dict())

    # ---- the loss ----------------------------------------------------------------------------
    def log_prior(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` element-wise under the composite prior."""
        with torch.no_grad():
            self.encoder_old.eval()
            mu_old, logvar_old = self.encoder_old(x)
        zero = torch.zeros_like(z)
        parts = [log_normal(z, zero, zero), log_normal(z, mu_old, logvar_old), log_normal(z, zero, zero + 10.0)]
        w = [math.log(float(v)) for v in self.cfg("mixture_weights")]
        return torch.logsumexp(torch.stack([p + lw for p, lw in zip(parts, w)], dim=-1), dim=-1)

    def neg_elbo(self, batch: Dict[str, torch.Tensor], encoder_step: bool = True) -> torch.Tensor:
        """The negative ELBO of a batch; ``encoder_step=False``: the decoder update's loss (no input
        dropout; only the likelihood depends on the decoder, so the KL term is left out)."""
        x = self.query_encoder.input(batch)
        enc = self.query_encoder.encoder
        with torch.set_grad_enabled(encoder_step and torch.is_grad_enabled()):
            mu, logvar = enc(x, self.cfg("dropout") if encoder_step else 0.0)
            z = mu
            if self.training:
                z = mu + torch.randn_like(mu) * float(self.cfg("noise_std")) * torch.exp(0.5 * logvar)
        logits = self.score_func.score_all(torch.cat([z, torch.ones_like(z[..., :1])], -1), self.item_vectors())
        logits[:, 0] = float("-inf")
        mll = (x[:, 1:] * torch.log_softmax(logits, dim=-1)[:, 1:]).sum(-1)
        if not encoder_step:
            return -mll.mean()
        gamma = float(self.cfg("gamma"))
        weight = gamma * x.sum(-1) if gamma else torch.full_like(mll, float(self.cfg("beta")))
        kl = (log_normal(z, mu, logvar) - self.log_prior(x, z)).sum(-1) * weight
        return -(mll - kl).mean()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.neg_elbo(batch, encoder_step=True)

    # ---- training: alternating updates -------------------------------------------------------
    def configure_optimizers(self):
        from recstudio.model.optim import OPTIMIZERS
        build = OPTIMIZERS.get(self.config["optimizer"])
        enc = [p for p in self.query_encoder.parameters() if p.requires_grad]
        dec = [p for p in self.item_encoder.parameters() if p.requires_grad]
        return [build(enc, self.config), build(dec, self.config)]

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.update_prior()

    def training_step(self, batch, batch_idx):
        enc_opt, dec_opt = self.optimizers()
        for _ in range(int(self.cfg("n_enc_epochs"))):
            loss = self.neg_elbo(batch, encoder_step=True)
            enc_opt.zero_grad()
            self.manual_backward(loss)
            enc_opt.step()
        for _ in range(int(self.cfg("n_dec_epochs"))):
            loss = self.neg_elbo(batch, encoder_step=False)
            dec_opt.zero_grad()
            self.manual_backward(loss)
            dec_opt.step()
        loss = loss.detach()
        self._loss_sum += float(loss)
        self._loss_count += 1
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=self._batch_size(batch), sync_dist=True)
        return None
