"""SpectralCF: spectral graph convolution (first-order polynomial filter) with a weight and sigmoid per layer."""
import numpy as np
import torch
from torch import nn

from recstudio.model.family.graph import GRAPH_HELP, GraphRecommender
from recstudio.model.module.graph import bipartite_matrix, spmm
from recstudio.model.registry import register_model


class SpectralConv(nn.Module):
    """``E' = sigmoid((I + L_rw) E W)`` with the random-walk Laplacian ``L_rw = I - D^-1 A``, computed from the
    symmetric ``D^-1/2 A D^-1/2`` as ``2 E - D^-1/2 (D^-1/2 A D^-1/2) D^1/2 E``."""

    def __init__(self, dim_in: int, dim_out: int, inv_sqrt: torch.Tensor, sqrt: torch.Tensor):
        super().__init__()
        # RecBole's init of the filters: N(0.01, 0.02^2)
        self.weight = nn.Parameter(torch.normal(mean=0.01, std=0.02, size=(dim_in, dim_out)))
        self._scales = (inv_sqrt, sqrt)  # shared with the model's buffers (moved by the model)

    def forward(self, adj, x):
        inv_sqrt, sqrt = self._scales
        walk = inv_sqrt[:, None] * spmm(adj, sqrt[:, None] * x)  # D^-1 A x
        return torch.sigmoid((2.0 * x - walk) @ self.weight)


@register_model("SpectralCF", category="general",
                paper="L. Zheng, C.-T. Lu, F. Jiang, J. Zhang, P. S. Yu. Spectral Collaborative Filtering. RecSys 2018.")
class SpectralCF(GraphRecommender):
    """Spectral convolution on the bipartite user-item graph (Zheng et al., RecSys 2018): with the first-order
    polynomial approximation of the filter, ``U U^T + U Lambda U^T = I + L`` (``L = I - D^-1 A``), each layer
    computes ``E^(k+1) = sigmoid((I + L) E^(k) W_k)`` and the final vectors concatenate ``E^(0..K)``;
    ``score = e_u . e_i``, BPR with one uniform negative, plus ``reg_weight`` times the L2 penalty of the
    batch's final user / item vectors.

    Defaults are RecBole 1.2.1's: embedding 64, 4 layers, reg_weight 1e-3, Adam 1e-3, batch 2048; the
    filters start from N(0.01, 0.02^2) as RecBole. Departures: the penalty is ``0.5 |e|^2 / B`` (RecBole:
    unsquared norms / B); the product with ``D^-1 A`` is computed through the symmetric normalised adjacency
    and diagonal scalings (the same matrix; padding ids have no edges, so their rows stay zero).

    Args (config keys): ``embed_dim``, ``n_layers``, ``reg_weight``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``; see ``spectralcf.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SpectralCF", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    layer_combine = "concat"
    option_help = {k: v for k, v in GRAPH_HELP.items() if k != "self_loops"}
    option_help["reg_weight"] = "weight of the L2 penalty on the batch's final (concatenated) vectors (0 = none)"

    def build_blocks(self):
        deg = np.asarray(bipartite_matrix(self.meta.train_matrix()).sum(1)).ravel()
        inv = np.power(deg, -0.5, out=np.zeros_like(deg), where=deg > 0)
        self.register_buffer("_deg_inv_sqrt", torch.as_tensor(inv, dtype=torch.float32), persistent=False)
        self.register_buffer("_deg_sqrt", torch.as_tensor(np.sqrt(deg), dtype=torch.float32), persistent=False)
        super().build_blocks()

    def _get_layer(self, k, in_dim, out_dim):
        return SpectralConv(in_dim, out_dim, self._deg_inv_sqrt, self._deg_sqrt)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        for layer in getattr(self, "gnn_layers", []):  # keep the layers' references to the moved buffers
            layer._scales = (self._deg_inv_sqrt, self._deg_sqrt)
        return out

    def _reg_penalty(self, users, items, vectors):
        penalty = vectors[0][users].pow(2).sum()
        for ids in items:
            penalty = penalty + vectors[1][ids].pow(2).sum()
        return penalty
