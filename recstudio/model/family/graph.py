"""``GraphRecommender``: two-tower models whose user / item vectors come from propagating id embeddings
over the normalised user-item TRAINING graph (LightGCN, NGCF, ...).

What the base does:

* declares ``needs = {"train_graph"}`` and, in :meth:`build_blocks`, registers ``norm_adj``: the
  symmetric-normalised adjacency ``L = D^-1/2 A D^-1/2`` of the bipartite graph of the *train split only*
  (``ModelContext.train_matrix()``; valid and test edges never enter it), users as nodes ``0..U-1`` and item
  ``i`` as node ``U + i``, a ``torch.sparse_csr`` tensor held as a non-persistent buffer (it moves with
  ``.to(device)`` and is rebuilt from the checkpointed context on load). Multiply with
  :func:`recstudio.model.module.graph.spmm` (symmetric: its backward reuses the matrix). The ``self_loops`` key adds
  the identity after normalising (``L + I``, NGCF);
* stacks the model's layer ``K`` times and combines the outputs ``E^(0..K)`` (:attr:`layer_combine`:
  ``mean`` = LightGCN, ``concat`` = NGCF, ``sum``, ``last``);
* training: propagation runs once per training batch, with gradient through the graph, and the batch's
  positive and negative items and its users read the same propagated vectors; the loss is the ``loss`` key
  (BPR with ``masked_uniform`` negatives by default) plus ``reg_weight`` times the L2 penalty of the batch's
  ego (layer-0) embeddings, ``0.5 * (|e_u|^2 + |e_i|^2 + |e_j|^2) / B`` (the LightGCN code's form, RecBole's
  with ``require_pow: true``; RecBole's default sums unsquared norms, a difference that is negligible at 1e-5);
* evaluation: the vectors are computed ONCE and reused by full ranking, ``recommend``, ``similar_items`` and
  the ANN index. The cache is ``self._graph_cache`` (``None`` or ``(key, user_vecs, item_vecs)``);
  :meth:`propagated` returns ``(user_vecs, item_vecs)`` from it. It is dropped after every optimizer step,
  at every train batch end and train epoch start and by ``load_state_dict``, and its ``key`` holds the
  parameters' version counters, so any in-place change of a weight (an optimizer step outside Lightning
  included) also invalidates it. In training mode nothing is cached (dropout, gradients).

Hooks a graph model overrides:

* :meth:`_get_layer` ``(k, in_dim, out_dim) -> nn.Module`` (required): layer ``k``, whose
  ``forward(adj, x)`` maps node embeddings ``[N, in_dim]`` to ``[N, out_dim]``;
* :meth:`_layer_dims`: ``[d_0, d_1, ..., d_K]`` (default ``embed_dim`` repeated ``n_layers + 1`` times);
* :attr:`layer_combine` (class attribute) or :meth:`combine_layers` for other read-outs;
* :meth:`_training_adjacency`: the adjacency one training propagation uses (NGCF: edge dropout);
* :meth:`_after_layer`: what follows each layer (NGCF: LeakyReLU, message dropout, L2-normalisation).

Example:
    >>> from recstudio.model.family.graph import GraphRecommender
    >>> from recstudio.model.module.graph import spmm
    >>> class Mean(nn.Module):
    ...     def forward(self, adj, x):
    ...         return spmm(adj, x)
    >>> class MyGCN(GraphRecommender):                  # plus @register_model and a mygcn.yaml   # doctest: +SKIP
    ...     def _get_layer(self, k, in_dim, out_dim):
    ...         return Mean()
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.utils.errors import ConfigError

#: help text of the keys graph models declare in their YAML
GRAPH_HELP = {
    **TOWER_HELP,
    "embed_dim": "size of the ego (layer-0) user / item embeddings",
    "n_layers": "number of propagation layers K",
    "reg_weight": "weight of the L2 penalty on the batch's ego embeddings (0 = none)",
    "self_loops": "add the identity to the normalised adjacency (L + I: a node's own embedding joins its message)",
}

LAYER_COMBINES = ("mean", "sum", "concat", "last")


class GraphRecommender(TwoTowerRecommender):
    """Base of graph collaborative-filtering models (see the module docstring for the hooks and the cache).

    Attributes:
        norm_adj: the normalised training adjacency (sparse CSR buffer, ``[U + I, U + I]``).
        _graph_cache: ``None`` or ``(key, user_vecs, item_vecs)``, the evaluation vectors.
        propagation_count: how many full propagations ran (training and evaluation), for tests and profiling.
    """

    base_name = "Graph"
    needs = frozenset({"train_graph"})
    option_help = dict(GRAPH_HELP)
    #: how the layer outputs E^(0..K) become the final vectors: mean | sum | concat | last
    layer_combine = "mean"

    # ---- hooks ----------------------------------------------------------------------------
    def _get_layer(self, k: int, in_dim: int, out_dim: int) -> nn.Module:
        raise ConfigError(f"{type(self).__name__} must define _get_layer(k, in_dim, out_dim).")

    def _layer_dims(self) -> List[int]:
        k = self.cfg("n_layers")
        if k is None or int(k) < 0:
            raise ConfigError(f"{type(self).__name__} needs n_layers >= 0, got {k!r}.")
        return [int(self.cfg("embed_dim"))] * (int(k) + 1)

    def _training_adjacency(self) -> torch.Tensor:
        return self.norm_adj

    def _after_layer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def combine_layers(self, outputs: List[torch.Tensor]) -> torch.Tensor:
        how = self.layer_combine
        if how == "mean":
            return torch.stack(outputs, 0).mean(0)
        if how == "sum":
            return torch.stack(outputs, 0).sum(0)
        if how == "concat":
            return torch.cat(outputs, -1)
        if how == "last":
            return outputs[-1]
        raise ConfigError(f"{type(self).__name__}.layer_combine must be one of {LAYER_COMBINES}, got {how!r}.")

    @property
    def output_dim(self) -> int:
        """Size of the final user / item vectors."""
        dims = self._layer_dims()
        if self.layer_combine == "concat":
            return sum(dims)
        if self.layer_combine in ("mean", "sum") and len(set(dims)) > 1:
            raise ConfigError(f"layer_combine {self.layer_combine!r} needs equal layer sizes, got {dims}.")
        return dims[-1]

    # ---- building ---------------------------------------------------------------------------
    def _get_score_func(self) -> nn.Module:
        from recstudio.model.scorer import get_score_func
        return get_score_func(self.cfg("score_func", "inner_product"), dim=self.output_dim)

    def build_blocks(self) -> None:
        from recstudio.model.module.graph import normalized_adjacency
        if self.sparse_embeddings:
            raise ConfigError(f"{self.model_name} propagates whole embedding tables (dense gradients); use "
                              "optimizer adam instead of sparse_adam.")
        if self.layer_combine not in LAYER_COMBINES:
            raise ConfigError(f"{type(self).__name__}.layer_combine must be one of {LAYER_COMBINES}, "
                              f"got {self.layer_combine!r}.")
        if float(self.cfg("reg_weight", 0.0) or 0.0) < 0:
            raise ConfigError(f"reg_weight must be >= 0, got {self.cfg('reg_weight')}.")
        super().build_blocks()
        meta = self.meta
        adj = normalized_adjacency(meta.train_matrix(), self_loops=bool(self.cfg("self_loops", False)))
        self.register_buffer("norm_adj", adj, persistent=False)
        node_mask = torch.ones(meta.num_users + meta.num_items)
        node_mask[0] = 0.0               # padding user
        node_mask[meta.num_users] = 0.0  # padding item
        self.register_buffer("_node_mask", node_mask, persistent=False)
        dims = self._layer_dims()
        self.gnn_layers = nn.ModuleList([self._get_layer(k, dims[k], dims[k + 1]) for k in range(len(dims) - 1)])
        self.output_dim  # checks the layer sizes against layer_combine
        self._graph_cache = None
        self._train_state: Optional[Dict] = None
        self.propagation_count = 0

    # ---- propagation ------------------------------------------------------------------------
    @property
    def user_table(self) -> torch.Tensor:
        """Ego user embeddings ``[num_users, d_0]``."""
        return self.query_encoder.embedding.weight

    @property
    def item_table(self) -> torch.Tensor:
        """Ego item embeddings ``[num_items, d_0]``."""
        return self.item_encoder.weight

    def propagate(self, adj: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the K layers over ``adj`` (default: the training adjacency in training mode, ``norm_adj``
        otherwise) and combine them: ``(user_vecs [U, D], item_vecs [I, D])``, padding rows zero. No cache."""
        if adj is None:
            adj = self._training_adjacency() if self.training else self.norm_adj
        self.propagation_count += 1
        x = torch.cat([self.user_table, self.item_table], 0)
        outputs = [x]
        for k, layer in enumerate(self.gnn_layers):
            x = self._after_layer(k, layer(adj, x))
            outputs.append(x)
        out = self.combine_layers(outputs) * self._node_mask[:, None]
        return out[:self.meta.num_users], out[self.meta.num_users:]

    def _cache_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters()) + (self.norm_adj.device,)

    def invalidate_graph_cache(self) -> None:
        """Drop the cached evaluation vectors (and the ANN index built from them)."""
        self._graph_cache = None
        self._ann_index = None

    def propagated(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user_vecs, item_vecs)``: during a training step the batch's propagation; in training mode
        otherwise a fresh one; in evaluation mode the cached vectors (computed without gradient once per
        parameter state)."""
        if self._train_state is not None:
            return self._train_state["vectors"]
        if self.training:
            return self.propagate()
        key = self._cache_key()
        if self._graph_cache is None or self._graph_cache[0] != key:
            self._ann_index = None
            with torch.no_grad():
                users, items = self.propagate(self.norm_adj)
            self._graph_cache = (key, users, items)
        return self._graph_cache[1], self._graph_cache[2]

    # ---- encoding (the tower interface) -----------------------------------------------------
    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.propagated()[0][batch[self.meta.uid_field]]

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        if self._train_state is not None:
            self._train_state["items"].append(ids)
        return self.propagated()[1][ids]

    def item_vectors(self) -> torch.Tensor:
        return self.propagated()[1]

    def user_vectors(self) -> torch.Tensor:
        """Vectors of every user id ``[num_users, D]`` (row 0 is padding)."""
        return self.propagated()[0]

    # ---- training ---------------------------------------------------------------------------
    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The ``loss`` key over vectors propagated once for this batch, plus ``reg_weight`` times the L2
        penalty of the ego embeddings of the batch's users and of every item it scored (positives and
        negatives)."""
        self._train_state = {"vectors": self.propagate(), "items": []}
        try:
            loss = super().training_loss(batch)
            items = self._train_state["items"]
            vectors = self._train_state["vectors"]
        finally:
            self._train_state = None
        reg = float(self.cfg("reg_weight", 0.0) or 0.0)
        if reg > 0:
            users = batch[self.meta.uid_field]
            loss = loss + reg * 0.5 * self._reg_penalty(users, items, vectors) / users.shape[0]
        return loss

    def _reg_penalty(self, users: torch.Tensor, items: List[torch.Tensor],
                     vectors: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Sum of squared L2 norms penalised for one batch: by default the ego (layer-0) embeddings of its
        users and of every item it scored; ``vectors`` are the batch's propagated ``(users, items)``."""
        penalty = self.user_table[users].pow(2).sum()
        for ids in items:
            penalty = penalty + self.item_table[ids].pow(2).sum()
        return penalty

    def optimizer_step(self, *args, **kwargs):
        out = super().optimizer_step(*args, **kwargs)
        self.invalidate_graph_cache()
        return out

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        self.invalidate_graph_cache()

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.invalidate_graph_cache()

    def load_state_dict(self, *args, **kwargs):
        self._graph_cache = None
        return super().load_state_dict(*args, **kwargs)

    def __deepcopy__(self, memo):
        """``copy.deepcopy`` (torch cannot deep-copy sparse CSR tensors): the adjacency buffers are cloned,
        everything else is deep-copied as usual, and the copy starts with an empty cache."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for buf in self._buffers.values():
            if buf is not None and buf.layout != torch.strided:
                memo[id(buf)] = buf.clone()
        cache = self.__dict__.get("_graph_cache")
        if cache is not None:
            memo[id(cache)] = None
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        new._ann_index = None
        return new
