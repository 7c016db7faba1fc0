"""LightGCN: linear propagation of id embeddings over the normalised user-item graph, layers averaged."""
from torch import nn

from recstudio.model.family.graph import GraphRecommender
from recstudio.model.module.graph import spmm
from recstudio.model.registry import register_model


class LightGCNConv(nn.Module):
    """One LightGCN layer: ``E^(k+1) = L E^(k)`` (no weight, no non-linearity, no self-connection)."""

    def forward(self, adj, x):
        return spmm(adj, x)


@register_model("LightGCN", category="general",
                paper="X. He, K. Deng, X. Wang, Y. Li, Y. Zhang, M. Wang. LightGCN: Simplifying and Powering Graph "
                      "Convolution Network for Recommendation. SIGIR 2020.")
class LightGCN(GraphRecommender):
    """Id embeddings ``E^(0)`` of users and items propagated ``K`` times over the symmetric-normalised
    bipartite training graph, ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)``, and averaged, ``E = mean_k E^(k)``
    (alpha_k = 1 / (K + 1)); ``score(u, i) = e_u . e_i``; trained with BPR on uniformly drawn
    non-interacted items plus an L2 penalty on the batch's ego embeddings (He et al., SIGIR 2020).

    Defaults are RecBole's (1.2.1): embedding 64, 2 layers, reg_weight 1e-5, Adam 1e-3, batch 2048, one
    negative per positive. Departures from the paper, as in RecBole: Adam on mini-batches of 2048 (the paper
    also uses Adam, batch 1024 in its code), the ego embeddings of the *batch* are penalised (not the
    whole table; squared norms / 2 / B as the paper's code), and xavier-normal initialisation.

    Because the read-out is an inner product of vectors computed per user and per item, evaluation
    propagates once and ANN top-k works (``ann: hnsw``).

    Args (config keys): ``embed_dim``, ``n_layers``, ``reg_weight``, ``self_loops`` (default false: the
    paper's layer combination replaces self-connections), ``loss``, ``sampler``, ``num_neg``, ``score_func``;
    see ``lightgcn.yaml`` and ``run.py -m LightGCN --help``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="LightGCN", dataset="ml-100k", epochs=5)   # doctest: +SKIP
        >>> model.recommend(["196"], k=10)                                                  # doctest: +SKIP
    """

    layer_combine = "mean"

    def _get_layer(self, k, in_dim, out_dim):
        return LightGCNConv()
