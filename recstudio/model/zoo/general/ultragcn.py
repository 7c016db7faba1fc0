"""UltraGCN: matrix factorisation whose loss approximates infinite-layer graph convolution by constraints."""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def item_constraint_neighbours(train: sp.csr_matrix, k: int, chunk: int = 2048):
    """UltraGCN's item-item graph: ``G = R^T R``, ``omega_ij = G_ij sqrt(g_i + 1) / g_i / sqrt(g_j + 1)``
    (``g`` the row sums of ``G``; the diagonal kept, as the authors' code), each item's ``k`` largest:
    ``(neighbour ids [I, k], weights [I, k])`` (rows computed densely ``chunk`` at a time)."""
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    g = (r.T @ r).tocsr()
    deg = np.asarray(g.sum(1)).ravel()
    left = np.divide(np.sqrt(deg + 1), deg, out=np.zeros_like(deg), where=deg > 0)
    right = 1.0 / np.sqrt(deg + 1)
    w = (sp.diags(left) @ g @ sp.diags(right)).tocsr()
    n = w.shape[0]
    k = min(k, n)
    ids, sims = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for start in range(0, n, chunk):
        block = torch.as_tensor(w[start:start + chunk].toarray())
        vals, idx = torch.topk(block, k, dim=1)
        ids[start:start + chunk], sims[start:start + chunk] = idx.numpy(), vals.numpy()
    return torch.as_tensor(ids), torch.as_tensor(sims)


@register_model("UltraGCN", category="general",
                paper="K. Mao, J. Zhu, X. Xiao, B. Lu, Z. Wang, X. He. UltraGCN: Ultra Simplification of Graph "
                      "Convolutional Networks for Recommendation. CIKM 2021.")
class UltraGCN(TwoTowerRecommender):
    """No message passing: user and item embeddings, ``score = e_u . e_i``, trained with the loss that the
    limit of infinitely many graph-convolution layers implies (Mao et al., CIKM 2021):

    * ``L_C``: weighted binary cross-entropy on the positive and ``num_neg`` uniform negatives, weights
      ``w1 + w2 beta_u beta_i`` (positives) and ``w3 + w4 beta_u beta_j`` (negatives), with
      ``beta_u = sqrt(d_u + 1) / d_u``, ``beta_i = 1 / sqrt(d_i + 1)`` from the training degrees; the
      negatives' mean loss is multiplied by ``negative_weight``;
    * ``L_I``: for the positive item's ``ii_neighbor_num`` nearest items ``j`` on the item-item graph
      (``omega_ij`` of ``R^T R``, see :func:`item_constraint_neighbours`),
      ``-sum_j omega_ij log sigmoid(e_u . e_j)``;
    * ``L = L_C + lambda L_I + gamma |Theta|^2 / 2`` (every parameter), sums over the batch as the code.

    Defaults are the authors' MovieLens-1M configuration: embedding 64, w1 1e-7, w2 1, w3 1e-7, w4 1,
    200 negatives with negative_weight 200, gamma 1e-4, lambda 1e-3, 10 item neighbours, normal initialisation
    with std 1e-4, Adam 1e-3, batch 1024. Departures: negatives are drawn by the ``sampler`` key
    (``masked_uniform``: drawn by the dataset, never an item of the user's training history; the
    code draws from all items); derived from the two-tower base, not
    from ``GraphRecommender``, since nothing is propagated (the graph enters only through the weights).

    Args (config keys): ``embed_dim``, ``w1``..``w4``, ``negative_weight``, ``gamma``, ``lambda_i``,
    ``ii_neighbor_num``, ``init_std``, ``sampler``, ``num_neg``, ``score_func``; see ``ultragcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="UltraGCN", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {**TOWER_HELP,
                   "embed_dim": "size of the user / item embeddings",
                   "w1": "constant weight of the positive pairs in L_C",
                   "w2": "weight of beta_u beta_i in the positive pairs' weight",
                   "w3": "constant weight of the negative pairs in L_C",
                   "w4": "weight of beta_u beta_j in the negative pairs' weight",
                   "negative_weight": "multiplier of the negatives' (mean) loss in L_C",
                   "gamma": "weight of the L2 norm of every parameter",
                   "lambda_i": "weight of the item-item constraint loss L_I",
                   "ii_neighbor_num": "item neighbours per item in L_I",
                   "init_std": "standard deviation of the normal initialisation of the embeddings"}

    def build_blocks(self):
        for key in ("w1", "w2", "w3", "w4", "negative_weight", "gamma", "lambda_i"):
            if float(self.cfg(key)) < 0:
                raise ConfigError(f"UltraGCN {key} must be >= 0, got {self.cfg(key)}.")
        if int(self.cfg("ii_neighbor_num")) < 1:
            raise ConfigError(f"UltraGCN ii_neighbor_num must be >= 1, got {self.cfg('ii_neighbor_num')}.")
        if self.sparse_embeddings:
            raise ConfigError("UltraGCN penalises whole tables (dense gradients); use optimizer adam.")
        super().build_blocks()
        for table in (self.query_encoder.embedding.weight, self.item_encoder.weight):
            with torch.no_grad():
                nn.init.normal_(table, std=float(self.cfg("init_std")))
                table[0].zero_()
        train = self.meta.train_matrix()
        du, di = np.asarray(train.sum(1)).ravel(), np.asarray(train.sum(0)).ravel()
        beta_u = np.divide(np.sqrt(du + 1), du, out=np.zeros_like(du, dtype=np.float64), where=du > 0)
        self.register_buffer("beta_u", torch.as_tensor(beta_u, dtype=torch.float32), persistent=False)
        self.register_buffer("beta_i", torch.as_tensor(1.0 / np.sqrt(di + 1), dtype=torch.float32),
                             persistent=False)
        ids, sims = item_constraint_neighbours(train, int(self.cfg("ii_neighbor_num")))
        self.register_buffer("ii_ids", ids, persistent=False)
        self.register_buffer("ii_sims", sims, persistent=False)

    def _dataset_kwargs(self):
        kwargs = super()._dataset_kwargs()  # no loss key: the negatives are requested here
        if self.dataset_type == "triplet" and self.cfg("sampler") == "masked_uniform":
            kwargs.update(num_neg=int(self.cfg("num_neg", 1)), neg_sampling="uniform")
        return kwargs

    def training_loss(self, batch):
        users, pos = batch[self.meta.uid_field], batch[self.meta.iid_field]
        if "neg_item" in batch:
            neg = batch["neg_item"]
        elif self.sampler is not None:
            _, neg, _ = self.sampler(None, self.config.get("num_neg", 1), pos, None)
        else:
            raise ConfigError("UltraGCN needs negatives: set the sampler key.")
        neg = neg.reshape(pos.shape[0], -1)
        eu = self.query_encoder.embedding.weight[users]
        items = self.item_encoder.weight
        pos_score = (eu * items[pos]).sum(-1)
        neg_score = (eu[:, None, :] * items[neg]).sum(-1)
        w_pos = float(self.cfg("w1")) + float(self.cfg("w2")) * self.beta_u[users] * self.beta_i[pos]
        w_neg = float(self.cfg("w3")) + float(self.cfg("w4")) * self.beta_u[users, None] * self.beta_i[neg]
        pos_loss = F.binary_cross_entropy_with_logits(pos_score, torch.ones_like(pos_score), weight=w_pos,
                                                      reduction="none")
        neg_loss = F.binary_cross_entropy_with_logits(neg_score, torch.zeros_like(neg_score), weight=w_neg,
                                                      reduction="none").mean(-1)
        loss = (pos_loss + float(self.cfg("negative_weight")) * neg_loss).sum()
        lam = float(self.cfg("lambda_i"))
        if lam > 0:
            nbr_score = (eu[:, None, :] * items[self.ii_ids[pos]]).sum(-1)
            loss = loss - lam * (self.ii_sims[pos] * F.logsigmoid(nbr_score)).sum()
        gamma = float(self.cfg("gamma"))
        if gamma > 0:
            loss = loss + gamma * 0.5 * sum(p.pow(2).sum() for p in self.parameters() if p.requires_grad)
        return loss
