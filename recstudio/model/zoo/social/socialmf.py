"""SocialMF: matrix factorisation whose user factors are pulled towards their trusted users' factors."""
from typing import Dict

import torch

from recstudio.model.family.social import SOCIAL_HELP, SocialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("SocialMF", category="social",
                paper="M. Jamali, M. Ester. A Matrix Factorization Technique with Trust Propagation for "
                      "Recommendation in Social Networks. RecSys 2010.")
class SocialMF(SocialRecommender):
    """Matrix factorisation ``score(u, i) = U_u . V_i`` with SocialMF's trust-propagation term
    (Jamali & Ester, RecSys 2010): each user's factor should be close to the trust-weighted average
    of the factors of the users they trust,

    ``L = ranking loss + lambda_T / B * sum_{u in batch} ||U_u - sum_v T_uv U_v||^2
    (+ reg_weight * EmbLoss)``,

    with ``T_uv = 1 / |N(u)|`` (row-normalised trust, :mod:`recstudio.model.family.social`). The term
    propagates trust transitively (a friend's factor is itself pulled towards *its* friends), so users
    with few ratings inherit their network's taste.

    Departures from the paper:

    - **Task**: the paper predicts ratings (Gaussian likelihood on ``g(U_u . V_i)`` with a logistic ``g``);
      here the default is top-k ranking from implicit feedback with the BPR loss (any ranking loss of
      the ``loss`` key works). Rating prediction with MSE is not offered (use MF for ratings): the
      model's evaluation is full ranking.
    - Mini-batch Adam instead of full gradient descent; the trust term is summed over the distinct
      users of each batch and divided by the batch size ``B`` (so ``social_weight`` does not depend on
      the batch size); the Gaussian priors ``lambda_U, lambda_V`` are ``reg_weight`` (RecBole's EmbLoss on
      the batch's embeddings) or the optimizer's ``weight_decay``.
    - Users who trust nobody are left out of the trust term (in the paper their ``sum_v T_uv U_v`` is
      zero, which would be an extra L2 penalty on them).
    - The network is read as directed (``social_symmetric: false``: ``N(u)`` = users ``u`` trusts), as in
      the paper; ``true`` symmetrises it.

    Args (config keys): ``embed_dim``, ``social_weight`` (lambda_T), ``social_symmetric``, ``reg_weight``,
    ``loss``, ``sampler``, ``num_neg``, ``score_func``; defaults in ``socialmf.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SocialMF", dataset="lastfm-2k")   # doctest: +SKIP
    """

    option_help = {**SOCIAL_HELP,
                   "social_weight": "lambda_T: weight of the trust term sum_u ||U_u - sum_v T_uv U_v||^2 "
                                    "(summed over the batch's distinct users, divided by the batch size)"}

    def build_blocks(self) -> None:
        if self.cfg("social_weight") < 0:
            raise ConfigError(f"social_weight (lambda_T) must be >= 0, got {self.cfg('social_weight')}.")
        super().build_blocks()

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        term = self.social_regularizer(self.query_encoder.embedding.weight, users)
        return float(self.cfg("social_weight")) * term / max(int(users.shape[0]), 1)
