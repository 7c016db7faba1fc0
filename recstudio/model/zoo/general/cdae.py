"""CDAE: a denoising autoencoder of the user's item set with a per-user input node."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.model.zoo.general.multivae import DecoderOutputItems, MultiVAEQuery
from recstudio.utils.errors import ConfigError

HIDDEN_ACTIVATIONS = ("sigmoid", "relu", "tanh")
OUTPUT_ACTIVATIONS = ("sigmoid", "relu")
LOSS_TYPES = ("bce", "mse")


class CDAEQuery(nn.Module):
    """``h = act(W · dropout(x) + b + V_u)``; the query is ``[h ; 1]``.

    ``x`` is the raw multi-hot history (not normalised), corrupted by dropout (drop-out noise with
    the 1/(1-q) rescaling), ``V_u`` the user's own input node.
    """

    def __init__(self, num_items: int, num_users: int, uid_field: str, dim: int, corruption: float, activation: str):
        super().__init__()
        self.num_items, self.uid_field = num_items, uid_field
        self.dropout = nn.Dropout(corruption)
        self.item_in = nn.Linear(num_items, dim)
        self.user = nn.Embedding(num_users, dim)
        self.act = get_activation(activation)
        nn.init.xavier_normal_(self.item_in.weight)
        nn.init.zeros_(self.item_in.bias)
        nn.init.xavier_normal_(self.user.weight)

    input = MultiVAEQuery.input  # the multi-hot [B, num_items] from a dense or CSR history

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.act(self.item_in(self.dropout(self.input(batch))) + self.user(batch[self.uid_field]))
        return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)


@register_model("CDAE", category="general",
                paper="Y. Wu, C. DuBois, A. X. Zheng, M. Ester. Collaborative Denoising Auto-Encoders for Top-N "
                      "Recommender Systems. WSDM 2016.")
class CDAE(ItemTowerRecommender):
    """CDAE (Wu et al., WSDM 2016).

    A one-hidden-layer denoising autoencoder of the user's item set ``x`` with a user node::

        h = act_h(W · x~ + b + V_u),   y = W' h + b'   (x~: x with each entry dropped w.p. q, scaled 1/(1-q))

    trained on the reconstruction of the uncorrupted ``x`` over every item, summed over the batch
    (``loss_type: bce`` -- ``BCE(sigmoid(y), x)`` -- or ``mse`` -- ``(act_o(y) - x)^2``) plus
    ``reg_weight_1 · (|V|_1 + |W|_1) + reg_weight_2 · (||V||_F + ||W||_F)`` (RecBole's penalty: the norms
    themselves, not squared, on the user nodes and the input weights).

    Item tower: the output layer, item ``i`` is ``[W'_i ; b'_i]``, the query ``[h ; 1]``: items are
    ranked by the output logit ``y_i``. With ``out_activation: sigmoid`` (the default) that is the
    ranking of ``sigmoid(y)``; with ``relu`` the ranking by ``y`` also orders the items whose
    activation would be 0 (RecBole ranks ``relu(y)`` with ties among them). The padding column 0 is
    never a target.

    Departures from the paper: defaults of RecBole 1.2.1 (relu hidden layer, 64 units, corruption
    0.5, BCE, the non-squared L2 penalty 0.01) and Adam; the paper samples negative items for the
    loss, here (as in RecBole) every item counts. Users without any training item have no learned
    node (their ``V_u`` stays at its initialisation).

    Args (config keys): ``embed_dim``, ``corruption_ratio``, ``hid_activation``, ``out_activation``,
    ``loss_type``, ``reg_weight_1``, ``reg_weight_2``; defaults in ``cdae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="CDAE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "embed_dim": "hidden units (the size of the user node V_u); RecBole: 64",
        "corruption_ratio": "drop-out probability q of each input entry (RecBole: 0.5)",
        "hid_activation": "activation of the hidden layer: sigmoid, relu, tanh",
        "out_activation": "activation of the output for the mse loss: sigmoid, relu (bce uses the sigmoid)",
        "loss_type": "reconstruction loss over every item: bce or mse, summed over the batch",
        "reg_weight_1": "weight of the L1 norms |V_u|_1 + |W|_1",
        "reg_weight_2": "weight of the (non-squared) Frobenius norms ||V||_F + ||W||_F",
    }

    def _get_item_encoder(self) -> nn.Module:
        return DecoderOutputItems(self.meta.num_items, self.cfg("embed_dim"))

    def _get_query_encoder(self) -> nn.Module:
        c = self.config
        if not 0.0 <= c["corruption_ratio"] < 1.0:
            raise ConfigError(f"CDAE corruption_ratio must be in [0, 1), got {c['corruption_ratio']}.")
        for key, allowed in (("hid_activation", HIDDEN_ACTIVATIONS), ("out_activation", OUTPUT_ACTIVATIONS),
                             ("loss_type", LOSS_TYPES)):
            if str(c[key]).lower() not in allowed:
                raise ConfigError(f"CDAE {key} must be one of {allowed}, got {c[key]!r}.")
        if c["reg_weight_1"] < 0 or c["reg_weight_2"] < 0:
            raise ConfigError("CDAE reg_weight_1 and reg_weight_2 must be >= 0.")
        return CDAEQuery(self.meta.num_items, self.meta.num_users, self.meta.uid_field, c["embed_dim"],
                         c["corruption_ratio"], str(c["hid_activation"]).lower())

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def _get_loss_func(self):
        return None  # the reconstruction loss below

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        q = self.query_encoder
        x = q.input(batch)[:, 1:]
        y = self.score_func.score_all(q(batch), self.item_vectors())[:, 1:]
        if str(self.cfg("loss_type")).lower() == "bce":
            loss = F.binary_cross_entropy_with_logits(y, x, reduction="sum")
        else:
            act = torch.sigmoid if str(self.cfg("out_activation")).lower() == "sigmoid" else torch.relu
            loss = F.mse_loss(act(y), x, reduction="sum")
        w1, w2 = float(self.cfg("reg_weight_1")), float(self.cfg("reg_weight_2"))
        if w1:
            loss = loss + w1 * (q.user.weight.abs().sum() + q.item_in.weight.abs().sum())
        if w2:
            loss = loss + w2 * (q.user.weight.norm() + q.item_in.weight.norm())
        return loss
