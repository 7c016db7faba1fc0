"""KGAT: knowledge graph attention network over the collaborative knowledge graph."""
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KG_HELP, KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import TransR
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

AGGREGATORS = ("bi", "gcn", "graphsage")


class _SpMM(torch.autograd.Function):
    """``A x`` for a constant sparse ``A`` whose transpose is given (the backward's ``A^T g`` then needs no
    transposing / re-sorting of ``A`` at every step)."""

    @staticmethod
    def forward(ctx, adj, adj_t, x):
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def spmm(adjacency: Tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``A x`` with ``adjacency = (A, A^T)`` (sparse CSR or coalesced COO, no gradient)."""
    return _SpMM.apply(adjacency[0], adjacency[1], x)


def csr_pair(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: Tuple[int, int],
             t_order: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(A, A^T)`` as CSR matrices from row-major sorted entries ``(rows, cols, values)``; ``t_order`` sorts
    the entries column-major (the transpose's row-major order)."""
    def crow(r, n):
        return torch.cat([r.new_zeros(1), torch.cumsum(torch.bincount(r, minlength=n), 0)])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        adj = torch.sparse_csr_tensor(crow(rows, shape[0]), cols, values, shape, check_invariants=False)
        adj_t = torch.sparse_csr_tensor(crow(cols[t_order], shape[1]), rows[t_order], values[t_order],
                                        (shape[1], shape[0]), check_invariants=False)
    return adj, adj_t


class KGATAggregator(nn.Module):
    """One propagation layer: ``side = A e`` (attention-weighted sum over a node's out-neighbours), then
    ``bi``: ``LeakyReLU(W1 (e + side)) + LeakyReLU(W2 (e * side))`` (the paper's bi-interaction),
    ``gcn``: ``LeakyReLU(W (e + side))`` or ``graphsage``: ``LeakyReLU(W [e ; side])``; message dropout last."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, kind: str):
        super().__init__()
        if kind not in AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {AGGREGATORS}, got {kind!r}.")
        self.kind = kind
        self.W1 = nn.Linear(in_dim * (2 if kind == "graphsage" else 1), out_dim)
        self.W2 = nn.Linear(in_dim, out_dim) if kind == "bi" else None
        self.act = nn.LeakyReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, ego: torch.Tensor, adjacency: Tuple[torch.Tensor, torch.Tensor],
                source: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``ego`` ``[n, d]``: the nodes this layer computes; ``adjacency`` their rows of the attention matrix
        over the rows of ``source`` (default ``ego``: a square layer over the same nodes)."""
        side = spmm(adjacency, ego if source is None else source)
        if self.kind == "bi":
            out = self.act(self.W1(ego + side)) + self.act(self.W2(ego * side))
        elif self.kind == "gcn":
            out = self.act(self.W1(ego + side))
        else:
            out = self.act(self.W1(torch.cat([ego, side], dim=-1)))
        return self.dropout(out)


def row_softmax(scores: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Softmax of edge ``scores`` ``[E]`` within each row (edges sharing ``rows`` ``[E]``)."""
    peak = torch.full((num_rows,), float("-inf"), dtype=scores.dtype, device=scores.device)
    peak = peak.scatter_reduce(0, rows, scores, reduce="amax", include_self=True)
    z = torch.exp(scores - peak[rows])
    total = torch.zeros(num_rows, dtype=scores.dtype, device=scores.device).index_add_(0, rows, z)
    return z / total[rows]


@register_model("KGAT", category="kg",
                paper="X. Wang, X. He, Y. Cao, M. Liu, T.-S. Chua. KGAT: Knowledge Graph Attention Network for "
                      "Recommendation. KDD 2019.")
class KGAT(KnowledgeRecommender):
    """Users, items and entities are nodes of one *collaborative knowledge graph* (CKG): the knowledge graph's
    triples plus every training interaction as an edge user -> item and item -> user of an extra relation.
    Node embeddings are propagated over the CKG by ``len(layers)`` attentive layers: a node aggregates its
    out-neighbours weighted by ``pi(h, r, t) = (W_r e_t)^T tanh(W_r e_h + e_r)`` (softmax over the node's
    edges) with the bi-interaction aggregator; a user's / item's vector is the concatenation of its ego
    embedding and every layer's L2-normalised output, and ``score(u, i)`` is their inner product
    (Wang et al., KDD 2019).

    Training alternates (``kg_schedule: alternating``): per batch, an Adam step on the BPR loss of the
    propagated vectors (+ ``reg_weight`` times their norm), then one on the TransR loss of a batch of KG
    triples on the ego embeddings (``-ln sigma(d(h,r,t') - d(h,r,t))``, squared distance, corrupted tail
    ``t'`` uniform over the entities, + ``kg_reg_weight`` times the projected vectors' norm). After the
    epoch's last batch the attention of every CKG edge is recomputed from the current embeddings (no
    gradient: it is a persistent buffer, so a checkpoint keeps the attention it was evaluated with). The
    attention starts at ``1 / |N_r(h)|`` per relation (RecBole's initial matrix).

    An item linked to an entity *is* that entity's node (KG knowledge reaches it directly); an item without an
    entity has a node of its own with only interaction edges; items linked to the same entity share its node.
    Evaluation propagates once and caches the vectors (invalidated by any in-place weight or attention change).

    Speed (exact, the same maths): the attention matrix is held as CSR matrices (with their transposes for the
    backward), built once per attention refresh; every training batch propagates once (as RecBole and the
    official code do), but only over the nodes the scored users / items depend on (the last layer computes
    only the users' and items' nodes, the normalised layer outputs are taken only there; see
    :meth:`_layer_plan`); the attention refresh projects every edge with one matrix product per relation.
    On ml-100k-kg, one thread: about 8 s of CPU per training epoch (12 s before).

    Defaults and departures: the paper's layers [64, 32, 16] (RecBole 1.2.1's KGAT.yaml has one layer, [64]),
    message dropout 0.1 and bi-interaction aggregator; RecBole's embedding / kg embedding 64, reg weight 1e-5
    on both losses (the official code's ``regs [1e-5, 1e-5]``), LeakyReLU slope 0.01, Adam 1e-3 (the paper's
    grid; the official code's example runs 1e-4 after a BPR-MF pre-training) and batch 2048, KG batch 2048 (the
    official code's; RecBole's KG batch is the interaction batch, 2048). The official code and RecBole
    alternate a whole CF epoch with a whole KG epoch (one pass over the triples without replacement; the
    official code with two Adam optimizers, RecBole with one); here the two steps interleave batch by batch
    with one optimizer: as many KG batches of ``kg_batch_size`` triples, drawn with replacement, as
    interaction batches (40 of 2048 on ml-100k-kg, 0.9 of a pass over its 91,631 triples); ``kg_schedule: epochs``
    runs theirs (a CF epoch, then every triple once; on ml-100k-kg's linked items with RecBole's settings it
    tested 0.2646 ndcg@10 against 0.2705 interleaved, RecBole 0.2824; see ``kgat.yaml``). The KG negatives
    avoid only the true tail (``kg_negatives: head_tails`` avoids every tail of the head, RecBole's KGSampler:
    it tested 0.2587 against 0.2705, so it is not the default). Each triple has its own attention (a (h, t) pair
    linked by two relations sums both; RecBole's sparse softmax sums their scores instead). KG edges are used
    in the direction given (RecBole's ``kg_reverse_r: False``; ml-100k-kg already holds each relation's
    inverse).

    Args (config keys): ``embed_dim``, ``kg_embed_dim``, ``layers``, ``mess_dropout``, ``aggregator``,
    ``kg_weight``, ``kg_batch_size``, ``kg_schedule``, ``kg_loss``, ``kg_margin``, ``reg_weight``,
    ``kg_reg_weight``, ``loss``, ``sampler``, ``num_neg``, ``score_func``; see ``kgat.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="KGAT", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"kg", "train_graph"})
    option_help = {
        **KG_HELP,
        "layers": "output sizes of the propagation layers (their number is the depth)",
        "mess_dropout": "message dropout after each propagation layer",
        "aggregator": "aggregator of a node and its neighbourhood: bi (bi-interaction), gcn, graphsage",
    }

    # ---- graph --------------------------------------------------------------------------------
    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        U, E, I = meta.num_users, meta.num_entities, meta.num_items
        self.num_nodes = U + E + I
        item_entity = meta.item_entity.long()
        item_node = torch.where(item_entity > 0, U + item_entity, U + E + torch.arange(I))
        self.register_buffer("item_node", item_node, persistent=False)
        indptr, indices = meta.train_indptr.long(), meta.train_indices.long()
        users = torch.repeat_interleave(torch.arange(U), indptr[1:] - indptr[:-1])
        items = item_node[indices]
        self.ui_relation = meta.num_relations  # one relation id after the KG's
        src = torch.cat([users, items, U + meta.kg_head.long()])
        dst = torch.cat([items, users, U + meta.kg_tail.long()])
        rel = torch.cat([torch.full((2 * len(users),), self.ui_relation, dtype=torch.long), meta.kg_relation.long()])
        self.register_buffer("edge_src", src, persistent=False)
        self.register_buffer("edge_dst", dst, persistent=False)
        self.register_buffer("edge_rel", rel, persistent=False)
        # initial attention: 1 / |N_r(h)| (each relation's out-edges of a node row-normalised)
        key = src * (self.ui_relation + 1) + rel
        _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
        self.register_buffer("attention", 1.0 / counts[inverse].float())
        # the attention matrix: edges merged per (src, dst) pair (their weights summed), row-major = coalesced
        pair, edge_to_adj = torch.unique(src * self.num_nodes + dst, return_inverse=True)
        self.register_buffer("adj_indices", torch.stack([pair // self.num_nodes, pair % self.num_nodes]),
                             persistent=False)
        self.register_buffer("edge_to_adj", edge_to_adj, persistent=False)
        self._adj_cache: Optional[Tuple] = None
        self._plan: Optional[Tuple] = None
        self._eval_cache: Optional[Tuple] = None
        self._step_vectors: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def _get_query_encoder(self) -> nn.Module:
        return nn.Identity()  # the user vectors come from propagation (encode_query)

    def _get_item_encoder(self) -> nn.Module:
        return nn.Identity()  # the item vectors come from propagation (encode_items)

    def build_blocks(self) -> None:
        super().build_blocks()
        d = int(self.cfg("embed_dim"))
        layers = [int(x) for x in self.cfg("layers")]
        if not layers or min(layers) < 1:
            raise ConfigError(f"layers must be a non-empty list of positive sizes, got {self.cfg('layers')!r}.")
        self.node_embedding = IdEmbedding(self.num_nodes, d, padding_idx=None, init="xavier")
        self.kg_scorer = TransR(self.ui_relation + 1, d, self.cfg("kg_embed_dim"), squared=True)
        dims = [d] + layers
        self.aggregators = nn.ModuleList(KGATAggregator(a, b, float(self.cfg("mess_dropout")), self.cfg("aggregator"))
                                         for a, b in zip(dims[:-1], dims[1:]))

    # ---- propagation --------------------------------------------------------------------------
    def _layer_plan(self) -> Tuple[List[Dict[str, torch.Tensor]], List[Optional[torch.Tensor]], torch.Tensor]:
        """Which nodes each layer computes (built once per device; exact, not an approximation). Only the
        users' and items' vectors are scored, so the last layer computes just their nodes ``S``, layer ``k``
        the nodes layer ``k + 1`` reads (its own and their out-neighbours), layer 0 is every ego embedding; the
        L2-normalised layer outputs are only taken at ``S``; a layer that needs at least 80% of its input's nodes
        computes all of them (cheaper than gathering). Returns ``(steps, out_index, item_rows)``: per
        layer its entries of the attention matrix (``sel``), their local rows / columns, the transpose's order
        and ``keep`` (where its own nodes sit in its input; None: all of it); per layer 0..L the rows of ``S``
        in its output (None: all of it); the rows of the items in ``S``."""
        device = self.adj_indices.device
        key = (device, torch.is_inference_mode_enabled())  # inference-mode tensors cannot enter autograd
        if self._plan is not None and self._plan[0] == key:
            return self._plan[1]
        rows, cols = self.adj_indices
        N, L, U = self.num_nodes, len(self.aggregators), self.meta.num_users
        need = torch.zeros(N, dtype=torch.bool, device=device)
        need[:U] = True
        need[self.item_node] = True
        masks: List[torch.Tensor] = [need] * (L + 1)
        for k in range(L, 0, -1):
            masks[k] = need
            need = need.clone()
            need[cols[masks[k][rows]]] = True
        masks[0] = torch.ones(N, dtype=torch.bool, device=device)
        for k in range(1, L):  # a layer needing most of its input computes all of it (no gather / scatter)
            if int(masks[k].sum()) >= 0.8 * int(masks[k - 1].sum()):
                masks[k] = masks[k - 1]
        targets = masks[L].nonzero().flatten()  # S: users first (node ids 0..U-1), then the items' nodes
        steps, out_index = [], [targets]
        prev_pos, n_in = None, N  # layer 1 reads every node (the ego embeddings)
        for k in range(1, L + 1):
            nodes = masks[k].nonzero().flatten()
            pos = torch.full((N,), -1, dtype=torch.long, device=device)
            pos[nodes] = torch.arange(len(nodes), device=device)
            sel = masks[k][rows].nonzero().flatten()
            r = pos[rows[sel]]
            c = cols[sel] if prev_pos is None else prev_pos[cols[sel]]
            keep = nodes if prev_pos is None else prev_pos[nodes]
            steps.append({"sel": sel, "rows": r, "cols": c, "shape": (len(nodes), n_in),
                          "t_order": torch.argsort(c * len(nodes) + r),
                          "keep": None if len(nodes) == n_in else keep})
            out_index.append(None if len(nodes) == len(targets) else pos[targets])
            prev_pos, n_in = pos, len(nodes)
        item_rows = prev_pos[self.item_node]
        self._plan = (key, (steps, out_index, item_rows))
        return self._plan[1]

    def adjacency(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(A_k, A_k^T)``: the rows of the attention matrix that layer computes (row h holds
        pi(h, r, t) of h's edges, edges of one (h, t) pair summed) over its input's nodes, as CSR matrices;
        built once per attention refresh (cached on the attention's version)."""
        key = (self.attention._version, self.attention.data_ptr(), self.attention.device,
               torch.is_inference_mode_enabled())  # a tensor made in inference mode cannot enter autograd
        if self._adj_cache is None or self._adj_cache[0] != key:
            values = torch.zeros(self.adj_indices.shape[1], dtype=self.attention.dtype, device=self.attention.device)
            values.index_add_(0, self.edge_to_adj, self.attention)
            pairs = [csr_pair(step["rows"], step["cols"], values[step["sel"]], step["shape"], step["t_order"])
                     for step in self._layer_plan()[0]]
            self._adj_cache = (key, pairs)
        return self._adj_cache[1]

    def _propagate(self) -> Tuple[torch.Tensor, torch.Tensor]:
        steps, out_index, item_rows = self._layer_plan()
        ego = self.node_embedding.weight
        outs: List[torch.Tensor] = [ego[out_index[0]]]
        x = ego
        for layer, step, adj, index in zip(self.aggregators, steps, self.adjacency(), out_index[1:]):
            x = layer(x if step["keep"] is None else x[step["keep"]], adj, source=x)
            outs.append(F.normalize(x if index is None else x[index], p=2, dim=1))
        allv = torch.cat(outs, dim=1)  # the rows of S
        return allv[:self.meta.num_users], allv[item_rows]

    def _cache_key(self):
        return ((self.attention._version, self.attention.data_ptr(), self.attention.device)
                + tuple((p._version, p.data_ptr()) for p in self.parameters()))

    def propagated(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user vectors [num_users, D], item vectors [num_items, D])``: the step's in training, else computed
        once and cached until a weight or the attention changes."""
        if self._step_vectors is not None:
            return self._step_vectors
        if self.training or torch.is_grad_enabled():
            return self._propagate()
        key = self._cache_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, *self._propagate())
        return self._eval_cache[1], self._eval_cache[2]

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.propagated()[0][batch[self.meta.uid_field]]

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        return self.propagated()[1][ids]

    def item_vectors(self) -> torch.Tensor:
        return self.propagated()[1]

    # ---- losses -------------------------------------------------------------------------------
    def rec_loss(self, batch):
        self._step_vectors = self._propagate()  # one propagation serves the batch's users and items
        try:
            return super().rec_loss(batch)
        finally:
            self._step_vectors = None

    def _entity_nodes(self, entities: torch.Tensor) -> torch.Tensor:
        return self.node_embedding(entities + self.meta.num_users)

    def kg_loss(self, kg_batch):
        return self.kg_triple_loss(self.kg_scorer, self._entity_nodes, kg_batch)

    # ---- attention ----------------------------------------------------------------------------
    @torch.no_grad()
    def refresh_attention(self) -> None:
        """Recompute every CKG edge's attention ``softmax_h((W_r e_t)^T tanh(W_r e_h + e_r))``."""
        ego = self.node_embedding.weight
        h = self.kg_scorer.project(ego[self.edge_src], self.edge_rel)  # grouped by relation, one matmul each
        t = self.kg_scorer.project(ego[self.edge_dst], self.edge_rel)
        scores = (t * torch.tanh(h + self.kg_scorer.relation.weight[self.edge_rel])).sum(-1)
        self.attention.copy_(row_softmax(scores, self.edge_src, self.num_nodes))
        self._refreshed = True

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._refreshed = False

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)  # kg_schedule 'epochs': the KG epoch runs there
        if self._trainer is not None and batch_idx + 1 == self.trainer.num_training_batches:
            self.refresh_attention()  # after the epoch's last CF + KG step, before validation (the paper)

    def on_train_epoch_end(self):
        if not getattr(self, "_refreshed", True):
            self.refresh_attention()
        super().on_train_epoch_end()

    def load_state_dict(self, *args, **kwargs):
        self._eval_cache = self._adj_cache = self._plan = None
        return super().load_state_dict(*args, **kwargs)
