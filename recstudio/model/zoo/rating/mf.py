"""Biased matrix factorisation for explicit ratings, trained with squared error."""
from typing import Dict, Tuple

import torch

from recstudio.model.base.itemtower import TwoTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model


@register_model("MF", category="rating", aliases=("MF-MSE", "BiasedMF"),
                paper="Y. Koren, R. Bell, C. Volinsky. Matrix Factorization Techniques for Recommender "
                      "Systems. IEEE Computer 42(8), 2009.")
class MF(TwoTowerRecommender):
    """Rating prediction ``r(u, i) = mu + b_u + b_i + p_u . q_i`` (Koren et al., 2009), fitted by
    minimising the squared error on observed ratings plus ``weight_decay`` * L2 of all parameters.

    ``mu`` is the mean train rating. Evaluation reports rmse and mae on the valid / test ratings
    and early-stops on the validation rmse. ``recommend`` ranks by predicted rating (``mu + b_u``
    is constant per user, so the ranking is ``b_i + p_u . q_i``).

    Departures from the paper: mini-batch Adam instead of per-rating SGD, and the L2 penalty is
    the optimizer's weight decay applied to every parameter (the paper's lambda on factors and
    biases).

    Args (config keys): ``embed_dim``; training keys ``learning_rate``, ``weight_decay``; defaults
    in ``mf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="MF", dataset="ml-100k")     # doctest: +SKIP
        >>> metrics["rmse"]
    """

    eval_task = "rating"

    def _get_item_encoder(self):
        return IdEmbedding(self.meta.num_items, self.cfg("embed_dim"), bias=True, init="normal", init_std=0.01)

    def _get_query_encoder(self):
        return IdEmbedding(self.meta.num_users, self.cfg("embed_dim"), bias=True, init="normal", init_std=0.01)

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``[p_u, 1]``: with item vectors ``[q_i, b_i]`` the inner product is ``p_u . q_i + b_i``."""
        p = self.query_encoder(batch[self.meta.uid_field])
        return torch.cat([p, torch.ones_like(p[..., :1])], -1)

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item_encoder(ids), self.item_encoder.get_bias(ids)[..., None]], -1)

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        users = batch[self.meta.uid_field]
        return self.encode_query(batch), self.meta.rating_mean + self.query_encoder.get_bias(users)

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        query, offset = state
        return (offset[:, None] if items.dim() == 2 else offset) + self.score_func(query, self.encode_items(items))

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        query, offset = state
        return offset[:, None] + self.score_func.score_all(query, self.item_vectors())
