"""Logistic matrix factorisation: a logistic likelihood of every (user, item) cell, confidence-weighted."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, ItemTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


class _BiasedVectors(nn.Module):
    """Query side ``[x ; b ; 1]`` or item side ``[y ; 1 ; b]`` of an id table with a bias, so the inner
    product of the two is ``x_u . y_i + b_u + b_i`` exactly."""

    def __init__(self, num: int, dim: int, side: str, id_key: str = None):
        super().__init__()
        self.table, self.side, self.id_key = IdEmbedding(num, dim, bias=True, init="normal"), side, id_key

    def forward(self, x) -> torch.Tensor:
        ids = x[self.id_key] if isinstance(x, dict) else x
        b = self.table.get_bias(ids).unsqueeze(-1)
        one = torch.ones_like(b)
        return torch.cat([self.table(ids), b, one] if self.side == "query" else [self.table(ids), one, b], dim=-1)


@register_model("LogisticMF", category="general",
                paper="C. C. Johnson. Logistic Matrix Factorization for Implicit Feedback Data. NIPS 2014 "
                      "Workshop on Distributed Machine Learning and Matrix Computations.")
class LogisticMF(ItemTowerRecommender):
    """Logistic MF (Johnson, 2014): the probability that user ``u`` prefers item ``i`` is
    ``p(l_ui | x_u, y_i, b) = sigma(x_u . y_i + b_u + b_i)``, and each observed cell counts
    ``c_ui = alpha r_ui`` times as a positive. The negative log-likelihood over *every* cell of the
    batch's users (no sampling)::

        L = mean_{u in B} Σ_i [ (1 + c_ui) log(1 + exp(s_ui)) - c_ui s_ui ]

    with ``r_ui`` the user's training row (1 for an interaction; the ``value`` field when set, e.g. play
    counts). One training example is a user (``dataset_type: user``, dense rows ``[B, num_items]``); the
    paper's Gaussian priors ``lambda/2 ||x||^2`` are the optimizer's ``weight_decay``. The score is an
    exact inner product of ``[x_u ; b_u ; 1]`` and ``[y_i ; 1 ; b_i]`` (ANN works).

    Departures: Adam over mini-batches of users instead of the paper's alternating full-gradient
    AdaGrad ascent; the paper's optional log-scaled confidence is not offered (``c = alpha r``).

    Args (config keys): ``embed_dim``, ``alpha``, ``value``; defaults in ``logisticmf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="LogisticMF", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k not in ("score_func", "loss", "sampler", "num_neg",
                                                            "sampler_alpha")},
        "alpha": "confidence scale: an observed cell weighs c = alpha * r as a positive",
        "value": "float interaction field giving r (e.g. a play count); null: r = 1 per interaction",
    }

    def _dataset_kwargs(self):
        return {"value": self.cfg("value")}

    def _get_loss_func(self):
        if self.cfg("alpha") <= 0:
            raise ConfigError(f"LogisticMF alpha must be > 0, got {self.cfg('alpha')}.")
        return None  # the likelihood below

    def _get_query_encoder(self) -> nn.Module:
        return _BiasedVectors(self.meta.num_users, self.cfg("embed_dim"), "query", self.meta.uid_field)

    def _get_item_encoder(self) -> nn.Module:
        return _BiasedVectors(self.meta.num_items, self.cfg("embed_dim"), "item")

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        scores = self.score_all_candidates(batch, self.prepare_scoring(batch))[:, 1:]   # column 0 is padding
        c = self.cfg("alpha") * batch["history"][:, 1:]
        return ((1.0 + c) * F.softplus(scores) - c * scores).sum(-1).mean()
