"""EASE: a closed-form linear item-item autoencoder (Steck, WWW 2019)."""
from typing import Dict

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recstudio.data.types.base import csr_to_dense
from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


def ease_weights(X: sp.spmatrix, reg_weight: float) -> np.ndarray:
    """EASE's item-item matrix ``B`` (float64 ``[n, n]``) for a binary user x item matrix ``X``.

    ``G = X^T X + lambda I``, ``P = G^-1``, ``B = -P / diag(P)`` (column ``j`` divided by ``P_jj``),
    ``diag(B) = 0`` -- eq. (8) of the paper, ``B = I - P diagMat(1 / diag(P))``.

    Example:
        >>> B = ease_weights(sp.csr_matrix(np.array([[1., 1., 0.], [0., 1., 1.]])), 1.0)
        >>> B.shape, float(abs(np.diag(B)).max())
        ((3, 3), 0.0)
    """
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    X.data[:] = 1.0  # binary, as in the paper (repeated pairs or ratings count once)
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += reg_weight
    P = np.linalg.inv(G)
    del G
    P /= -np.diag(P)[None, :]  # in place: B off the diagonal
    P[np.diag_indices_from(P)] = 0.0
    return P


class HistoryMultiHot(nn.Module):
    """Query encoder: the user's history as a multi-hot row ``x_u`` ``[B, num_items]`` (column 0, the
    padding item, is always 0). Reads ``batch['history']`` (UserDataset batches) or the CSR
    ``history_indptr`` / ``history_indices`` of evaluation and ``recommend`` batches."""

    def __init__(self, num_items: int):
        super().__init__()
        self.num_items = num_items

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        if "history" in batch:
            x = batch["history"].float()
        else:
            x = csr_to_dense(batch["history_indptr"], batch["history_indices"], self.num_items)
        x = (x > 0).float()
        x[:, 0] = 0.0
        return x


class ItemColumns(nn.Module):
    """Item encoder: item ``i``'s vector is column ``i`` of the item-item matrix ``B`` (a float32 buffer
    ``weight`` ``[num_items, num_items]``, so it is in the state dict but never trained). Row and column 0
    (padding) are zero."""

    def __init__(self, num_items: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_items, num_items))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight.T[ids]


@register_model("EASE", category="general",
                paper="H. Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019.")
class EASE(ItemTowerRecommender):
    """EASE (Steck, WWW 2019): a linear item-item model ``score(u, .) = x_u B`` whose weights have a
    closed form,

        ``min_B ||X - X B||_F^2 + lambda ||B||_F^2  s.t.  diag(B) = 0``
        ``=>  P = (X^T X + lambda I)^-1,  B_ij = -P_ij / P_jj (i != j),  B_jj = 0``

    over the binary train matrix ``X`` (users x items; the padding column 0 is left out and its row and
    column of ``B`` are zero). Fitted in one step (``fit_mode = 'closed_form'``): no epochs, no optimizer;
    the inverse is taken in float64, ``B`` is stored as a float32 buffer (saved in checkpoints).

    As an :class:`ItemTowerRecommender`: the query is the user's multi-hot history ``x_u``
    ``[B, num_items]`` and item ``i``'s vector is column ``i`` of ``B``, with an inner product, so
    ``x_u . B[:, i]`` is exactly the paper's score, full ranking, ``recommend`` and ANN top-k work
    (vectors have ``num_items`` dimensions). Memory is ``O(num_items^2)``: about 11 MB for ml-100k,
    3 GB in float32 plus the float64 inverse for 27k items.

    Departures from the paper: none in the model. The input at evaluation is the user's known history
    (train for validation, train + valid for test, everything for ``recommend``), where RecBole scores
    from the train matrix only.

    Args (config keys):
        reg_weight: ``lambda``, added to the diagonal of the Gram matrix ``X^T X`` (default 250,
            RecBole's default; on ml-100k 250-500 are best, see ``ease.yaml``).

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="EASE", dataset="ml-100k")     # doctest: +SKIP
        >>> model.recommend(["196"], k=10)                                      # doctest: +SKIP
    """

    dataset_type = "user"
    fit_mode = "closed_form"
    option_help = {"reg_weight": "L2 regularisation lambda added to the diagonal of the Gram matrix X^T X"}

    def _get_item_encoder(self) -> nn.Module:
        return ItemColumns(self.meta.num_items)

    def _get_query_encoder(self) -> nn.Module:
        return HistoryMultiHot(self.meta.num_items)

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()  # the paper's x_u . B[:, i]; no other score function is meaningful

    def item_vectors(self) -> torch.Tensor:
        """Every item's vector, i.e. ``B^T`` ``[num_items, num_items]`` (a view, no copy)."""
        return self.item_encoder.weight.T

    def fit_closed_form(self, split) -> None:
        reg = float(self.config["reg_weight"])
        if reg <= 0:
            raise ConfigError(f"EASE needs reg_weight > 0 (X^T X is singular otherwise), got {reg}.")
        X = split.matrix("train")[:, 1:]
        B = ease_weights(X, reg)
        with torch.no_grad():
            W = self.item_encoder.weight
            W.zero_()
            W[1:, 1:] = torch.as_tensor(B, dtype=torch.float32)
        self._ann_index = None
