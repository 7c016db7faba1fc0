"""DMF: deep matrix factorisation, MLP towers over the rows and columns of the interaction matrix."""
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.data.types.base import csr_gather
from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class SparseRowProjection(nn.Module):
    """``R[rows] @ W`` for a fixed binary CSR matrix ``R`` (``num_rows x num_cols``) and a learned
    ``W`` (``num_cols x dim``), as an ``embedding_bag`` sum over each row's non-zero columns (never a
    dense row). Rows without entries give zero vectors.

    Args:
        indptr, indices: the CSR arrays of ``R`` (kept as non-persistent buffers: they come from the
            model's context, which every checkpoint carries).
        num_cols: columns of ``R``.
        dim: output size.
        init_std: ``W ~ N(0, init_std^2)``.

    Example:
        >>> p = SparseRowProjection(torch.tensor([0, 2, 2]), torch.tensor([1, 2]), 3, 4)
        >>> p(torch.tensor([0, 1])).shape
        torch.Size([2, 4])
    """

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor, num_cols: int, dim: int,
                 init_std: float = 0.01):
        super().__init__()
        self.register_buffer("indptr", indptr.long().clone(), persistent=False)
        self.register_buffer("indices", indices.long().clone(), persistent=False)
        self.weight = nn.Parameter(torch.randn(num_cols, dim) * init_std)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        shape = rows.shape
        ptr, idx = csr_gather(self.indptr, self.indices, rows.reshape(-1))
        out = F.embedding_bag(idx, self.weight, ptr, mode="sum", include_last_offset=True)
        return out.view(*shape, -1)


def item_major(indptr: torch.Tensor, indices: torch.Tensor, num_items: int):
    """The transpose (item-major CSR arrays) of a user-major CSR."""
    import numpy as np
    import scipy.sparse as sp
    n_users = len(indptr) - 1
    m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices.numpy(), indptr.numpy()),
                      shape=(n_users, num_items)).T.tocsr()
    m.sort_indices()
    return torch.as_tensor(m.indptr.astype(np.int64)), torch.as_tensor(m.indices.astype(np.int64))


class _Tower(nn.Module):
    """``MLP(R[ids] @ W)`` with ReLU after every layer (RecBole's MLPLayers)."""

    def __init__(self, proj: SparseRowProjection, dims: Sequence[int], id_key: str = None):
        super().__init__()
        self.proj, self.id_key = proj, id_key
        self.mlp = MLP(list(dims), activation="relu", last_activation=True)

    def forward(self, x) -> torch.Tensor:
        ids = x[self.id_key] if isinstance(x, dict) else x
        return self.mlp(self.proj(ids))


@register_model("DMF", category="general",
                paper="H.-J. Xue, X. Dai, J. Zhang, S. Huang, J. Chen. Deep Matrix Factorization Models for "
                      "Recommender Systems. IJCAI 2017.")
class DMF(TwoTowerRecommender):
    """Deep matrix factorisation (Xue et al., IJCAI 2017).

    With ``Y`` the binary training interaction matrix (users x items), the user is encoded from
    their row and the item from its column::

        p_u = MLP_U(Y[u, :] W_U),   q_i = MLP_I(Y[:, i]^T W_I),   score(u, i) = p_u . q_i

    (each MLP a stack of Linear + ReLU, ReLU after the last layer too), trained with binary
    cross-entropy on the observed interactions against ``num_neg`` sampled unobserved items. The rows
    are read from the training split only (``needs: train_graph``), at training and evaluation alike,
    so a user's valid items never enter their test representation (as in RecBole).

    Departures from the paper, as in RecBole 1.2.1: the inner product instead of the cosine (the
    paper's cosine is available as ``score_func: cosine``), the plain log loss on 0/1 labels instead
    of the paper's normalised cross-entropy on ratings divided by the largest rating, and Adam.

    Args (config keys): ``embed_dim`` (the size of the first projection ``W``), ``user_hidden``,
    ``item_hidden`` (MLP sizes after it; their last sizes must match), ``score_func``, ``loss``,
    ``sampler``, ``num_neg``; defaults in ``dmf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DMF", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {
        **TOWER_HELP,
        "embed_dim": "size of the first (linear) projection of a user's row / an item's column",
        "user_hidden": "sizes of the user MLP's layers after the projection (ReLU after each)",
        "item_hidden": "sizes of the item MLP's layers after the projection; the last must equal user_hidden's",
    }

    def _sizes(self):
        u, i = list(self.cfg("user_hidden")), list(self.cfg("item_hidden"))
        if not u or not i or u[-1] != i[-1]:
            raise ConfigError(f"DMF: user_hidden {u} and item_hidden {i} must be non-empty and end with the same "
                              "size (the score is an inner product of the two towers' outputs).")
        return u, i

    def _get_query_encoder(self) -> nn.Module:
        m, d = self.meta, self.cfg("embed_dim")
        u, _ = self._sizes()
        proj = SparseRowProjection(m.train_indptr, m.train_indices, m.num_items, d)
        return _Tower(proj, [d, *u], id_key=m.uid_field)

    def _get_item_encoder(self) -> nn.Module:
        m, d = self.meta, self.cfg("embed_dim")
        _, i = self._sizes()
        ptr, idx = item_major(m.train_indptr, m.train_indices, m.num_items)
        return _Tower(SparseRowProjection(ptr, idx, m.num_users, d), [d, *i])

    def build_blocks(self) -> None:
        super().build_blocks()
        for layer in self.modules():  # RecBole's init: N(0, 0.01^2) weights, zero biases
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
