"""LINE: first- and second-order proximity embeddings of the user-item graph, trained by negative sampling."""
import numpy as np
import torch
import torch.nn.functional as F

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("LINE", category="general",
                paper="J. Tang, M. Qu, M. Wang, J. Yan, Q. Mei. LINE: Large-scale Information Network Embedding. "
                      "WWW 2015.")
class LINE(TwoTowerRecommender):
    """Graph embedding of the bipartite user-item graph (Tang et al., WWW 2015), as RecBole adapts it to
    recommendation: ``score(u, i) = e_u . e_i`` (first-order proximity) and, with ``order`` 2, context tables
    ``c`` learning second-order proximity. Each training edge ``(u, i)`` gets a negative on either side:

    * user side: a negative item ``j``: ``-log s(e_u.e_i) - log s(-e_u.e_j)`` plus, for order 2,
      ``w (-log s(e_u.c_i) - log s(-e_u.c_j))``;
    * item side: a negative user ``v`` (one that never interacted with ``i``): ``-log s(e_u.e_i) -
      log s(-e_v.e_i)`` plus ``w (-log s(e_i.c_u) - log s(-e_i.c_v))``,

    with ``s`` the sigmoid, ``w`` = ``second_order_loss_weight``, means over the batch.

    Defaults are RecBole 1.2.1's: embedding 64, order 2, second_order_loss_weight 1, xavier-normal
    initialisation, Adam 1e-3, batch 2048. Departure: RecBole flips a coin per batch between the user side
    and the item side; here every batch takes both halves with weight 1/2 (the same expected loss, less
    variance, and every table gets a gradient at every step).

    Args (config keys): ``embed_dim``, ``order``, ``second_order_loss_weight``, ``sampler``, ``num_neg``,
    ``score_func``; see ``line.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="LINE", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {**TOWER_HELP,
                   "embed_dim": "size of the user / item (and context) embeddings",
                   "order": "1: first-order proximity only; 2: also the second-order (context) loss",
                   "second_order_loss_weight": "weight of the second-order loss"}

    def build_blocks(self):
        if int(self.cfg("order")) not in (1, 2):
            raise ConfigError(f"LINE order must be 1 or 2, got {self.cfg('order')}.")
        if float(self.cfg("second_order_loss_weight")) < 0:
            raise ConfigError("LINE second_order_loss_weight must be >= 0, got "
                              f"{self.cfg('second_order_loss_weight')}.")
        super().build_blocks()
        dim = int(self.cfg("embed_dim"))
        if int(self.cfg("order")) == 2:
            self.user_context = IdEmbedding(self.meta.num_users, dim, init="xavier", sparse=self.sparse_embeddings)
            self.item_context = IdEmbedding(self.meta.num_items, dim, init="xavier", sparse=self.sparse_embeddings)
        train = self.meta.train_matrix().tocoo()
        keys = np.sort(train.col.astype(np.int64) * self.meta.num_users + train.row.astype(np.int64))
        self.register_buffer("_edge_keys", torch.as_tensor(keys), persistent=False)  # item * U + user

    def _dataset_kwargs(self):
        kwargs = super()._dataset_kwargs()  # no loss key: the negative items are requested here
        if self.dataset_type == "triplet" and self.cfg("sampler") == "masked_uniform":
            kwargs.update(num_neg=1, neg_sampling="uniform")
        return kwargs

    def negative_users(self, items: torch.Tensor, tries: int = 20) -> torch.Tensor:
        """For each item a uniform user id (``1..U-1``) that has no training edge to it (rejection sampling)."""
        n = self.meta.num_users
        users = torch.randint(1, n, items.shape, device=items.device)
        for _ in range(tries):
            key = items * n + users
            pos = torch.searchsorted(self._edge_keys, key).clamp(max=self._edge_keys.numel() - 1)
            bad = self._edge_keys[pos] == key
            if not bad.any():
                break
            users = torch.where(bad, torch.randint(1, n, items.shape, device=items.device), users)
        return users

    def training_loss(self, batch):
        users, pos = batch[self.meta.uid_field], batch[self.meta.iid_field]
        if "neg_item" in batch:
            neg = batch["neg_item"].reshape(pos.shape[0], -1)[:, 0]
        elif self.sampler is not None:
            neg = self.sampler(None, 1, pos, None)[1].reshape(pos.shape[0], -1)[:, 0]
        else:
            raise ConfigError("LINE needs negative items: set the sampler key.")
        neg_users = self.negative_users(pos)
        eu, ev = self.query_encoder.embedding(users), self.query_encoder.embedding(neg_users)
        ei, ej = self.item_encoder(pos), self.item_encoder(neg)

        def nll(score, sign=1.0):
            return -F.logsigmoid(sign * score).mean()

        pos_score = (eu * ei).sum(-1)
        user_side = nll(pos_score) + nll((eu * ej).sum(-1), -1.0)
        item_side = nll(pos_score) + nll((ev * ei).sum(-1), -1.0)
        if int(self.cfg("order")) == 2:
            w = float(self.cfg("second_order_loss_weight"))
            ci, cj = self.item_context(pos), self.item_context(neg)
            cu, cv = self.user_context(users), self.user_context(neg_users)
            user_side = user_side + w * (nll((eu * ci).sum(-1)) + nll((eu * cj).sum(-1), -1.0))
            item_side = item_side + w * (nll((ei * cu).sum(-1)) + nll((ei * cv).sum(-1), -1.0))
        return 0.5 * (user_side + item_side)
