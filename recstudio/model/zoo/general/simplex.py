"""SimpleX: cosine contrastive loss over many negatives, the user mixed with their mean history item."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.data.types.base import csr_gather
from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.loss.ccl import CCLLoss
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import CosineScorer
from recstudio.utils.errors import ConfigError


class SimpleXQuery(nn.Module):
    """``dropout(g e_u + (1 - g) V mean_{j in R_u} e_j)``: the user id's vector fused with the mapped mean
    of their training items' vectors (the item tower's table, shared). ``R_u`` comes from the training
    CSR of the context (non-persistent buffers)."""

    def __init__(self, uid_field: str, indptr: torch.Tensor, indices: torch.Tensor, num_users: int,
                 items: IdEmbedding, dim: int, gamma: float, dropout: float):
        super().__init__()
        self.uid_field, self.gamma = uid_field, float(gamma)
        self.register_buffer("indptr", indptr.long().clone(), persistent=False)
        self.register_buffer("indices", indices.long().clone(), persistent=False)
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.__dict__["items"] = items  # shared with the item tower, registered there only
        self.mapping = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_normal_(self.mapping.weight)
        self.dropout = nn.Dropout(dropout)

    def history(self, users: torch.Tensor):
        return csr_gather(self.indptr, self.indices, users)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.uid_field]
        ptr, idx = self.history(users)
        mean = F.embedding_bag(idx, self.items.embedding.weight, ptr, mode="mean", include_last_offset=True)
        g = self.gamma
        return self.dropout(g * self.user(users) + (1.0 - g) * self.mapping(mean))


@register_model("SimpleX", category="general",
                paper="K. Mao, J. Zhu, J. Wang, Q. Dai, Z. Dong, X. Xiao, X. He. SimpleX: A Simple and Strong "
                      "Baseline for Collaborative Filtering. CIKM 2021.")
class SimpleX(TwoTowerRecommender):
    """SimpleX (Mao et al., CIKM 2021): a two-tower MF whose user vector fuses the id embedding with the
    mean of the user's (training) item embeddings through a linear map ``V``::

        u = dropout(g e_u + (1 - g) V mean_{j in R_u} e_j),      score(u, i) = cos(u, e_i)

    trained with the cosine contrastive loss over ``num_neg`` sampled negatives per positive::

        L = max(0, 1 - cos(u, e_i)) + w/K Σ_k max(0, cos(u, e_k) - margin)

    (``CCLLoss`` with ``margin`` and ``negative_weight`` = ``w``), plus
    ``reg_weight * (||E_u|| + ||E_i|| + ||E_hist|| + ||E_neg||) / B`` over the batch's embeddings
    (RecBole's EmbLoss). ``R_u`` is the user's training items (``needs: train_graph``), the same at
    evaluation; the cosine is decomposable (ANN works). Many negatives are the point of the paper: the
    default is 100 per positive (RecBole's generic default is 1).

    Departures: the mean aggregator only (the paper's and RecBole's default; the attention aggregators
    are not offered), over all of the user's training items (RecBole caps the history at 50 items);
    Adam.

    Args (config keys): ``embed_dim``, ``gamma``, ``margin``, ``negative_weight``, ``dropout``,
    ``reg_weight``, ``sampler``, ``num_neg``; defaults in ``simplex.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SimpleX", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k not in ("score_func", "loss")},
        "gamma": "weight g of the user id's vector against the mapped mean of their items' vectors",
        "margin": "cosine similarity above which a negative is penalised",
        "negative_weight": "weight w of the (mean) negative term of the cosine contrastive loss",
        "dropout": "dropout on the fused user vector",
        "reg_weight": "weight of the embedding-norm regulariser (divided by the batch size)",
    }

    def _get_loss_func(self):
        c = self.config
        if not -1.0 <= c["margin"] <= 1.0 or c["negative_weight"] < 0:
            raise ConfigError(f"SimpleX margin must be in [-1, 1] and negative_weight >= 0; got {c['margin']} and "
                              f"{c['negative_weight']}.")
        return CCLLoss(margin=c["margin"], neg_weight=c["negative_weight"])

    def loss_needs(self, flag: str) -> bool:
        return flag == "needs_negatives"

    def _get_query_encoder(self) -> nn.Module:
        m, c = self.meta, self.config
        if not 0.0 <= c["gamma"] <= 1.0 or not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"SimpleX needs 0 <= gamma <= 1 and 0 <= dropout < 1; got {c['gamma']}, {c['dropout']}.")
        return SimpleXQuery(m.uid_field, m.train_indptr, m.train_indices, m.num_users, self.item_encoder,
                            c["embed_dim"], c["gamma"], c["dropout"])

    def _get_score_func(self) -> nn.Module:
        return CosineScorer()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        q = self.query_encoder
        users = batch[self.meta.uid_field]
        _, hist = q.history(users)
        tensors = [q.user(users), self.encode_items(batch[self.meta.iid_field]), self.encode_items(hist)]
        if "neg_item" in batch:
            tensors.append(self.encode_items(batch["neg_item"]))
        return loss + self.cfg("reg_weight") * sum(t.norm() for t in tensors) / len(users)
