"""MultiDAE: a denoising autoencoder of the user's item set with a multinomial likelihood."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.model.zoo.general.multivae import DecoderOutputItems, MultiVAEQuery, _init_linear
from recstudio.utils.errors import ConfigError


class MultiDAEQuery(MultiVAEQuery):
    """Encoder and hidden decoder layers of Mult-DAE; the query is ``[h ; 1]``.

    Input ``x`` (multi-hot) is L2-normalised per user and dropped out, then
    ``[num_items -> hidden_dims -> latent_dim]`` with tanh after *every* layer (the latent code
    too), and the decoder's hidden layers ``[latent_dim -> reversed(hidden_dims)]`` with tanh.
    """

    def __init__(self, num_items: int, hidden_dims, latent_dim: int, dropout: float):
        nn.Module.__init__(self)
        self.num_items, self.latent_dim = num_items, latent_dim
        self.dropout = nn.Dropout(dropout)
        self.encoder = MLP([num_items, *hidden_dims, latent_dim], activation="tanh", last_activation=True)
        dec = [latent_dim, *reversed(list(hidden_dims))]
        self.decoder = MLP(dec, activation="tanh", last_activation=True) if len(dec) > 1 else nn.Identity()
        _init_linear(self)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.encoder(self.dropout(F.normalize(self.input(batch), dim=1)))
        return self.decode_hidden(z)


@register_model("MultiDAE", category="general",
                paper="D. Liang, R. G. Krishnan, M. D. Hoffman, T. Jebara. Variational Autoencoders for "
                      "Collaborative Filtering. WWW 2018.", aliases=("Mult-DAE",))
class MultiDAE(ItemTowerRecommender):
    """Mult-DAE (Liang et al., WWW 2018): the denoising counterpart of Mult-VAE.

    The user's item set ``x`` is L2-normalised and dropped out (input dropout is the noise),
    encoded by ``[num_items -> 600 -> latent]`` and decoded by ``[latent -> 600 -> num_items]`` with
    tanh after every layer except the last; the loss is the multinomial log-likelihood::

        loss = -Σ_i x_i log softmax(f(g(dropout(x / ||x||))))_i       (mean over the batch's users)

    The padding column 0 is excluded from the softmax. Item tower: the decoder's last linear layer,
    item ``i`` is ``[W_i ; b_i]`` and the query ``[h ; 1]``, so the inner product is the decoder logit
    exactly and ANN top-k is exact.

    Departures from the paper: latent size 64 (RecBole 1.2.1's default; the paper uses 200) and no
    L2 weight penalty (the paper's λ = 0.01 on the weights; RecBole has none either). Adam lr 1e-3,
    500 users per batch as the paper's code.

    Args (config keys): ``hidden_dims``, ``latent_dim``, ``dropout``; defaults in ``multidae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="MultiDAE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "hidden_dims": "hidden layer sizes of the encoder (the decoder mirrors them); paper: [600]",
        "latent_dim": "size of the code (RecBole: 64; paper: 200)",
        "dropout": "dropout on the normalised input, the denoising noise (paper: 0.5)",
    }

    def _hidden(self) -> int:
        dims = list(self.cfg("hidden_dims"))
        return dims[0] if dims else self.cfg("latent_dim")

    def _get_item_encoder(self) -> nn.Module:
        return DecoderOutputItems(self.meta.num_items, self._hidden())

    def _get_query_encoder(self) -> nn.Module:
        c = self.config
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"MultiDAE dropout must be in [0, 1), got {c['dropout']}.")
        return MultiDAEQuery(self.meta.num_items, list(c["hidden_dims"]), c["latent_dim"], c["dropout"])

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def _get_loss_func(self):
        return None  # the multinomial log-likelihood below

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.query_encoder.input(batch)
        logits = self.score_func.score_all(self.query_encoder(batch), self.item_vectors())
        logits[:, 0] = float("-inf")
        return -(x[:, 1:] * torch.log_softmax(logits, dim=-1)[:, 1:]).sum(-1).mean()
