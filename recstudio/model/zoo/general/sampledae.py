"""SampledAE: a Recoder-style sparse autoencoder trained with mini-batch negative sampling."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.module.mlp import MLP, get_activation
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError

LOSS_TYPES = ("multinomial", "bce")


class SparseOutputItems(nn.Module):
    """The output layer as an item tower: item ``i`` has the row ``[W_i ; b_i]`` of one table
    (``nn.Embedding``, sparse gradients when ``sparse``), the query is ``[h ; 1]``."""

    def __init__(self, num_items: int, hidden: int, sparse: bool):
        super().__init__()
        self.table = nn.Embedding(num_items, hidden + 1, sparse=sparse)
        with torch.no_grad():
            nn.init.xavier_normal_(self.table.weight[:, :hidden])
            self.table.weight[:, hidden].zero_()
            self.table.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


class SparseBagQuery(nn.Module):
    """``h = MLP(act(Σ_{i in x~} w_i E_i + b))``, query ``[h ; 1]``.

    The user's items (CSR ``history_indptr`` / ``history_indices``) are an embedding bag over the input
    table ``E`` (``nn.Embedding``, sparse gradients when ``sparse``): weight ``w_i = 1 / sqrt(|x|)``
    (the L2-normalised multi-hot) and, in training, each item dropped with probability ``dropout``
    and the kept ones scaled by ``1 / (1 - dropout)`` (dropout of the normalised input, as Mult-DAE).
    """

    def __init__(self, num_items: int, dim: int, hidden_dims, activation: str, dropout: float, sparse: bool):
        super().__init__()
        self.item_in = nn.Embedding(num_items, dim, padding_idx=0, sparse=sparse)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.act = get_activation(activation)
        self.dropout = dropout
        dims = [dim, *hidden_dims]
        self.mlp = MLP(dims, activation=activation, last_activation=True) if len(dims) > 1 else nn.Identity()
        with torch.no_grad():
            nn.init.xavier_normal_(self.item_in.weight)
            self.item_in.weight[0].zero_()
        for layer in self.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def bag(self, indptr: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        counts = indptr[1:] - indptr[:-1]
        rows = torch.repeat_interleave(torch.arange(len(counts), device=indices.device), counts)
        weights = counts.clamp(min=1).float().rsqrt()[rows]
        if self.training and self.dropout > 0:
            keep = torch.rand(len(indices), device=indices.device) >= self.dropout
            rows, indices, weights = rows[keep], indices[keep], weights[keep] / (1.0 - self.dropout)
            counts = torch.bincount(rows, minlength=len(counts))
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
        return F.embedding_bag(indices, self.item_in.weight, offsets, mode="sum", per_sample_weights=weights,
                               sparse=self.item_in.sparse, padding_idx=0)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.mlp(self.act(self.bag(batch["history_indptr"], batch["history_indices"]) + self.bias))
        return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)


@register_model("SampledAE", category="general", aliases=("Recoder",),
                paper="A. Moussawi. Towards Large Scale Training of Autoencoders for Collaborative Filtering. "
                      "Late-Breaking Results, RecSys 2018 (arXiv:1809.00999).")
class SampledAE(ItemTowerRecommender):
    """Sparse autoencoder with mini-batch negative sampling (Recoder; Moussawi, RecSys 2018 LBR).

    The input layer is an embedding bag over the user's items (no dense ``[B, num_items]`` input), then
    ``act`` and optional dense layers ``hidden_dims``; the output layer scores, in training, only the
    item set ``T`` of the mini-batch: the union of the items of the batch's users, or of
    ``num_sampling_users`` of them drawn at random (``0`` = all). Every user's loss is over ``T``::

        multinomial:  -Σ_{i in T} x_i log softmax_T([h ; 1] · O_T)_i       bce: Σ_{i in T} BCE(x_i, σ(logit_i))

    (mean over users), so the items of the other users are the negatives and an epoch costs
    ``O(B · |T| · d)`` instead of ``O(B · num_items · d)``. ``sampled_output: false`` scores every item
    (the full output layer, for comparison). At evaluation every item is scored.

    Sparse parameters: with ``optimizer: sparse_dense_adam`` the input table ``E`` and the output table
    ``O`` are ``nn.Embedding(sparse=True)`` updated by ``SparseAdam`` (only the rows of the batch), the dense
    rest (input bias, hidden layers) by Adam; with any other optimizer every table is dense.

    Item tower: the output table's rows ``[W_i ; b_i]`` and the query ``[h ; 1]``: exact ANN top-k.

    Departures from Recoder: the input is the L2-normalised, dropped-out multi-hot (Mult-DAE's input
    noise) rather than the raw one, and the default loss is the multinomial likelihood (Recoder's
    default is the logistic loss, ``loss_type: bce``); untied input / output tables. When
    ``num_sampling_users`` is set, the positives of the other users outside ``T`` are left out of that
    batch's loss. The padding item 0 is never in ``T``.

    Args (config keys): ``embed_dim``, ``hidden_dims``, ``activation``, ``dropout``, ``loss_type``,
    ``sampled_output``, ``num_sampling_users``; defaults in ``sampledae.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SampledAE", dataset="ml-1m")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        "embed_dim": "size of the input embedding bag (the first hidden layer)",
        "hidden_dims": "sizes of further dense hidden layers after the bag ([] = none)",
        "activation": "activation after the bag and each hidden layer (a name from recstudio.model.module.mlp)",
        "dropout": "probability of dropping each input item in training (rescaled 1/(1-p))",
        "loss_type": "multinomial (softmax over the scored items) or bce (logistic loss on each scored item)",
        "sampled_output": "true: the output layer scores only the batch's items in training; false: every item",
        "num_sampling_users": "take the scored items from this many random users of the batch (0 = all of them)",
    }

    def _sparse(self) -> bool:
        return self.config["optimizer"] == "sparse_dense_adam"

    def _hidden(self) -> int:
        dims = list(self.cfg("hidden_dims"))
        return dims[-1] if dims else int(self.cfg("embed_dim"))

    def _get_item_encoder(self) -> nn.Module:
        return SparseOutputItems(self.meta.num_items, self._hidden(), self._sparse())

    def _get_query_encoder(self) -> nn.Module:
        c = self.config
        if c["optimizer"] == "sparse_adam":
            raise ConfigError("SampledAE has dense parameters (input bias, hidden layers): use optimizer "
                              "sparse_dense_adam (SparseAdam for its tables, Adam for the rest) or adam.")
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"SampledAE dropout must be in [0, 1), got {c['dropout']}.")
        if str(c["loss_type"]).lower() not in LOSS_TYPES:
            raise ConfigError(f"SampledAE loss_type must be one of {LOSS_TYPES}, got {c['loss_type']!r}.")
        if int(c["num_sampling_users"]) < 0:
            raise ConfigError(f"SampledAE num_sampling_users must be >= 0, got {c['num_sampling_users']}.")
        return SparseBagQuery(self.meta.num_items, int(c["embed_dim"]), list(c["hidden_dims"]),
                              c["activation"], float(c["dropout"]), self._sparse())

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def _get_loss_func(self):
        return None  # the loss over the sampled items below

    def _dataset_kwargs(self):
        return {"dense": False}  # CSR rows: the input is an embedding bag

    def configure_optimizers(self):
        if not self._sparse():
            return super().configure_optimizers()
        from recstudio.model.optim import configure
        tables = {id(self.query_encoder.item_in.weight), id(self.item_encoder.table.weight)}
        sparse = [p for p in self.parameters() if p.requires_grad and id(p) in tables]
        dense = [p for p in self.parameters() if p.requires_grad and id(p) not in tables]
        return configure([{"params": sparse, "sparse": True}, {"params": dense}], self.config, self.monitor)

    # ---- training ----------------------------------------------------------------------------
    def output_items(self, indptr: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The scored item ids ``T`` (sorted) of a training batch."""
        if not self.cfg("sampled_output"):
            return torch.arange(1, self.meta.num_items, device=indices.device)
        n = int(self.cfg("num_sampling_users"))
        users = len(indptr) - 1
        if 0 < n < users:
            chosen = torch.zeros(users, dtype=torch.bool, device=indices.device)
            chosen[torch.randperm(users, device=indices.device)[:n]] = True
            indices = indices[torch.repeat_interleave(chosen, indptr[1:] - indptr[:-1])]
        return torch.unique(indices[indices > 0])

    def targets(self, indptr: torch.Tensor, indices: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Multi-hot ``[B, |T|]`` of each user's items among ``items`` (sorted)."""
        counts = indptr[1:] - indptr[:-1]
        rows = torch.repeat_interleave(torch.arange(len(counts), device=indices.device), counts)
        pos = torch.searchsorted(items, indices).clamp(max=len(items) - 1)
        hit = items[pos] == indices
        x = torch.zeros(len(counts), len(items), device=indices.device)
        x[rows[hit], pos[hit]] = 1.0
        return x

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        indptr, indices = batch["history_indptr"], batch["history_indices"]
        items = self.output_items(indptr, indices)
        x = self.targets(indptr, indices, items)
        logits = self.score_func.score_all(self.query_encoder(batch), self.encode_items(items))
        if str(self.cfg("loss_type")).lower() == "bce":
            return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean()
        return -(x * torch.log_softmax(logits, dim=-1)).sum(-1).mean()

    def output_size(self, batch: Dict[str, torch.Tensor]) -> Tuple[int, int]:
        """``(|T|, num_items - 1)`` of a training batch: how much of the output layer it scores."""
        return len(self.output_items(batch["history_indptr"], batch["history_indices"])), self.meta.num_items - 1
