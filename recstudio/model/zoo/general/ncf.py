"""NCF / NeuMF: a GMF branch and an MLP branch over separate embeddings, fused by a linear layer."""
from typing import Dict

import torch

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.neural import NeuMFScorer


@register_model("NCF", category="general",
                paper="X. He, L. Liao, H. Zhang, L. Nie, X. Hu, T.-S. Chua. Neural Collaborative Filtering. "
                      "WWW 2017.", aliases=("NeuMF",))
class NCF(TowerFreeRecommender):
    """NeuMF (He et al., WWW 2017): ``y(u, i) = sigma(h^T [p_u^G * q_i^G ; MLP([p_u^M ; q_i^M])])``.

    GMF and MLP have separate user and item embeddings (``gmf_dim`` and ``mlp_dim`` each), the MLP
    tower halves its width layer by layer (``mlp_hidden``), and training minimises the pointwise
    log loss (binary cross-entropy) of each observed interaction against ``num_neg`` sampled
    unobserved items (4 in the paper), drawn afresh each epoch from the user's non-interacted items.

    Scoring is not decomposable (the MLP sees user and item together), so this is a TowerFree model:
    full ranking scores every item in chunks and ANN retrieval is refused.

    Departures from the paper: no pre-training of GMF and MLP before fusing (the paper reports a
    small gain from it), Adam throughout, and dropout on the MLP tower (0 by default).

    Args (config keys): ``gmf_dim``, ``mlp_dim``, ``mlp_hidden``, ``dropout``, ``num_neg``, ``loss``,
    ``sampler``; defaults in ``ncf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NCF", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **TowerFreeRecommender.option_help,
        "gmf_dim": "size of the GMF branch's user and item embeddings",
        "mlp_dim": "size of the MLP branch's user and item embeddings",
        "mlp_hidden": "hidden layer sizes of the MLP tower (its input is 2 * mlp_dim)",
        "dropout": "dropout in the MLP tower",
    }

    def build_blocks(self) -> None:
        m, c = self.meta, self.config
        width = c["gmf_dim"] + c["mlp_dim"]
        # one table per side holds [gmf | mlp] embeddings; the fusion scorer splits them
        self.user_embedding = IdEmbedding(m.num_users, width, init="normal")
        self.item_embedding = IdEmbedding(m.num_items, width, init="normal")
        self.fusion = NeuMFScorer(width, hidden=c["mlp_hidden"], dropout=c["dropout"], gmf_dim=c["gmf_dim"])

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        user = self.user_embedding(batch[self.meta.uid_field])
        return self.fusion(user, self.item_embedding(items))  # items [B] -> [B]; [B, K] -> [B, K]
