"""MacridVAE: a VAE of the user's item set with K disentangled macro concepts (facets)."""
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.zoo.general.multivae import MultiVAEQuery
from recstudio.utils.errors import ConfigError


@register_model("MacridVAE", category="general",
                paper="J. Ma, C. Zhou, P. Cui, H. Yang, W. Zhu. Learning Disentangled Representations for "
                      "Recommendation. NeurIPS 2019.")
class MacridVAE(TowerFreeRecommender):
    """MacridVAE (Ma et al., NeurIPS 2019).

    Items have unit vectors ``h_i`` and there are ``K = kfac`` unit concept prototypes ``m_k``; item
    ``i`` belongs to concept ``k`` with ``c_ik = softmax_k(h_i · m_k / tau)`` (in training a Gumbel-softmax
    sample of it, unless ``nogb``). For each concept the user's normalised, dropped-out history masked by
    concept ``k`` (``x ⊙ c_:k``) is encoded by a shared MLP (tanh between layers) into
    ``[mu_k ; logvar_k]``, ``mu_k`` L2-normalised; ``z_k = mu_k + std · eps · exp(logvar_k / 2)`` in
    training, ``mu_k`` at evaluation, then normalised. The item logits are::

        logit_i = log Σ_k c_ik · exp(z_k · h_i / tau)

    trained with the multinomial likelihood ``-Σ_i x_i log softmax(logit)_i`` plus
    ``β · Σ_k KL(N(mu_k, σ_k²) || N(0, I))``, ``β = min(anneal_cap, step / total_anneal_steps)``, plus
    ``reg_weights = [r1, r2]``: ``r1 · (||H|| + ||M||) + r2 · Σ ||W_encoder||`` (non-squared norms, RecBole).

    Scoring is a mixture over concepts, not one inner product, so there is no item tower and no ANN
    index; ranking computes the logits of every item. The padding item 0 has a vector but is never a
    target (its logit is excluded from the softmax).

    Departures from the paper: defaults of RecBole 1.2.1 (64-dimensional codes, hidden [600], K = 10,
    tau 0.1, noise std 0.01, Adam 1e-3); 500 users per batch (the Mult-VAE code's batch).

    Args (config keys): ``embed_dim``, ``hidden_dims``, ``kfac``, ``tau``, ``nogb``, ``std``, ``dropout``,
    ``anneal_cap``, ``total_anneal_steps``, ``reg_weights``; defaults in ``macridvae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="MacridVAE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "embed_dim": "size of the item vectors, prototypes and per-concept codes (RecBole: 64)",
        "hidden_dims": "hidden layer sizes of the shared encoder MLP (RecBole: [600])",
        "kfac": "number of macro concepts K (RecBole: 10)",
        "tau": "temperature of the concept assignment and of the logits (RecBole: 0.1)",
        "nogb": "true: soft concept assignments in training too (no Gumbel-softmax sampling)",
        "std": "std of the reparameterisation noise (RecBole: 0.01)",
        "dropout": "dropout on the normalised input (RecBole: 0.5)",
        "anneal_cap": "largest KL weight β (RecBole: 0.2)",
        "total_anneal_steps": "update steps over which β rises linearly to anneal_cap; 0 = anneal_cap from the start",
        "reg_weights": "[r1, r2]: weights of the non-squared L2 norms of the item vectors + prototypes (r1) and "
                       "of the encoder weights (r2)",
    }

    def build_blocks(self) -> None:
        c = self.config
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"MacridVAE dropout must be in [0, 1), got {c['dropout']}.")
        if c["kfac"] < 1 or c["tau"] <= 0 or c["std"] < 0:
            raise ConfigError("MacridVAE needs kfac >= 1, tau > 0 and std >= 0.")
        if len(c["reg_weights"]) != 2 or min(c["reg_weights"]) < 0:
            raise ConfigError(f"MacridVAE reg_weights must be two numbers >= 0, got {c['reg_weights']}.")
        if c["anneal_cap"] < 0 or c["total_anneal_steps"] < 0:
            raise ConfigError("MacridVAE anneal_cap and total_anneal_steps must be >= 0.")
        n, d = self.meta.num_items, int(c["embed_dim"])
        self.num_items = n
        self.encoder = MLP([n, *c["hidden_dims"], 2 * d], activation="tanh")
        self.item_embedding = nn.Embedding(n, d)
        self.k_embedding = nn.Embedding(int(c["kfac"]), d)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.xavier_normal_(m.weight)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    input = MultiVAEQuery.input

    def kl_weight(self, step: int) -> float:
        total, cap = self.cfg("total_anneal_steps"), float(self.cfg("anneal_cap"))
        return cap if total == 0 else min(cap, step / total)

    def forward_all(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor],
                                                                     List[torch.Tensor]]:
        """``(logits [B, num_items], [mu_k], [logvar_k])``."""
        tau, d = float(self.cfg("tau")), int(self.cfg("embed_dim"))
        cores = F.normalize(self.k_embedding.weight, dim=1)
        items = F.normalize(self.item_embedding.weight, dim=1)
        x = F.dropout(F.normalize(self.input(batch), dim=1), float(self.cfg("dropout")), training=self.training)
        cate_logits = items @ cores.T / tau                                   # [I, K]
        if self.training and not self.cfg("nogb"):
            cates = F.gumbel_softmax(cate_logits, tau=1, hard=False, dim=-1)
        else:
            cates = torch.softmax(cate_logits, dim=-1)
        log_cates = torch.log(cates.clamp_min(1e-30))
        mus, logvars, parts = [], [], []
        for k in range(cates.shape[1]):
            h = self.encoder(x * cates[:, k])
            mu, logvar = F.normalize(h[:, :d], dim=1), h[:, d:]
            z = mu
            if self.training:
                z = mu + torch.randn_like(mu) * float(self.cfg("std")) * torch.exp(0.5 * logvar)
            parts.append(F.normalize(z, dim=1) @ items.T / tau + log_cates[:, k])
            mus.append(mu)
            logvars.append(logvar)
        return torch.logsumexp(torch.stack(parts, 0), dim=0), mus, logvars

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.forward_all(batch)[0]

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        logits = self.forward_all(batch)[0]
        return logits.gather(1, items.view(len(items), -1)).view_as(items)

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.input(batch)
        logits, mus, logvars = self.forward_all(batch)
        nll = -(x[:, 1:] * torch.log_softmax(logits[:, 1:], dim=-1)).sum(-1).mean()  # padding 0 left out
        kl = sum(0.5 * (torch.exp(lv) + mu ** 2 - 1.0 - lv).sum(-1).mean() for mu, lv in zip(mus, logvars))
        loss = nll + self.kl_weight(self.global_step) * kl
        r1, r2 = (float(r) for r in self.cfg("reg_weights"))
        if r1:
            loss = loss + r1 * (self.item_embedding.weight.norm() + self.k_embedding.weight.norm())
        if r2:
            loss = loss + r2 * sum(m.weight.norm() for m in self.encoder.modules() if isinstance(m, nn.Linear))
        return loss
