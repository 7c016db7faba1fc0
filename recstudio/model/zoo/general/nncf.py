"""NNCF: NeuMF-style scoring enriched with convolved embeddings of the user's and item's neighbours."""
from typing import Dict

import torch
from torch import nn

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def random_neighbours(indptr: torch.Tensor, indices: torch.Tensor, count: int, generator: torch.Generator):
    """``[rows, count]`` ids drawn uniformly with replacement from each CSR row (0 for an empty row)."""
    lens = indptr[1:] - indptr[:-1]
    draw = torch.rand(len(lens), count, generator=generator)
    offset = (draw * lens.unsqueeze(1)).long().clamp(max=(lens - 1).clamp(min=0).unsqueeze(1))
    picked = indices[(indptr[:-1].unsqueeze(1) + offset).clamp(max=max(len(indices) - 1, 0))]
    return torch.where(lens.unsqueeze(1) > 0, picked, torch.zeros_like(picked))


class NeighbourConv(nn.Module):
    """``ReLU(MaxPool(Conv1d(neighbour embeddings)))`` flattened: ``[*, count]`` ids -> ``[*, out]``."""

    def __init__(self, num: int, dim: int, kernels: int, kernel_size: int, pool_size: int, count: int):
        super().__init__()
        self.embedding = IdEmbedding(num, dim, init="normal", init_std=0.01)
        self.conv = nn.Sequential(nn.Conv1d(dim, kernels, kernel_size), nn.MaxPool1d(pool_size), nn.ReLU())
        conved = count - kernel_size + 1
        self.out_dim = kernels * ((conved - pool_size) // pool_size + 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lead = ids.shape[:-1]
        x = self.embedding(ids.reshape(-1, ids.shape[-1])).transpose(1, 2)     # [P, dim, count]
        return self.conv(x).reshape(*lead, -1)


@register_model("NNCF", category="general",
                paper="T. Bai, J.-R. Wen, J. Zhang, W. X. Zhao. A Neural Collaborative Filtering Model with "
                      "Interaction-based Neighborhood. CIKM 2017.")
class NNCF(TowerFreeRecommender):
    """NNCF (Bai et al., CIKM 2017), with direct neighbours: each user ``u`` has ``neigh_num`` items and
    each item ``i`` ``neigh_num`` users drawn at random (with replacement) from the training interactions
    (``needs: train_graph``; drawn once from the ``seed``, so a reload draws the same). Their embeddings
    (``neigh_dim``) go through ``Conv1d`` (``num_conv_kernel`` kernels of width ``conv_kernel_size``),
    max pooling (``pool_kernel_size``) and ReLU into ``c_u`` and ``c_i``; then::

        score(u, i) = w^T MLP([p_u ⊙ q_i ; c_u ; c_i])

    (ReLU MLP ``mlp_hidden`` with dropout), trained with binary cross-entropy against ``num_neg``
    sampled unobserved items. Scoring is not decomposable (TowerFree).

    Departures: only the paper's direct-neighbour variant (RecBole's ``neigh_info_method: random``, its
    default); the Louvain-community and kNN neighbourhoods are not offered. Adam.

    Args (config keys): ``embed_dim``, ``neigh_dim``, ``neigh_num``, ``num_conv_kernel``,
    ``conv_kernel_size``, ``pool_kernel_size``, ``mlp_hidden``, ``dropout``, ``sampler``, ``num_neg``,
    ``loss``; defaults in ``nncf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NNCF", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {
        **TowerFreeRecommender.option_help,
        "embed_dim": "size of the user and item id embeddings (their element-wise product enters the MLP)",
        "neigh_dim": "size of the neighbours' embeddings",
        "neigh_num": "neighbours drawn per user and per item",
        "num_conv_kernel": "convolution kernels (output channels)",
        "conv_kernel_size": "width of the convolution over the neighbour sequence",
        "pool_kernel_size": "width (and stride) of the max pooling after it",
        "mlp_hidden": "hidden sizes of the ReLU MLP before the output layer",
        "dropout": "dropout in the MLP",
    }

    def build_blocks(self) -> None:
        m, c = self.meta, self.config
        if c["neigh_num"] < c["conv_kernel_size"] + c["pool_kernel_size"] - 1:
            raise ConfigError(f"NNCF: neigh_num ({c['neigh_num']}) must be at least conv_kernel_size + "
                              f"pool_kernel_size - 1 ({c['conv_kernel_size'] + c['pool_kernel_size'] - 1}).")
        if not c["mlp_hidden"] or not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError("NNCF needs a non-empty mlp_hidden and 0 <= dropout < 1.")
        from recstudio.model.zoo.general.dmf import item_major
        gen = torch.Generator().manual_seed(int(c["seed"]))
        k = c["neigh_num"]
        i_ptr, i_idx = item_major(m.train_indptr, m.train_indices, m.num_items)
        self.register_buffer("user_neigh", random_neighbours(m.train_indptr, m.train_indices, k, gen),
                             persistent=False)
        self.register_buffer("item_neigh", random_neighbours(i_ptr, i_idx, k, gen), persistent=False)
        self.user_embedding = IdEmbedding(m.num_users, c["embed_dim"], init="normal", init_std=0.01)
        self.item_embedding = IdEmbedding(m.num_items, c["embed_dim"], init="normal", init_std=0.01)
        conv = (c["neigh_dim"], c["num_conv_kernel"], c["conv_kernel_size"], c["pool_kernel_size"], k)
        self.user_conv = NeighbourConv(m.num_items, *conv)    # a user's neighbours are items
        self.item_conv = NeighbourConv(m.num_users, *conv)
        width = c["embed_dim"] + self.user_conv.out_dim + self.item_conv.out_dim
        self.mlp = MLP([width, *c["mlp_hidden"]], dropout=c["dropout"], last_activation=True)
        self.out = nn.Linear(c["mlp_hidden"][-1], 1)

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        u, cu = self.user_embedding(users), self.user_conv(self.user_neigh[users])
        unique, inverse = torch.unique(items, return_inverse=True)   # each item's convolution once
        ci = self.item_conv(self.item_neigh[unique])[inverse]
        v = self.item_embedding(items)
        if items.dim() == 2:
            u, cu = u.unsqueeze(1).expand_as(v), cu.unsqueeze(1).expand(*items.shape, cu.shape[-1])
        return self.out(self.mlp(torch.cat([u * v, cu, ci], dim=-1))).squeeze(-1)
