"""SoRec: the user factors are shared by the factorisation of the interactions and of the social network."""
from typing import Dict

import numpy as np
import torch

from recstudio.model.family.social import SOCIAL_HELP, SocialRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("SoRec", category="social",
                paper="H. Ma, H. Yang, M. R. Lyu, I. King. SoRec: Social Recommendation Using Probabilistic Matrix "
                      "Factorization. CIKM 2008.")
class SoRec(SocialRecommender):
    """Probabilistic matrix factorisation of the interactions and of the social network with a *shared*
    user factor ``U`` (Ma et al., CIKM 2008): ``score(u, i) = U_u . V_i`` and every social link ``u -> k``
    is reconstructed from ``U_u`` and a factor ``Z_k`` of the user as a *trustee*,

    ``L = ranking loss + lambda_C / B * sum_{u in batch} sum_{k in N(u)} (g(U_u . Z_k) - c*_uk)^2
    + reg_weight * (EmbLoss of the batch + ||Z_k||^2 of the links' trustees / B)``,

    ``g`` the logistic function and ``c*_uk = sqrt(d^-(k) / (d^+(u) + d^-(k)))`` the paper's normalised link
    weight (``d^+`` out-degree, ``d^-`` in-degree: trust in a popular trustee from a user who trusts few counts
    more). Only observed links enter the social term (the paper's indicator ``I^C``). A training batch uses
    the links of its distinct users.

    Departures from the paper: top-k ranking from implicit feedback with BPR (the paper fits ratings scaled to
    [0, 1] with ``g(U . V)``); mini-batch Adam instead of gradient descent on the full objective, the social
    term summed over the batch's distinct users' links and divided by the batch size; the priors on ``U, V,
    Z`` are ``reg_weight`` (RecBole's EmbLoss on the batch's ``U, V`` and the squared norm of the links'
    ``Z``). Defaults as our BPR (embedding 64, Adam 1e-3, batch 2048); ``social_weight`` (lambda_C) was picked
    on lastfm-2k's validation set (see ``sorec.yaml``); the network as directed (the paper's trust;
    ``social_symmetric: true`` reads every link both ways).

    Args (config keys): ``embed_dim``, ``social_weight``, ``social_symmetric``, ``reg_weight``, ``loss``,
    ``sampler``, ``num_neg``, ``score_func``; defaults in ``sorec.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SoRec", dataset="lastfm-2k")   # doctest: +SKIP
    """

    option_help = {**SOCIAL_HELP,
                   "social_weight": "lambda_C: weight of the squared error of the social links' reconstruction "
                                    "g(U_u . Z_k) ~ c*_uk (summed over the batch users' links, over the batch size)"}

    def build_blocks(self) -> None:
        if float(self.cfg("social_weight")) < 0:
            raise ConfigError(f"social_weight (lambda_C) must be >= 0, got {self.cfg('social_weight')}.")
        super().build_blocks()
        self.trustee_embedding = IdEmbedding(self.meta.num_users, int(self.cfg("embed_dim")), init="xavier")
        links = self.meta.social_matrix(symmetric=bool(self.cfg("social_symmetric"))).tocsr()
        links.sort_indices()
        out_deg = np.diff(links.indptr).astype(np.float64)
        in_deg = np.bincount(links.indices, minlength=links.shape[0]).astype(np.float64)
        rows = np.repeat(np.arange(links.shape[0]), np.diff(links.indptr))
        cols = links.indices
        target = np.sqrt(in_deg[cols] / np.maximum(out_deg[rows] + in_deg[cols], 1.0))
        self.register_buffer("link_indptr", torch.as_tensor(links.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("link_trustee", torch.as_tensor(cols.astype(np.int64)), persistent=False)
        self.register_buffer("link_target", torch.as_tensor(target.astype(np.float32)), persistent=False)

    def batch_links(self, users: torch.Tensor):
        """``(truster, trustee, c*)`` of every link of the distinct ``users``."""
        users = torch.unique(users.reshape(-1))
        start, end = self.link_indptr[users], self.link_indptr[users + 1]
        counts = end - start
        truster = torch.repeat_interleave(users, counts)
        first = torch.repeat_interleave(start - (torch.cumsum(counts, 0) - counts), counts)
        pos = first + torch.arange(int(counts.sum()), device=users.device)
        return truster, self.link_trustee[pos], self.link_target[pos]

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        truster, trustee, target = self.batch_links(users)
        u = self.query_encoder.embedding(truster)
        z = self.trustee_embedding(trustee)
        err = torch.sigmoid((u * z).sum(-1)) - target
        B = max(int(users.shape[0]), 1)
        loss = float(self.cfg("social_weight")) * (err ** 2).sum() / B
        reg = float(self.cfg("reg_weight", 0.0))
        if reg > 0:
            loss = loss + reg * (z ** 2).sum() / B
        return loss
