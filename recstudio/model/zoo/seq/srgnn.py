"""SR-GNN: a gated graph neural network over each sequence's session graph, with an attention readout.

Also home of the session-graph blocks GC-SAN reuses: :func:`session_graph` (the graph of every row of a
padded batch, built at once in torch), :class:`GatedGraphCell` (the paper's gated GNN step),
:func:`all_prefixes` (one row per real position: the items up to it) and :class:`PrefixGraphRecommender`
(a sequential model whose encoder reads one whole row and reports its last position).
"""
import math
from typing import Dict, Tuple

import torch
from torch import nn

from recstudio.model.family.sequential import ITEM_SEQ, SEQ_HELP, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def session_graph(seq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The session graph of every row of a padded ``seq [N, L]`` (0 = padding), all rows at once.

    Nodes are the row's distinct ids in increasing order (padding, when present, is node 0 and has no
    edge); an edge ``u -> v`` joins consecutive real items (counted once however often it repeats).

    Returns:
        ``alias [N, L]`` (node of each position), ``nodes [N, L]`` (item id of each node, 0 beyond the
        row's node count), ``a_in [N, L, L]`` (row ``v``: ``v``'s predecessors, divided by ``v``'s in-degree)
        and ``a_out [N, L, L]`` (row ``u``: ``u``'s successors, divided by ``u``'s out-degree) - the
        paper's ``A^(in)`` and ``A^(out)``.

    Example:
        >>> alias, nodes, a_in, a_out = session_graph(torch.tensor([[0, 5, 7, 5, 9]]))
        >>> alias.tolist(), nodes.tolist()
        ([[0, 1, 2, 1, 3]], [[0, 5, 7, 9, 0]])
        >>> a_out[0, 1].tolist(), a_in[0, 1].tolist()
        ([0.0, 0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0])
    """
    N, L = seq.shape
    values, order = seq.sort(dim=1)
    new = torch.ones_like(values, dtype=torch.bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    node_of_sorted = new.long().cumsum(1) - 1
    alias = torch.empty_like(seq).scatter_(1, order, node_of_sorted)
    nodes = torch.zeros_like(seq).scatter_(1, node_of_sorted, values)
    real = (seq[:, :-1] != 0) & (seq[:, 1:] != 0)
    flat = alias[:, :-1] * L + alias[:, 1:]
    adj = torch.zeros(N, L * L, device=seq.device).scatter_add_(1, flat, real.float()).clamp_(max=1.0)
    adj = adj.view(N, L, L)  # adj[u, v] = 1 for an edge u -> v
    a_in = adj.transpose(1, 2) / adj.sum(1).clamp(min=1.0).unsqueeze(-1)
    a_out = adj / adj.sum(2).clamp(min=1.0).unsqueeze(-1)
    return alias, nodes, a_in, a_out


class GatedGraphCell(nn.Module):
    """One gated GNN step of SR-GNN (Eq. 1-5): ``a = [A_in (H W_in + b_in) + b_iah ; A_out (H W_out +
    b_out) + b_ioh]``, then a GRU update of the node states ``H [N, n, d]`` with input ``a``."""

    def __init__(self, dim: int):
        super().__init__()
        self.edge_in = nn.Linear(dim, dim)
        self.edge_out = nn.Linear(dim, dim)
        self.b_iah = nn.Parameter(torch.zeros(dim))
        self.b_ioh = nn.Parameter(torch.zeros(dim))
        self.w_ih = nn.Linear(2 * dim, 3 * dim)
        self.w_hh = nn.Linear(dim, 3 * dim)

    def forward(self, a_in: torch.Tensor, a_out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        msg = torch.cat([torch.bmm(a_in, self.edge_in(h)) + self.b_iah,
                         torch.bmm(a_out, self.edge_out(h)) + self.b_ioh], dim=-1)
        i_r, i_z, i_n = self.w_ih(msg).chunk(3, -1)
        h_r, h_z, h_n = self.w_hh(h).chunk(3, -1)
        reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        return (1 - update) * h + update * new


class SessionGNN(nn.Module):
    """``seq [N, L] -> [N, L, d]``: the item embeddings of each row's graph nodes after ``steps`` gated GNN
    steps, read back at the row's positions (zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, dim: int, steps: int):
        super().__init__()
        self.item_embedding = item_embedding
        self.cells = nn.ModuleList([GatedGraphCell(dim)])  # one cell, shared by the steps (as in the paper)
        self.steps = int(steps)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        alias, nodes, a_in, a_out = session_graph(seq)
        h = self.item_embedding(nodes)
        for _ in range(self.steps):
            h = self.cells[0](a_in, a_out, h)
        out = h.gather(1, alias.unsqueeze(-1).expand(-1, -1, h.size(-1)))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


def all_prefixes(seq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One left-padded row per real position of ``seq [B, L]``: the items up to and including it.

    Returns ``(prefixes [P, L], real [B, L])`` with ``P = real.sum()``, rows in the order of ``real.nonzero()``.

    Example:
        >>> p, real = all_prefixes(torch.tensor([[0, 3, 4, 5]]))
        >>> p.tolist()
        [[0, 0, 0, 3], [0, 0, 3, 4], [0, 3, 4, 5]]
    """
    real = seq != 0
    b, t = real.nonzero(as_tuple=True)
    L = seq.size(1)
    idx = t.unsqueeze(1) + torch.arange(L, device=seq.device) - (L - 1)  # [P, L]
    prefixes = seq[b.unsqueeze(1), idx.clamp(min=0)].masked_fill(idx < 0, 0)
    return prefixes, real


class _LastPositionQuery(nn.Module):
    """Query encoder: ``encoder(item_seq [B, L]) -> [B, d]`` on the latest ``max_len`` items (zeros for an
    empty row)."""

    def __init__(self, encoder: nn.Module, max_len: int):
        super().__init__()
        self.encoder, self.max_len = encoder, int(max_len)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        seq = batch[ITEM_SEQ][:, -self.max_len:]
        out = self.encoder(seq)
        return out.masked_fill(~(seq != 0).any(-1, keepdim=True), 0.0)


class PrefixGraphRecommender(SequentialRecommender):
    """A causal sequential model whose encoder maps a left-padded row ``[N, L]`` to one vector ``[N, d]`` for
    its last position (a session-graph model: the graph depends on the whole row, so one pass cannot serve
    every position). Training still predicts the next item at every position: :meth:`sequence_output` runs
    the encoder on every prefix (:func:`all_prefixes`, the prefix expansion of the paper's data) and puts
    the results back at their positions; evaluation runs it once per user."""

    seq_mode = "causal"

    def _get_query_encoder(self) -> nn.Module:
        return _LastPositionQuery(self._get_sequence_encoder(), self.cfg("max_seq_len"))

    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:
        """``[B, L, d]``: at each real position, the encoder's vector of the prefix ending there."""
        prefixes, real = all_prefixes(item_seq)
        vectors = self.query_encoder.encoder(prefixes)
        out = vectors.new_zeros(*item_seq.shape, vectors.size(-1))
        out[real] = vectors
        return out

    def position_output(self, item_seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The encoder on the prefixes ending at ``positions`` only (one per row with
        ``train_examples: prefix``)."""
        prefixes, real = all_prefixes(item_seq)
        return self.query_encoder.encoder(prefixes[positions[real]])


def uniform_init_(module: nn.Module, dim: int) -> None:
    """SR-GNN's initialisation: every parameter of ``module`` from U(-1/sqrt(d), 1/sqrt(d))."""
    bound = 1.0 / math.sqrt(dim)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class SRGNNEncoder(nn.Module):
    """``seq [N, L] -> [N, d]``: gated GNN over the row's session graph, then (Eq. 6-8)
    ``s_l = v_n`` (the last item's node vector), ``alpha_i = q^T sigmoid(W_1 v_n + W_2 v_i + c)``,
    ``s_g = sum_i alpha_i v_i`` over the row's positions, ``s_h = W_3 [s_l; s_g]``."""

    def __init__(self, item_embedding: nn.Module, dim: int, steps: int):
        super().__init__()
        self.gnn = SessionGNN(item_embedding, dim, steps)
        self.w_1 = nn.Linear(dim, dim)
        self.w_2 = nn.Linear(dim, dim)
        self.q = nn.Linear(dim, 1, bias=False)
        self.w_3 = nn.Linear(2 * dim, dim)
        for part in (self.gnn.cells, self.w_1, self.w_2, self.q, self.w_3):
            uniform_init_(part, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        v = self.gnn(seq)  # [N, L, d]
        last = v[:, -1]  # left padding: the latest item is in the last column
        alpha = self.q(torch.sigmoid(self.w_1(last).unsqueeze(1) + self.w_2(v)))  # [N, L, 1]
        s_g = (alpha * v).masked_fill((seq == 0).unsqueeze(-1), 0.0).sum(1)
        return self.w_3(torch.cat([last, s_g], dim=-1))


@register_model("SRGNN", category="seq",
                paper="S. Wu, Y. Tang, Y. Zhu, L. Wang, X. Xie, T. Tan. Session-based Recommendation with Graph "
                      "Neural Networks. AAAI 2019.")
class SRGNN(PrefixGraphRecommender):
    """SR-GNN (Wu et al., AAAI 2019).

    Each sequence ``s = (v_1, ..., v_n)`` becomes a directed *session graph*: its distinct items are the
    nodes, consecutive items ``v_i -> v_{i+1}`` the edges; ``A^(in)`` and ``A^(out)`` are the in- and
    out-adjacency matrices normalised by the node's degree (:func:`session_graph`, built for the whole batch
    at once: per-row unique by a sort, edges by ``scatter_add``). ``step`` gated GNN steps (Eq. 1-5,
    :class:`GatedGraphCell`, one cell shared by the steps) update the node vectors starting from the item
    embeddings. The session vector is ``s_h = W_3 [s_l; s_g]`` with the local ``s_l`` (the last item's node
    vector) and the global ``s_g = sum_i alpha_i v_i``, ``alpha_i = q^T sigmoid(W_1 v_n + W_2 v_i + c)``
    (Eq. 6-8); item ``i`` scores ``s_h . e_i`` with the shared item table (Eq. 9; ANN works).

    Training: every position ``t`` of a user's window predicts item ``t + 1`` from the graph of the prefix
    ``v_1..v_t`` (the paper's prefix expansion; :class:`PrefixGraphRecommender` builds all prefixes of
    the batch at once, so a batch costs ``B * L`` graph passes). Default loss ``softmax`` (the paper's
    cross-entropy over all items); the base's other losses and samplers work too.

    Departures: users' whole histories (the latest ``max_seq_len`` items, one window per user as for every
    model on the sequential base) replace anonymous sessions; the item table is Xavier-initialised (the
    paper / RecBole: U(-1/sqrt(d), 1/sqrt(d)) for every parameter, which the GNN and readout layers keep);
    L2 regularisation is left to ``weight_decay`` (0 by default, as in RecBole; the paper: 1e-5) and the
    paper's lr decay (x0.1 every 3 epochs) is not applied; evaluation ranks all items.

    Args (config keys): ``embed_dim``, ``step``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``srgnn.yaml`` (RecBole's: d 64,
    1 step, CE, Adam 1e-3, max length 50).

    Example:
        >>> model, metrics = recstudio.run(model="SRGNN", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {**SEQ_HELP, "step": "gated GNN steps over the session graph (paper / RecBole: 1)"}

    def _get_sequence_encoder(self) -> nn.Module:
        if int(self.cfg("step")) < 1:
            raise ConfigError(f"SRGNN step must be >= 1, got {self.cfg('step')}.")
        return SRGNNEncoder(self.item_encoder, self.cfg("embed_dim"), int(self.cfg("step")))


__all__ = ["session_graph", "GatedGraphCell", "SessionGNN", "all_prefixes", "PrefixGraphRecommender",
           "uniform_init_", "SRGNN"]
