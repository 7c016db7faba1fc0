"""GF-CF: a linear plus an ideal low-pass graph filter over the normalised item-item graph."""
from typing import Any, Dict

import numpy as np
import scipy.sparse as sp
import torch

from recstudio.model.family.neighbourhood import ItemItemRecommender, binary_matrix, drop_padding, \
    history_multi_hot, parse_positive_int
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("GFCF", category="general", aliases=("GF-CF",),
                paper="Y. Shen, Y. Wu, Y. Zhang, C. Shan, J. Zhang, K. B. Letaief, D. Li. How Powerful is "
                      "Graph Convolution for Recommendation? CIKM 2021.")
class GFCF(ItemItemRecommender):
    """GF-CF (Shen et al., CIKM 2021): with the binary train matrix ``R`` and its degrees,
    ``R~ = D_U^-1/2 R D_I^-1/2`` and the item-item graph ``P~ = R~^T R~``,

        ``score(u, .) = r_u P~ + alpha r_u D_I^-1/2 V_k V_k^T D_I^1/2``

    a linear low-pass filter plus an ideal low-pass filter, ``V_k`` the top-``k`` right singular vectors of
    ``R~`` (scipy's ``svds``, its start vector seeded by ``seed``). Training-free (closed form, no epochs);
    ``P~`` is held sparse, ``V_k`` as a ``[num_items, k]`` buffer. Items without train interactions get
    ``D_I^-1/2 = 0`` (the reference code divides by zero there).

    Departures from the paper: the input ``r_u`` at evaluation is the user's known history (train + valid
    for test; the paper's code uses the train rows). RecBole has no GF-CF; defaults are the paper's
    (``alpha = 0.3``, ``k = 256``, as in its released code).

    Args (config keys):
        alpha: weight of the ideal low-pass filter (0: the linear filter only).
        num_factors: ``k``, the number of singular vectors.

    Example:
        >>> model, metrics = recstudio.run(model="GFCF", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {"alpha": "weight of the ideal low-pass filter (top singular vectors) beside the linear filter",
                   "num_factors": "k: right singular vectors of the normalised matrix in the ideal low-pass filter"}

    def build_blocks(self) -> None:
        super().build_blocks()
        n = self.meta.num_items
        k = parse_positive_int(self.cfg("num_factors"), "num_factors", "GFCF")
        self.register_buffer("vectors", torch.zeros(n, k))
        self.register_buffer("d_inv_sqrt", torch.zeros(n))
        self.register_buffer("d_sqrt", torch.zeros(n))

    def fit_closed_form(self, split) -> None:
        from scipy.sparse.linalg import svds
        R = binary_matrix(split.matrix("train"), np.float64)
        du = np.asarray(R.sum(axis=1)).ravel()
        di = np.asarray(R.sum(axis=0)).ravel()
        du_is = np.divide(1.0, np.sqrt(du), out=np.zeros_like(du), where=du > 0)
        di_is = np.divide(1.0, np.sqrt(di), out=np.zeros_like(di), where=di > 0)
        Rn = sp.csr_matrix(sp.diags(du_is) @ R @ sp.diags(di_is))
        k = int(self.vectors.shape[1])
        if k >= min(Rn.shape):
            raise ConfigError(f"GFCF's num_factors ({k}) must be below min(users, items) = {min(Rn.shape)}.")
        self.weights.set(drop_padding(Rn.T @ Rn))
        v0 = np.random.RandomState(int(self.config["seed"])).uniform(-1, 1, min(Rn.shape))
        _, _, vt = svds(Rn, k=k, v0=v0)
        with torch.no_grad():
            self.vectors.copy_(torch.as_tensor(np.ascontiguousarray(vt.T), dtype=torch.float32))
            self.d_inv_sqrt.copy_(torch.as_tensor(di_is, dtype=torch.float32))
            self.d_sqrt.copy_(torch.as_tensor(np.sqrt(di) * (di > 0), dtype=torch.float32))
            self.d_inv_sqrt[0] = 0.0
            self.d_sqrt[0] = 0.0

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        x = history_multi_hot(batch, self.meta.num_items)
        linear = self.weights.right_multiply(x)
        alpha = float(self.cfg("alpha"))
        if alpha == 0:
            return linear
        ideal = ((x * self.d_inv_sqrt) @ self.vectors) @ self.vectors.T * self.d_sqrt
        return linear + alpha * ideal
