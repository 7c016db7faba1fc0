"""MHCN: multi-channel hypergraph convolution over social motifs, with hierarchical mutual-information
maximisation as a self-supervised task."""
from typing import Dict, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.social import PropagatedTables, SOCIAL_HELP, SocialRecommender, row_normalized
from recstudio.model.module.graph import to_torch_csr
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.eliminate_zeros()
    return m


def triangle_motifs(social: sp.spmatrix) -> Dict[str, sp.csr_matrix]:
    """Motif-induced adjacency matrices ``A1 .. A7`` of the seven triangle motifs ``M1 .. M7`` of a directed
    network (Benson, Gleich, Leskovec, Science 2016; MHCN's Table 1).

    ``A_k[u, v]`` is the number of instances of ``M_k`` that contain both ``u`` and ``v``. With ``S`` the 0/1
    adjacency (``S[u, v] = 1``: ``u`` links to ``v``; self-links dropped), ``B = S * S^T`` the reciprocated
    links and ``U = S - B`` the one-way ones (``*`` elementwise, ``.`` the matrix product):

    - ``A1 = C + C^T``, ``C = (U.U) * U^T``                                    (directed 3-cycle)
    - ``A2 = C + C^T``, ``C = (B.U) * U^T + (U.B) * U^T + (U.U) * B``
    - ``A3 = C + C^T``, ``C = (B.B) * U + (B.U) * B + (U.B) * B``
    - ``A4 = (B.B) * B``                                                       (all three pairs mutual)
    - ``A5 = C + C^T``, ``C = (U.U) * U + (U.U^T) * U + (U^T.U) * U``          (transitive, no mutual pair)
    - ``A6 = (U.B) * U + (B.U^T) * U^T + (U^T.U) * B``
    - ``A7 = (U^T.B) * U^T + (B.U) * U + (U.U^T) * B``

    Every triangle of the undirected network (three users pairwise linked in some direction) is an instance
    of exactly one of them, so ``A1 + ... + A7 = (A.A) * A`` with ``A`` the undirected 0/1 adjacency: the
    number of common neighbours of two linked users.

    Example:
        >>> S = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))    # 0 -> 1 -> 2 -> 0
        >>> triangle_motifs(S)["A1"].toarray()
        array([[0., 1., 1.],
               [1., 0., 1.],
               [1., 1., 0.]])
    """
    S = _binary(social)
    S.setdiag(0)
    S.eliminate_zeros()
    B = S.multiply(S.T).tocsr()
    U = (S - B).tocsr()
    Ut = U.T.tocsr()
    C1 = (U @ U).multiply(Ut)
    C2 = (B @ U).multiply(Ut) + (U @ B).multiply(Ut) + (U @ U).multiply(B)
    C3 = (B @ B).multiply(U) + (B @ U).multiply(B) + (U @ B).multiply(B)
    C5 = (U @ U).multiply(U) + (U @ Ut).multiply(U) + (Ut @ U).multiply(U)
    out = {
        "A1": C1 + C1.T, "A2": C2 + C2.T, "A3": C3 + C3.T, "A4": (B @ B).multiply(B), "A5": C5 + C5.T,
        "A6": (U @ B).multiply(U) + (B @ Ut).multiply(Ut) + (Ut @ U).multiply(B),
        "A7": (Ut @ B).multiply(Ut) + (B @ U).multiply(U) + (U @ Ut).multiply(B),
    }
    return {k: sp.csr_matrix(v) for k, v in out.items()}


def motif_channels(social: sp.spmatrix, interactions: sp.spmatrix, purchase_min_common: int = 2
                   ) -> Tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """MHCN's three channel incidence matrices ``(H_s, H_j, H_p)``, ``num_users x num_users``, unnormalised.

    - social ``H_s = A1 + ... + A7`` (:func:`triangle_motifs`): the social triangles two users share;
    - joint ``H_j = A8 + A9``, ``A8 = (Y.Y^T) * B``, ``A9 = (Y.Y^T) * U + ((Y.Y^T) * U)^T``: for two linked
      users, the number of items both interacted with (M8: a mutual link, M9: a one-way link);
    - purchase ``H_p = A10 = Y.Y^T - A8 - A9``: for two users with no link, their common items (M10), kept
      where they share at least ``purchase_min_common`` items.

    ``Y`` is the 0/1 user x item matrix; the diagonal of ``Y.Y^T`` (a user with itself) is not a motif and is
    left out.
    """
    if purchase_min_common < 1:
        raise ConfigError(f"purchase_min_common must be >= 1, got {purchase_min_common}.")
    motifs = triangle_motifs(social)
    S = _binary(social)
    S.setdiag(0)
    S.eliminate_zeros()
    B = S.multiply(S.T).tocsr()
    U = (S - B).tocsr()
    Y = _binary(interactions)
    YY = (Y @ Y.T).tocsr()
    YY.setdiag(0)
    YY.eliminate_zeros()
    A8 = YY.multiply(B)
    A9 = YY.multiply(U)
    A9 = A9 + A9.T
    H_s = sum(motifs[f"A{k}"] for k in range(1, 8))
    H_j = sp.csr_matrix(A8 + A9)
    H_p = sp.csr_matrix(YY - A8 - A9)
    H_p.eliminate_zeros()
    H_p = sp.csr_matrix(H_p.multiply(H_p >= purchase_min_common))
    for m in (H_s, H_j, H_p):
        m.eliminate_zeros()
    return sp.csr_matrix(H_s), H_j, H_p


class _CsrMM(torch.autograd.Function):
    """``adj @ x`` with ``adj`` a CSR tensor and its transpose ``adj_t`` (also CSR) for the gradient of ``x``:
    on CPU a CSR product is several times faster than ``torch.sparse.mm`` on COO, forward and backward."""

    @staticmethod
    def forward(ctx, adj, adj_t, x):
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad):
        return None, None, ctx.adj_t @ grad


def csr_mm(adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x``, differentiable in ``x`` (``adj_t``: the CSR transpose of ``adj``)."""
    if x.requires_grad and torch.is_grad_enabled():
        return _CsrMM.apply(adj, adj_t, x)
    return adj @ x


class SelfGating(nn.Module):
    """``e * sigmoid(e W + b)`` (MHCN's self-gating unit, eq. 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return e * torch.sigmoid(self.linear(e))


class ChannelAttention(nn.Module):
    """``sum_c alpha_c e_c`` with ``alpha = softmax_c(a . (W e_c))`` per user (MHCN eq. 4)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mat = nn.Parameter(torch.empty(dim, dim))
        self.vec = nn.Parameter(torch.empty(1, dim))
        nn.init.xavier_uniform_(self.mat)
        nn.init.xavier_uniform_(self.vec)

    def forward(self, *channels: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(channels, 0)                                   # [C, N, d]
        alpha = torch.softmax((stacked @ self.mat * self.vec).sum(-1), 0)     # [C, N]
        return (alpha.unsqueeze(-1) * stacked).sum(0)


@register_model("MHCN", category="social",
                paper="J. Yu, H. Yin, J. Li, Q. Wang, N. Q. V. Hung, X. Zhang. Self-Supervised Multi-Channel "
                      "Hypergraph Convolutional Network for Social Recommendation. WWW 2021.")
class MHCN(PropagatedTables, SocialRecommender):
    """MHCN (Yu et al., WWW 2021). Ten motifs of the social network and the interactions (M1-M7: social
    triangles; M8-M9: two linked users who share an item; M10: two unlinked users who share items) give three
    hypergraph channels, ``H_s`` (social), ``H_j`` (joint) and ``H_p`` (purchase), each row-normalised
    (:func:`motif_channels`; users of an empty row get zero from that channel). From the id embeddings
    ``P^0, Q^0``:

    - each channel ``c`` starts from a self-gated copy ``P_c^0 = P^0 * sigmoid(P^0 W_c + b_c)``, and a fourth
      gate gives the "simple" channel ``P_r^0`` (users seen through their items);
    - layer ``k``: ``P_c^{k+1} = H_c P_c^k`` (``c = s, j, p``), ``Q^{k+1} = R^T M^k`` with ``M^k = att(P_s^k,
      P_j^k, P_p^k) + P_r^k / 2`` and ``P_r^{k+1} = R Q^k``; ``R = D_u^-1/2 Y D_i^-1/2``;
    - read-out: ``P_c = P_c^0 + sum_k norm(P_c^k)`` (every layer's output L2-normalised), ``Q`` likewise,
      ``P = att(P_s, P_j, P_p) + P_r / 2``; ``att`` is the channel attention ``softmax_c(a . W P_c)``;
    - ``score(u, i) = p_u . q_i``, trained with BPR (one uniform negative) plus ``ssl_weight`` times the
      self-supervised loss plus ``reg_weight`` times RecBole's EmbLoss on the batch's id embeddings.

    The self-supervised task, per channel ``c``: the user vectors ``z = P * sigmoid(P W'_c + b'_c)`` (a second
    gate), their hyperedge (sub-hypergraph) vectors ``g = H_c z`` and the graph vector ``m = mean_u g_u``;
    with ``f(x, y) = x . y``, ``row(.)`` a row permutation and ``rowcol(.)`` a row and column permutation,

    ``L_c = sum_u [-ln s(f(z_u, g_u) - f(row(z)_u, g_u)) - ln s(f(row(z)_u, g_u) - f(z_u, rowcol(g)_u))
    - ln s(f(g_u, m) - f(rowcol(g)_u, m))]``

    (local user / hyperedge, then hyperedge / graph, mutual-information ranking), summed over the three
    channels and over every user. The permutations are drawn by a generator seeded by ``seed`` (saved in
    checkpoints). Vectors of every user and item are propagated once per training step and once per
    evaluation.

    Departures from the paper: motif adjacency is built as in the authors' code (QRec), including its
    purchase-channel threshold (``H_p`` keeps pairs with at least ``purchase_min_common`` = 2 common items) but
    without the diagonal of ``Y Y^T`` (a user paired with itself is no motif; the code keeps it in ``H_p``).
    Losses as RecBole-GNN's MHCN: mean BPR over the batch, the self-supervised loss summed over all users
    (so ``ssl_weight`` 1e-5 here is the paper's 0.01 over a summed BPR of about 1000-2000 rows), L2 on the
    batch's id embeddings (the code: on the propagated vectors, and 1e-3 L2 on the gates and attention,
    left out here). Xavier initialisation (attention included); defaults RecBole-GNN's (embedding 64,
    2 layers, ssl 1e-5, reg 1e-5, Adam 1e-3, batch 2048), the network read as directed (the motifs
    distinguish one-way from mutual links; lastfm-2k lists every friendship both ways).

    Args (config keys): ``embed_dim``, ``n_layers``, ``ssl_weight``, ``purchase_min_common``,
    ``social_symmetric``, ``reg_weight``, ``loss``, ``sampler``, ``num_neg``, ``score_func``; defaults in
    ``mhcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="MHCN", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    option_help = {**SOCIAL_HELP,
                   "n_layers": "number of hypergraph / graph convolution layers",
                   "ssl_weight": "weight of the self-supervised loss (summed over every user and the 3 channels)",
                   "purchase_min_common": "the purchase channel links two unlinked users with at least this many "
                                          "common training items"}

    def build_blocks(self) -> None:
        if int(self.cfg("n_layers")) < 1:
            raise ConfigError(f"MHCN n_layers must be >= 1, got {self.cfg('n_layers')}.")
        if float(self.cfg("ssl_weight")) < 0:
            raise ConfigError(f"MHCN ssl_weight must be >= 0, got {self.cfg('ssl_weight')}.")
        super().build_blocks()
        d = int(self.cfg("embed_dim"))
        social = self.meta.social_matrix(symmetric=bool(self.cfg("social_symmetric")))
        train = self.meta.train_matrix()
        channels = motif_channels(social, train, int(self.cfg("purchase_min_common")))
        for name, h in zip(("H_s", "H_j", "H_p"), channels):
            h = row_normalized(h)
            self.register_buffer(name, to_torch_csr(h), persistent=False)
            self.register_buffer(f"{name}_t", to_torch_csr(h.T), persistent=False)
        y = sp.csr_matrix(train, dtype=np.float64)
        y.data[:] = 1.0
        du, di = np.asarray(y.sum(1)).ravel(), np.asarray(y.sum(0)).ravel()
        inv_u = np.divide(1.0, np.sqrt(du), out=np.zeros_like(du), where=du > 0)
        inv_i = np.divide(1.0, np.sqrt(di), out=np.zeros_like(di), where=di > 0)
        r = sp.diags(inv_u) @ y @ sp.diags(inv_i)
        self.register_buffer("R", to_torch_csr(r), persistent=False)
        self.register_buffer("R_t", to_torch_csr(r.T), persistent=False)
        self.gates = nn.ModuleList(SelfGating(d) for _ in range(4))      # channels s, j, p and the simple one
        self.ssl_gates = nn.ModuleList(SelfGating(d) for _ in range(3))
        self.attention = ChannelAttention(d)
        self._ssl_generator = torch.Generator().manual_seed(int(self.config["seed"]))

    @property
    def channel_adj(self):
        """The row-normalised ``(H_s, H_j, H_p)`` (CSR tensors)."""
        return (self.H_s, self.H_j, self.H_p)

    @property
    def _channel_pairs(self):
        return ((self.H_s, self.H_s_t), (self.H_j, self.H_j_t), (self.H_p, self.H_p_t))

    # ---- propagation --------------------------------------------------------------------------
    def propagate(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(users [num_users, d], items [num_items, d])``."""
        p0, q = self.query_encoder.embedding.weight, self.item_encoder.weight
        chans = [self.gates[c](p0) for c in range(3)]
        simple = self.gates[3](p0)
        sums = list(chans)
        simple_sum, item_sum = simple, q
        for _ in range(int(self.cfg("n_layers"))):
            mixed = self.attention(*chans) + simple / 2
            chans = [csr_mm(h, ht, c) for (h, ht), c in zip(self._channel_pairs, chans)]
            sums = [s + F.normalize(c, dim=1) for s, c in zip(sums, chans)]
            q_next = csr_mm(self.R_t, self.R, mixed)
            simple = csr_mm(self.R, self.R_t, q)
            simple_sum = simple_sum + F.normalize(simple, dim=1)
            item_sum = item_sum + F.normalize(q_next, dim=1)
            q = q_next
        return self.attention(*sums) + simple_sum / 2, item_sum

    # ---- self-supervision ---------------------------------------------------------------------
    def _perm(self, n: int, device) -> torch.Tensor:
        return torch.randperm(n, generator=self._ssl_generator).to(device)

    def _rowcol(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self._perm(x.shape[1], x.device)][self._perm(x.shape[0], x.device)]

    def hierarchical_mim(self, z: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor) -> torch.Tensor:
        """The local + global mutual-information ranking loss of one channel (class docstring), summed over
        the real users (rows 1.. of ``z`` ``[num_users, d]``; the padding row 0 has no links in ``adj``;
        ``adj_t`` its transpose)."""
        g = csr_mm(adj, adj_t, z)[1:]
        z = z[1:]
        pos = (z * g).sum(1)
        neg1 = (z[self._perm(z.shape[0], z.device)] * g).sum(1)
        neg2 = (self._rowcol(g) * z).sum(1)
        local = F.softplus(-(pos - neg1)) + F.softplus(-(neg1 - neg2))
        graph = g.mean(0, keepdim=True)
        glob = F.softplus(-((g * graph).sum(1) - (self._rowcol(g) * graph).sum(1)))
        return (local + glob).sum()

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        weight = float(self.cfg("ssl_weight"))
        users = self._tables()[0]
        if weight == 0:
            return users.sum() * 0.0
        total = sum(self.hierarchical_mim(gate(users), h, ht) for gate, (h, ht) in zip(self.ssl_gates,
                                                                                        self._channel_pairs))
        return weight * total

    # ---- training and caching -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ssl_generator_state"] = self._ssl_generator.get_state()

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("ssl_generator_state")
        if state is not None and getattr(self, "_ssl_generator", None) is not None:
            self._ssl_generator.set_state(state)
