"""EASE: a closed-form linear item-item autoencoder."""
from typing import Dict

import numpy as np
import torch
from torch import nn

from recstudio.data.types.base import csr_to_dense
from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.registry import register_model


class HistoryMultiHot(nn.Module):
    """Query encoder: the user's history as a multi-hot row ``[B, num_items]``."""

    def __init__(self, num_items: int):
        super().__init__()
        self.num_items = num_items

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        if "history" in batch:  # UserDataset training batches
            return batch["history"].float()
        dense = csr_to_dense(batch["history_indptr"], batch["history_indices"], self.num_items)
        return (dense > 0).float()


class ItemColumns(nn.Module):
    """Item encoder: item ``i``'s vector is column ``i`` of the item-item weight matrix."""

    def __init__(self, num_items: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_items, num_items))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight.T[ids]


@register_model("EASE", category="general",
                paper="H. Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019.")
class EASE(ItemTowerRecommender):
    """EASE (Steck, WWW 2019): scores ``x_u B`` with the item-item matrix
    ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + lambda I)^-1``, i.e. ``B_ij = -P_ij / P_jj`` off the
    diagonal and ``diag(B) = 0``, over the binary train matrix ``X``.

    Fitted in closed form (``fit_mode = 'closed_form'``): no epochs, no optimizer. The query is the
    user's multi-hot history and item ``i``'s vector is column ``i`` of ``B``, so scores are an inner
    product and ANN retrieval works (vectors have ``num_items`` dimensions). Memory is
    ``O(num_items^2)`` (27k items: about 3 GB in float32 plus the float64 inverse).

    Args (config keys): ``reg_weight`` (lambda; 250 by default, RecBole's default).

    Example:
        >>> model, metrics = recstudio.run(model="EASE", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    fit_mode = "closed_form"
    option_help = {"reg_weight": "L2 regularisation lambda added to the diagonal of X^T X",
                   "score_func": "score function (inner_product: scores are x_u . B[:, i])"}

    def _get_item_encoder(self) -> nn.Module:
        return ItemColumns(self.meta.num_items)

    def _get_query_encoder(self) -> nn.Module:
        return HistoryMultiHot(self.meta.num_items)

    def fit_closed_form(self, split) -> None:
        X = split.matrix("train").astype(np.float64)
        X.data[:] = 1.0
        G = (X.T @ X).toarray()
        G[np.diag_indices_from(G)] += self.config["reg_weight"]
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        B[0, :] = 0.0  # padding item
        B[:, 0] = 0.0
        self.item_encoder.weight.copy_(torch.as_tensor(B, dtype=torch.float32))
