"""MultiVAE: a variational autoencoder of the user's item set with a multinomial likelihood."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.data.types.base import csr_to_dense
from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


def _init_linear(module: nn.Module) -> None:
    """The paper's code: Xavier-normal weights, N(0, 0.001^2) biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)


class DecoderOutputItems(nn.Module):
    """The decoder's last layer as an item tower: item ``i`` has the vector ``[W_i ; b_i]``.

    ``logit_i = h . W_i + b_i = [h ; 1] . [W_i ; b_i]``, so an inner product between the query
    ``[h ; 1]`` (:class:`MultiVAEQuery`) and these vectors is exactly the decoder output, and ANN
    search over them is exact. Row 0 (padding) starts at zero and is never a softmax target.
    """

    def __init__(self, num_items: int, hidden: int):
        super().__init__()
        layer = nn.Linear(hidden, num_items)
        _init_linear(layer)
        with torch.no_grad():
            layer.weight[0].zero_()
            layer.bias[0] = 0.0
        self.weight, self.bias = layer.weight, layer.bias

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight[ids], self.bias[ids].unsqueeze(-1)], dim=-1)


class MultiVAEQuery(nn.Module):
    """Encoder ``q(z|x)`` and the decoder's hidden layers ``z -> h``; the query is ``[h ; 1]``.

    Input: the multi-hot history (``batch['history']``, else the CSR ``history_indptr`` /
    ``history_indices``), L2-normalised per user, then dropout. The encoder MLP (tanh between
    layers, linear last layer) gives ``[mu ; logvar]``. In training ``z = mu + eps * exp(logvar / 2)``,
    at evaluation ``z = mu``.
    """

    def __init__(self, num_items: int, hidden_dims, latent_dim: int, dropout: float):
        super().__init__()
        self.num_items, self.latent_dim = num_items, latent_dim
        self.dropout = nn.Dropout(dropout)
        self.encoder = MLP([num_items, *hidden_dims, 2 * latent_dim], activation="tanh")
        dec = [latent_dim, *reversed(list(hidden_dims))]
        # hidden decoder layers, every one followed by tanh (the last linear layer is the item tower)
        self.decoder = MLP(dec, activation="tanh", last_activation=True) if len(dec) > 1 else nn.Identity()
        _init_linear(self)

    def input(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The user-by-item input ``x`` ``[B, num_items]`` (column 0 is padding, always 0)."""
        if "history" in batch:
            x = batch["history"]
        else:
            x = csr_to_dense(batch["history_indptr"], batch["history_indices"], self.num_items)
        return x.float()

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` ``[B, latent_dim]`` each of ``q(z|x)``."""
        h = self.dropout(F.normalize(x, dim=1))
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """``[h ; 1]``: the last hidden layer of the decoder with the constant bias dimension."""
        h = self.decoder(z)
        return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        mu, logvar = self.encode(self.input(batch))
        return self.decode_hidden(self.sample(mu, logvar))


@register_model("MultiVAE", category="general",
                paper="D. Liang, R. G. Krishnan, M. D. Hoffman, T. Jebara. Variational Autoencoders for "
                      "Collaborative Filtering. WWW 2018.", aliases=("Mult-VAE",))
class MultiVAE(ItemTowerRecommender):
    """Mult-VAE^PR (Liang et al., WWW 2018).

    A user's item set ``x`` (multi-hot) is L2-normalised, dropped out and encoded by an MLP
    ``[num_items -> 600 -> 2*200]`` (tanh between layers) into the Gaussian ``q(z|x) = N(mu, diag(exp
    logvar))``; the decoder ``[200 -> 600 -> num_items]`` (tanh) gives logits ``f(z)`` and the
    multinomial ``pi = softmax(f(z))`` over the items. Training maximises the annealed ELBO::

        loss = -Σ_i x_i log softmax(f(z))_i + β · KL(q(z|x) || N(0, I)),    z = mu + eps · sigma

    averaged over the batch's users, with ``β = min(anneal_cap, step / total_anneal_steps)`` rising
    linearly with the optimisation step (the paper's partial regularisation, ``anneal_cap`` 0.2 and
    200,000 steps by default). At evaluation ``z = mu``. The padding column 0 is excluded from the
    softmax (logit ``-inf``).

    Item tower: the decoder's last linear layer. Item ``i``'s vector is ``[W_i ; b_i]`` and the
    query is ``[h ; 1]`` (``h`` the decoder's last hidden layer), so the inner product equals the
    decoder logit *exactly*, bias included, and ANN top-k over ``item_vectors()`` is exact
    (``embed_dim`` is ``hidden_dims[0] + 1``, derived, not a key).

    Protocol: the paper trains on all interactions of the training users and evaluates on held-out
    users (fold-in of 80% of their items, ``split_mode: user`` here). The default here is the
    library's per-user random 8:1:1 split of every user's interactions (RecBole's protocol), where
    evaluation reads each user's train (+ valid) items as input. Defaults as in the paper: Adam lr
    1e-3, batch of 500 users, input dropout 0.5, no weight decay, latent 200, hidden 600,
    Xavier-normal weights and N(0, 0.001²) biases.

    Args (config keys): ``hidden_dims``, ``latent_dim``, ``dropout``, ``anneal_cap``,
    ``total_anneal_steps``; defaults in ``multivae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="MultiVAE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "hidden_dims": "hidden layer sizes of the encoder (the decoder mirrors them); paper: [600]",
        "latent_dim": "size of the latent z (paper: 200)",
        "dropout": "dropout on the normalised input (paper: 0.5)",
        "anneal_cap": "largest KL weight β (paper: 0.2)",
        "total_anneal_steps": "update steps over which β would rise linearly from 0 to 1 (capped at "
                              "anneal_cap); 0 = β is anneal_cap from the start",
    }

    # ---- hooks -----------------------------------------------------------------------------
    def _hidden(self) -> int:
        dims = list(self.cfg("hidden_dims"))
        return dims[0] if dims else self.cfg("latent_dim")

    def _get_item_encoder(self) -> nn.Module:
        return DecoderOutputItems(self.meta.num_items, self._hidden())

    def _get_query_encoder(self) -> nn.Module:
        c = self.config
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"MultiVAE dropout must be in [0, 1), got {c['dropout']}.")
        if c["anneal_cap"] < 0 or c["total_anneal_steps"] < 0:
            raise ConfigError("MultiVAE anneal_cap and total_anneal_steps must be >= 0.")
        return MultiVAEQuery(self.meta.num_items, list(c["hidden_dims"]), c["latent_dim"], c["dropout"])

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()  # exact: the decoder's last layer is a dot product with [W_i ; b_i]

    def _get_loss_func(self):
        return None  # the annealed ELBO below

    # ---- training --------------------------------------------------------------------------
    def kl_weight(self, step: int) -> float:
        """β at update step ``step`` (0-based): ``min(anneal_cap, step / total_anneal_steps)``."""
        total, cap = self.cfg("total_anneal_steps"), float(self.cfg("anneal_cap"))
        return cap if total == 0 else min(cap, step / total)

    def elbo_terms(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(nll, kl)``: batch means of ``-Σ_i x_i log pi_i`` and ``KL(q(z|x) || N(0, I))``."""
        q = self.query_encoder
        x = q.input(batch)
        mu, logvar = q.encode(x)
        query = q.decode_hidden(q.sample(mu, logvar))
        logits = self.score_func.score_all(query, self.item_vectors())
        logits[:, 0] = float("-inf")
        log_pi = torch.log_softmax(logits, dim=-1)[:, 1:]
        nll = -(x[:, 1:] * log_pi).sum(-1).mean()
        kl = 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(-1).mean()
        return nll, kl

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        nll, kl = self.elbo_terms(batch)
        return nll + self.kl_weight(self.global_step) * kl

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train/kl_weight", self.kl_weight(self.global_step), on_step=False, on_epoch=True,
                 batch_size=self._batch_size(batch))
        return loss
