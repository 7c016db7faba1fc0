"""FISM: factored item similarity, the user as the (normalised) sum of their items' vectors."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.data.types.base import csr_gather
from recstudio.model.base.itemtower import TOWER_HELP, ItemTowerRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


class FISMQuery(nn.Module):
    """``[n_u^-alpha Σ_{j in R_u} p_j ; b_u ; 1]`` from the user's training items ``R_u``.

    ``R_u`` is the training CSR of the model's context (non-persistent buffers, rebuilt from the
    checkpointed context). :meth:`assemble` builds the query from a given sum and count, so training
    can leave the target item out of its own user's sum.
    """

    def __init__(self, uid_field: str, indptr: torch.Tensor, indices: torch.Tensor, num_users: int,
                 num_items: int, dim: int, alpha: float):
        super().__init__()
        self.uid_field, self.alpha = uid_field, float(alpha)
        self.register_buffer("indptr", indptr.long().clone(), persistent=False)
        self.register_buffer("indices", indices.long().clone(), persistent=False)
        self.source = IdEmbedding(num_items, dim, init="normal", init_std=0.01)   # p_j
        self.user_bias = nn.Embedding(num_users, 1)
        nn.init.zeros_(self.user_bias.weight)

    def history_sum(self, users: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_{j in R_u} p_j [B, d], |R_u| [B])``."""
        ptr, idx = csr_gather(self.indptr, self.indices, users)
        total = F.embedding_bag(idx, self.source.embedding.weight, ptr, mode="sum", include_last_offset=True)
        return total, (ptr[1:] - ptr[:-1]).to(total.dtype)

    def assemble(self, total: torch.Tensor, count: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        coeff = count.clamp(min=1.0).pow(-self.alpha).unsqueeze(-1)
        bias = self.user_bias(users)
        return torch.cat([coeff * total, bias, torch.ones_like(bias)], dim=-1)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.uid_field]
        return self.assemble(*self.history_sum(users), users)


class FISMItems(nn.Module):
    """``[q_i ; 1 ; b_i]``: the target vector and the item bias (so an inner product with the
    query is ``n_u^-alpha Σ_j p_j . q_i + b_u + b_i`` exactly)."""

    def __init__(self, num_items: int, dim: int):
        super().__init__()
        self.target = IdEmbedding(num_items, dim, bias=True, init="normal", init_std=0.01)   # q_i, b_i

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b = self.target.get_bias(ids).unsqueeze(-1)
        return torch.cat([self.target(ids), torch.ones_like(b), b], dim=-1)


@register_model("FISM", category="general",
                paper="S. Kabbur, X. Ning, G. Karypis. FISM: Factored Item Similarity Models for Top-N "
                      "Recommender Systems. KDD 2013.")
class FISM(ItemTowerRecommender):
    """FISM (Kabbur et al., KDD 2013): item-item similarity factored as ``p_j . q_i``::

        score(u, i) = b_u + b_i + |R_u \\ {i}|^-alpha  Σ_{j in R_u \\ {i}} p_j . q_i

    with ``R_u`` the user's training items (``needs: train_graph``). As in the paper, a training
    positive ``i`` is left out of its own user's sum (otherwise the model learns ``p_i . q_i``, which
    ranking never uses: seen items are masked); ranked items are never in ``R_u``, so the query
    ``[|R_u|^-alpha Σ_j p_j ; b_u ; 1]`` and item vectors ``[q_i ; 1 ; b_i]`` give the score as an exact
    inner product (ANN works). Training: binary cross-entropy of each positive against ``num_neg``
    sampled unobserved items (the pointwise FISMrmse-style objective with sampled zeros, as in
    RecBole), plus ``reg_weight * (||P||_F + ||Q||_F)`` over the whole tables per batch (RecBole's form).

    Departures: RecBole 1.2.1 keeps the target in the sum and applies a sigmoid before its
    ``BCEWithLogitsLoss`` (a double sigmoid); here the paper's exclusion and a single sigmoid. Adam
    instead of the paper's SGD.

    Args (config keys): ``embed_dim``, ``alpha`` (the normalisation exponent), ``reg_weight``,
    ``loss``, ``sampler``, ``num_neg``; defaults in ``fism.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="FISM", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k != "score_func"},
        "embed_dim": "size of the item vectors p_j (history side) and q_i (target side)",
        "alpha": "exponent of the normalisation |R_u|^-alpha (0: plain sum, 1: mean; paper: 0.5 or so)",
        "reg_weight": "weight of the regulariser reg_weight * (||P||_F + ||Q||_F) added to every batch's loss",
    }

    def _get_query_encoder(self) -> nn.Module:
        m, c = self.meta, self.config
        if c["alpha"] < 0 or c["reg_weight"] < 0:
            raise ConfigError(f"FISM alpha and reg_weight must be >= 0, got {c['alpha']} and {c['reg_weight']}.")
        return FISMQuery(m.uid_field, m.train_indptr, m.train_indices, m.num_users, m.num_items,
                         c["embed_dim"], c["alpha"])

    def _get_item_encoder(self) -> nn.Module:
        return FISMItems(self.meta.num_items, self.cfg("embed_dim"))

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def regulariser(self) -> torch.Tensor:
        w = self.cfg("reg_weight")
        p = self.query_encoder.source.embedding.weight
        q = self.item_encoder.target.embedding.weight
        return w * (p.norm() + q.norm())

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users, pos = batch[self.meta.uid_field], batch[self.meta.iid_field]
        if "neg_item" not in batch:
            raise ConfigError("FISM trains against sampled negatives: keep sampler: masked_uniform and num_neg >= 1.")
        q = self.query_encoder
        total, count = q.history_sum(users)
        pos_query = q.assemble(total - q.source(pos), count - 1.0, users)  # the target left out of R_u
        pos_score = self.score_func(pos_query, self.encode_items(pos))
        neg = batch["neg_item"]
        neg_score = self.score_func(q.assemble(total, count, users), self.encode_items(neg))
        return self.loss_fn(pos_score=pos_score, neg_score=neg_score, neg_is_pos=neg == pos[:, None]) \
            + self.regulariser()
