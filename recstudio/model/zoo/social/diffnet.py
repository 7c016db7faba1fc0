"""DiffNet: user vectors diffused over the social network, plus the mean of the user's items."""

import torch
from torch import nn

from recstudio.model.family.social import SOCIAL_HELP, SocialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

LAYERS = ("sum", "diffusion")


@register_model("DiffNet", category="social",
                paper="L. Wu, P. Sun, Y. Fu, R. Hong, X. Wang, M. Wang. A Neural Influence Diffusion Model for "
                      "Social Recommendation. SIGIR 2019.")
class DiffNet(SocialRecommender):
    """Neural influence diffusion (Wu et al., SIGIR 2019): a user's id embedding ``h^0_u`` is diffused
    for ``K`` layers over the (row-normalised) social network ``T``, and the user's final vector adds
    the mean of the items the user consumed in training,

    ``u_hat = h_u + (1/|R(u)|) sum_{i in R(u)} v_i``,  ``score(u, i) = u_hat . v_i``,

    trained with BPR (+ ``reg_weight`` times RecBole's EmbLoss on the batch's id embeddings). ``layer``
    chooses the diffusion:

    - ``sum`` (default; RecBole-GNN's DiffNet, which says it follows the authors' code):
      ``h^{k+1} = T h^k`` without parameters, ``h_u = sum_{k=0..K} h^k_u``.
    - ``diffusion`` (the paper's eq. 5): ``h^{k+1} = sigmoid(W_k [h^k ; T h^k])`` with one
      ``Linear(2d, d)`` per layer, ``h_u = h^K_u``. With the other defaults it trains poorly on
      lastfm-2k (best valid mrr@10 0.099, stopped after 14 epochs at patience 10; ``sum``: 0.252): the
      sigmoid squashes every user vector into ``(0, 1)^d``.

    User vectors of every user are computed once per evaluation (cached until the next training step).
    Early stopping waits 20 validations (``early_stop_patience`` in ``diffnet.yaml``): the validation
    curve has long plateaus.

    Departures from the paper: the default layer is RecBole-GNN's parameter-free ``sum``, not eq. 5; no
    user / item feature fusion layer (our datasets have no review or profile features, so ``h^0`` and
    ``v`` are free id embeddings); mini-batch Adam with BPR and uniform negatives, RecBole-GNN's settings
    (embedding 64, 2 layers, reg 1e-5, lr 1e-3) where the paper is silent; the network is symmetrised
    by default (``social_symmetric: true``, RecBole-GNN's ``undirected_net``). A user without friends
    gets ``T h = 0`` (only ``h^0`` and the item mean).

    Args (config keys): ``embed_dim``, ``n_layers``, ``layer``, ``social_symmetric``, ``reg_weight``,
    ``loss``, ``sampler``, ``num_neg``, ``score_func``; defaults in ``diffnet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DiffNet", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    uses_interest_graph = True
    option_help = {**SOCIAL_HELP,
                   "n_layers": "number K of diffusion layers over the social network",
                   "layer": "diffusion layer: 'sum' (h^{k+1} = T h^k, layers summed; RecBole-GNN) or 'diffusion' "
                            "(h^{k+1} = sigmoid(W_k [h^k ; T h^k]); the paper's eq. 5)"}

    def build_blocks(self) -> None:
        if self.cfg("layer") not in LAYERS:
            raise ConfigError(f"DiffNet layer must be one of {LAYERS}, got {self.cfg('layer')!r}.")
        if self.cfg("n_layers") < 0:
            raise ConfigError(f"DiffNet n_layers must be >= 0, got {self.cfg('n_layers')}.")
        super().build_blocks()
        d = self.cfg("embed_dim")
        self.diffusion_layers = (nn.ModuleList(nn.Linear(2 * d, d) for _ in range(self.cfg("n_layers")))
                                 if self.cfg("layer") == "diffusion" else None)

    def all_user_vectors(self) -> torch.Tensor:
        h0 = self.query_encoder.embedding.weight
        social = self.social_propagate(h0, self.diffusion_layers, self.cfg("n_layers"))
        return social + self.item_aggregate(self.item_encoder.weight)
