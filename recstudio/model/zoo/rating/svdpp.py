"""SVD++: biased matrix factorisation with the user's implicit feedback (the items they rated)."""
from typing import Dict

import torch
from torch import nn

from recstudio.data.types.base import csr_gather
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.zoo.rating.mf import MF


@register_model("SVDPP", category="rating", aliases=("SVD++",),
                paper="Y. Koren. Factorization Meets the Neighborhood: a Multifaceted Collaborative Filtering "
                      "Model. KDD 2008.")
class SVDPP(MF):
    """SVD++ (Koren, KDD 2008): the biased MF prediction with an implicit-feedback term,

        ``r(u, i) = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``

    where ``N(u)`` is the set of items ``u`` rated in the train split (``needs = {'train_graph'}``: the train
    CSR is held as non-persistent buffers, rebuilt from the saved context on load) and ``y_j`` a second item
    factor table. Squared error on observed ratings plus ``weight_decay`` * L2 of all parameters; evaluated
    by rmse / mae with early stopping on the validation rmse.

    Departures from the paper: mini-batch Adam instead of per-rating SGD, with one L2 weight (the
    optimizer's weight decay) for all parameters (the paper uses separate lambdas); ``N(u)`` holds the
    train ratings only (the paper also counts the items of the qualifying set whose ratings are hidden,
    which would leak the test items here).

    Args (config keys): ``embed_dim``, ``init_std``; training keys ``learning_rate``, ``weight_decay``;
    defaults in ``svdpp.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SVDPP", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {"embed_dim": "number of latent factors d",
                   "loss": "training loss (mse)",
                   "sampler": "negative sampler: none for rating prediction",
                   "num_neg": "negatives per rating: 0",
                   "score_func": "score function: inner_product",
                   "init_std": "standard deviation of the normal initialisation of every factor table"}

    def build_blocks(self) -> None:
        super().build_blocks()
        self.implicit = nn.EmbeddingBag(self.meta.num_items, self.cfg("embed_dim"), mode="sum", padding_idx=0)
        nn.init.normal_(self.implicit.weight, std=float(self.cfg("init_std")))
        with torch.no_grad():
            self.implicit.weight[0] = 0.0
        self.register_buffer("train_indptr", self.meta.train_indptr.long(), persistent=False)
        self.register_buffer("train_indices", self.meta.train_indices.long(), persistent=False)

    def _get_item_encoder(self):
        return IdEmbedding(self.meta.num_items, self.cfg("embed_dim"), bias=True, init="normal",
                           init_std=float(self.cfg("init_std")))

    def _get_query_encoder(self):
        return IdEmbedding(self.meta.num_users, self.cfg("embed_dim"), bias=True, init="normal",
                           init_std=float(self.cfg("init_std")))

    def implicit_term(self, users: torch.Tensor) -> torch.Tensor:
        """``|N(u)|^-1/2 sum_{j in N(u)} y_j`` ``[B, d]`` (zero for a user without train ratings)."""
        ptr, idx = csr_gather(self.train_indptr, self.train_indices, users.long())
        total = self.implicit(idx, ptr[:-1])
        counts = (ptr[1:] - ptr[:-1]).clamp(min=1).to(total.dtype)
        return total / counts.sqrt()[:, None]

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        p = self.query_encoder(users) + self.implicit_term(users)
        return torch.cat([p, torch.ones_like(p[..., :1])], -1)
