"""DSSM: a user tower and an item tower over id and feature embeddings, cosine, softmax over negatives."""
import torch
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.loss import build_loss
from recstudio.model.module.features import FeatureEncoder
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import CosineScorer
from recstudio.utils.errors import ConfigError


class FeatureTower(nn.Module):
    """``MLP(concat of the field embeddings)`` of an id and its feature fields (from the model's
    :class:`FeatureStore`, gathered by id), ``[*] ids -> [*, out]``."""

    def __init__(self, id_field: str, num_ids: int, specs, store, field_dim: int, hidden, dropout: float,
                 use_id: bool, id_key: str = None):
        super().__init__()
        fields = {n: (s.type, s.size) for n, s in specs.items()}
        if use_id:
            fields = {id_field: ("token", num_ids), **fields}
        if not fields:
            raise ConfigError(f"DSSM: the {id_field} tower has no input: the data has no feature fields for it "
                              "and use_ids is false.")
        self.id_field, self.use_id, self.id_key = id_field, use_id, id_key
        self.__dict__["store"] = store   # a buffer holder registered on the model
        self.encoder = FeatureEncoder(fields, field_dim, combine="concat")
        self.mlp = MLP([field_dim, *hidden], activation="tanh", dropout=dropout, last_activation=True)

    def forward(self, x) -> torch.Tensor:
        ids = x[self.id_key] if isinstance(x, dict) else x
        inputs = dict(self.store(ids))
        if self.use_id:
            inputs[self.id_field] = ids
        return self.mlp(self.encoder(inputs))


@register_model("DSSM", category="general",
                paper="P.-S. Huang, X. He, J. Gao, L. Deng, A. Acero, L. Heck. Learning Deep Structured Semantic "
                      "Models for Web Search using Clickthrough Data. CIKM 2013.")
class DSSM(TwoTowerRecommender):
    """DSSM as a two-tower recommender (Huang et al., CIKM 2013, with users as queries and items as
    documents): each side embeds its id (``use_ids``) and every feature field of its table (token,
    token_seq as the mean of its tokens, float, float_seq; ``needs: user_features, item_features``),
    concatenates them and projects them (``FeatureEncoder(combine='concat')``, ``field_dim``) before a
    tanh MLP (``hidden``); the relevance is the cosine, and training maximises the paper's posterior
    of the clicked document against ``num_neg`` sampled unclicked ones::

        P(i | u) = exp(gamma cos(u, i)) / Σ_{i' in {i} ∪ negatives} exp(gamma cos(u, i'))

    (``InfoNCELoss`` with temperature ``1 / gamma``). The cosine is decomposable (ANN works); items are
    encoded from their features, so items with few interactions still get informative vectors.

    Departures: the paper's letter-trigram word hashing of query / document text is replaced by the
    dataset's feature fields (the features are the model's input here); Adam instead of SGD.

    Args (config keys): ``field_dim``, ``hidden`` (its last size is the vector size), ``dropout``,
    ``use_ids``, ``gamma``, ``sampler``, ``num_neg``; defaults in ``dssm.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DSSM", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"user_features", "item_features"})
    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k not in ("score_func", "loss", "embed_dim")},
        "field_dim": "size of each field's embedding and of the projection of their concatenation",
        "hidden": "sizes of the tanh MLP after the projection; the last is the vector size",
        "dropout": "dropout between the MLP's layers",
        "use_ids": "also embed the user / item id (false: features only, e.g. for cold items)",
        "gamma": "smoothing factor of the softmax over cosines (temperature 1 / gamma)",
    }

    def _check(self):
        c = self.config
        if not c["hidden"] or c["gamma"] <= 0 or not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError("DSSM needs a non-empty hidden list, gamma > 0 and 0 <= dropout < 1; got "
                              f"{c['hidden']}, {c['gamma']}, {c['dropout']}.")

    def _get_loss_func(self):
        self._check()
        return build_loss("infonce", temperature=1.0 / self.cfg("gamma"))

    def loss_needs(self, flag: str) -> bool:
        return flag == "needs_negatives"

    def _tower(self, owner: str) -> nn.Module:
        m, c = self.meta, self.config
        if owner == "user":
            return FeatureTower(m.uid_field, m.num_users, m.user_fields, self.user_feats, c["field_dim"],
                                c["hidden"], c["dropout"], c["use_ids"], id_key=m.uid_field)
        return FeatureTower(m.iid_field, m.num_items, m.item_fields, self.item_feats, c["field_dim"],
                            c["hidden"], c["dropout"], c["use_ids"])

    def _get_query_encoder(self) -> nn.Module:
        return self._tower("user")

    def _get_item_encoder(self) -> nn.Module:
        return self._tower("item")

    def _get_score_func(self) -> nn.Module:
        return CosineScorer()
