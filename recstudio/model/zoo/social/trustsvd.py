"""TrustSVD: SVD++ whose user vector also adds the implicit influence of the users they trust."""
from typing import Dict

import numpy as np
import scipy.sparse as sp
import torch

from recstudio.model.family.social import SOCIAL_HELP, SocialRecommender, to_torch_sparse
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def sqrt_row_normalized(m: sp.spmatrix) -> sp.csr_matrix:
    """0/1 pattern of ``m`` with each row divided by the square root of its count (empty rows stay 0)."""
    m = (sp.csr_matrix(m) != 0).astype(np.float64).tocsr()
    counts = np.diff(m.indptr).astype(np.float64)
    inv = np.divide(1.0, np.sqrt(counts), out=np.zeros_like(counts), where=counts > 0)
    out = (sp.diags(inv) @ m).tocsr().astype(np.float32)
    out.sort_indices()
    return out


@register_model("TrustSVD", category="social",
                paper="G. Guo, J. Zhang, N. Yorke-Smith. TrustSVD: Collaborative Filtering with Both the Explicit "
                      "and Implicit Influence of User Trust and of Item Ratings. AAAI 2015.")
class TrustSVD(SocialRecommender):
    """SVD++ with trust (Guo et al., AAAI 2015). A user's vector adds to its own factor ``p_u`` the implicit
    feedback of its items ``y_i`` and of the users it trusts ``w_v``,

    ``u_hat = p_u + |I_u|^{-1/2} sum_{i in I_u} y_i + |T_u|^{-1/2} sum_{v in T_u} w_v``,
    ``score(u, j) = u_hat . q_j``,

    and the trust values are factorised with the same user factor: the links of the batch's distinct users
    add ``social_weight / B * sum_{v in T_u} (w_v . p_u - 1)^2`` (observed links only, trust value 1). ``I_u``
    are the user's *training* items. The implicit sums of every user are two sparse products, computed once
    per training step (and cached in evaluation).

    Departures from the paper: top-k ranking from implicit feedback with BPR (the paper predicts ratings with
    user / item biases and a global mean, dropped here: they do not change a user's ranking besides the item
    bias); mini-batch Adam; the paper's count-weighted L2 priors replaced by ``reg_weight`` (RecBole's
    EmbLoss on the batch's ``p_u, q_i, q_j``) plus ``reg_weight`` times the squared norm of the links' ``w_v``
    over the batch size. Defaults as our BPR (embedding 64, Adam 1e-3, batch 2048); ``social_weight``
    (lambda_t) picked on lastfm-2k's validation set (``trustsvd.yaml``); the network as directed (trust).

    Args (config keys): ``embed_dim``, ``social_weight``, ``social_symmetric``, ``reg_weight``, ``loss``,
    ``sampler``, ``num_neg``, ``score_func``; defaults in ``trustsvd.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="TrustSVD", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    option_help = {**SOCIAL_HELP,
                   "social_weight": "lambda_t: weight of the squared error (w_v . p_u - 1)^2 of the batch users' "
                                    "trust links (over the batch size)"}

    def build_blocks(self) -> None:
        if float(self.cfg("social_weight")) < 0:
            raise ConfigError(f"social_weight (lambda_t) must be >= 0, got {self.cfg('social_weight')}.")
        super().build_blocks()
        d = int(self.cfg("embed_dim"))
        self.implicit_item = IdEmbedding(self.meta.num_items, d, init="xavier")   # y_i
        self.implicit_trust = IdEmbedding(self.meta.num_users, d, init="xavier")  # w_v
        links = self.meta.social_matrix(symmetric=bool(self.cfg("social_symmetric"))).tocsr()
        links.sort_indices()
        self.register_buffer("items_half", to_torch_sparse(sqrt_row_normalized(self.meta.train_matrix())),
                             persistent=False)
        self.register_buffer("trust_half", to_torch_sparse(sqrt_row_normalized(links)), persistent=False)
        self.register_buffer("link_indptr", torch.as_tensor(links.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("link_trustee", torch.as_tensor(links.indices.astype(np.int64)), persistent=False)

    def all_user_vectors(self) -> torch.Tensor:
        own = self.query_encoder.embedding.weight
        return (own + torch.sparse.mm(self.items_half, self.implicit_item.weight)
                + torch.sparse.mm(self.trust_half, self.implicit_trust.weight))

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        distinct = torch.unique(users)
        start, end = self.link_indptr[distinct], self.link_indptr[distinct + 1]
        counts = end - start
        truster = torch.repeat_interleave(distinct, counts)
        first = torch.repeat_interleave(start - (torch.cumsum(counts, 0) - counts), counts)
        trustee = self.link_trustee[first + torch.arange(int(counts.sum()), device=users.device)]
        p = self.query_encoder.embedding(truster)
        w = self.implicit_trust(trustee)
        B = max(int(users.shape[0]), 1)
        loss = float(self.cfg("social_weight")) * (((p * w).sum(-1) - 1.0) ** 2).sum() / B
        reg = float(self.cfg("reg_weight", 0.0))
        if reg > 0:
            loss = loss + reg * (w ** 2).sum() / B
        return loss
