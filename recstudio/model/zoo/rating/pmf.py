"""PMF: probabilistic matrix factorisation for explicit ratings."""
from typing import Dict

import torch

from recstudio.model.base.itemtower import TwoTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("PMF", category="rating",
                paper="R. Salakhutdinov, A. Mnih. Probabilistic Matrix Factorization. NIPS 2007.")
class PMF(TwoTowerRecommender):
    """PMF (Salakhutdinov & Mnih, NIPS 2007): Gaussian ratings ``r_ui ~ N(u_u . v_i, sigma^2)`` with Gaussian
    priors on the factors; the MAP estimate minimises, per observed rating,

        ``(r_ui - u_u . v_i)^2 + lambda_u |u_u|^2 + lambda_v |v_i|^2``

    (the mean over the batch; ``lambda = sigma^2 / sigma_prior^2``). No biases and no global mean (that is
    :class:`MF` / ``BiasedMF``). Evaluated by rmse / mae, early-stopping on the validation rmse.

    Departures from the paper: mini-batch Adam instead of SGD with momentum; the penalty is applied to the
    factors of each batch row (the per-rating form of the paper's sums, as in its SGD); the logistic
    ``g(u . v)`` on ratings mapped to ``[0, 1]`` (the paper's bounded variant) is not used.

    Args (config keys): ``embed_dim``, ``lambda_u``, ``lambda_v``, ``init_std``; training keys
    ``learning_rate``; defaults in ``pmf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="PMF", dataset="ml-100k")     # doctest: +SKIP
        >>> metrics["rmse"]
    """

    eval_task = "rating"
    option_help = {"embed_dim": "number of latent factors d",
                   "loss": "training loss (mse: the Gaussian likelihood)",
                   "sampler": "negative sampler: none for rating prediction",
                   "num_neg": "negatives per rating: 0",
                   "score_func": "score function: inner_product (u_u . v_i)",
                   "lambda_u": "L2 penalty of the user factors (sigma^2 / sigma_U^2)",
                   "lambda_v": "L2 penalty of the item factors (sigma^2 / sigma_V^2)",
                   "init_std": "standard deviation of the factors' normal initialisation"}

    def _get_item_encoder(self):
        return IdEmbedding(self.meta.num_items, self.cfg("embed_dim"), init="normal", init_std=self.cfg("init_std"))

    def _get_query_encoder(self):
        from recstudio.model.base.itemtower import _UserIdQuery
        return _UserIdQuery(self.meta.uid_field, IdEmbedding(self.meta.num_users, self.cfg("embed_dim"),
                                                             init="normal", init_std=self.cfg("init_std")))

    def build_blocks(self) -> None:
        for key in ("lambda_u", "lambda_v"):
            if float(self.cfg(key)) < 0:
                raise ConfigError(f"PMF's {key} must be >= 0, got {self.cfg(key)}.")
        super().build_blocks()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        u = self.query_encoder(batch)
        v = self.item_encoder(batch[self.meta.iid_field])
        reg = float(self.cfg("lambda_u")) * u.pow(2).sum(-1) + float(self.cfg("lambda_v")) * v.pow(2).sum(-1)
        return loss + reg.mean()
