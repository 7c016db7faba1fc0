"""DiffNet++: influence (social) and interest (user-item) diffusion with node- and graph-level attention."""
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.social import PropagatedTables, SOCIAL_HELP, SocialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def edge_softmax(scores: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Softmax of edge ``scores`` ``[E]`` among the edges sharing a row ``rows`` ``[E]``."""
    peak = torch.full((num_rows,), float("-inf"), dtype=scores.dtype, device=scores.device)
    peak = peak.scatter_reduce(0, rows, scores.detach(), reduce="amax", include_self=True)
    z = torch.exp(scores - peak[rows])
    total = torch.zeros(num_rows, dtype=scores.dtype, device=scores.device).index_add(0, rows, z)
    return z / total[rows]


class PairAttention(nn.Module):
    """``MLP([a ; b]) = w . relu(A a + B b + c)``: the attention MLP of a pair of vectors, its first layer split
    so that ``A a`` and ``B b`` are computed once per node, not once per edge."""

    def __init__(self, dim: int):
        super().__init__()
        self.left = nn.Linear(dim, dim)
        self.right = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, 1, bias=False)

    def forward(self, left: torch.Tensor, right: torch.Tensor, li: torch.Tensor, ri: torch.Tensor) -> torch.Tensor:
        """Scores ``[E]`` of the pairs ``(left[li], right[ri])``."""
        return self.out(F.relu(self.left(left)[li] + self.right(right)[ri])).squeeze(-1)


def aggregate(weights: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, source: torch.Tensor,
              num_rows: int) -> torch.Tensor:
    """``out[r] = sum_{edges (r, c)} weight * source[c]``."""
    return torch.zeros(num_rows, source.shape[1], dtype=source.dtype, device=source.device).index_add(
        0, rows, weights[:, None] * source[cols])


@register_model("DiffNetPP", category="social",
                paper="L. Wu, J. Li, P. Sun, R. Hong, Y. Ge, M. Wang. DiffNet++: A Neural Influence and Interest "
                      "Diffusion Network for Social Recommendation. IEEE TKDE 34(10), 2022.")
class DiffNetPP(PropagatedTables, SocialRecommender):
    """DiffNet++ (Wu et al., TKDE 2022): users diffuse both social influence and interests. Starting from the id
    embeddings ``p^0, q^0``, each of the ``n_layers`` layers computes

    - items: ``q_i^{k+1} = q_i^k + sum_{u in R_i} eta_iu p_u^k``, ``eta = softmax_u(MLP([q_i^k ; p_u^k]))``;
    - users: the social and the interest aggregations ``s_u = sum_{v in S_u} alpha_uv p_v^k`` (``alpha =
      softmax_v(MLP([p_u^k ; p_v^k]))``) and ``r_u = sum_{i in R_u} beta_ui q_i^k`` (``beta =
      softmax_i(MLP([p_u^k ; q_i^k]))``), mixed by graph-level attention ``gamma = softmax(MLP([p_u^k ; s_u]),
      MLP([p_u^k ; r_u]))``: ``p_u^{k+1} = p_u^k + gamma_1 s_u + gamma_2 r_u``;

    and ``score(u, i) = [p_u^0 ; ... ; p_u^K] . [q_i^0 ; ... ; q_i^K]`` (the layers concatenated), trained with BPR
    (one uniform negative) plus ``reg_weight`` times RecBole's EmbLoss on the batch's id embeddings. ``R_u`` /
    ``R_i`` are the training interactions, ``S_u`` the friends (``social_symmetric``). Each attention MLP is
    ``w . relu(A a + B b + c)`` (one hidden layer of ``embed_dim``); a user without friends (or items) gets
    weight 0 for that graph (its gamma is taken over the graphs it has). Vectors of every user and item are
    propagated once per training step and once per evaluation (cached until the next step).

    Departures from the paper: no user / item feature fusion (the datasets here have none: ``p^0, q^0`` are free
    id embeddings); the attention MLPs have one hidden layer with ReLU (the paper does not give their depth);
    mini-batch Adam with BPR and uniform negatives; defaults as our DiffNet (embedding 64, 2 layers, reg 1e-5,
    Adam 1e-3, batch 2048, undirected network, patience 20).

    Args (config keys): ``embed_dim``, ``n_layers``, ``social_symmetric``, ``reg_weight``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``; defaults in ``diffnetpp.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DiffNetPP", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    option_help = {**SOCIAL_HELP, "n_layers": "number K of diffusion layers (the final vectors concatenate K + 1)"}

    def build_blocks(self) -> None:
        if int(self.cfg("n_layers")) < 1:
            raise ConfigError(f"DiffNetPP n_layers must be >= 1, got {self.cfg('n_layers')}.")
        super().build_blocks()
        d, K = int(self.cfg("embed_dim")), int(self.cfg("n_layers"))
        self.item_att = nn.ModuleList(PairAttention(d) for _ in range(K))
        self.social_att = nn.ModuleList(PairAttention(d) for _ in range(K))
        self.interest_att = nn.ModuleList(PairAttention(d) for _ in range(K))
        self.graph_att = nn.ModuleList(PairAttention(d) for _ in range(K))
        social = self.meta.social_matrix(symmetric=bool(self.cfg("social_symmetric"))).tocoo()
        inter = self.meta.train_matrix().tocoo()
        for name, value in (("s_rows", social.row), ("s_cols", social.col), ("r_users", inter.row),
                            ("r_items", inter.col)):
            self.register_buffer(name, torch.as_tensor(value.astype(np.int64)), persistent=False)
        n_users = self.meta.num_users
        self.register_buffer("has_friends", torch.as_tensor(np.bincount(social.row, minlength=n_users) > 0),
                             persistent=False)
        self.register_buffer("has_items", torch.as_tensor(np.bincount(inter.row, minlength=n_users) > 0),
                             persistent=False)

    # ---- propagation --------------------------------------------------------------------------
    def propagate(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(users [num_users, (K+1) d], items [num_items, (K+1) d])``."""
        p, q = self.query_encoder.embedding.weight, self.item_encoder.weight
        U, I = p.shape[0], q.shape[0]
        su, sv, ru, ri = self.s_rows, self.s_cols, self.r_users, self.r_items
        users, items = [p], [q]
        for k in range(len(self.item_att)):
            eta = edge_softmax(self.item_att[k](q, p, ri, ru), ri, I)
            q_next = q + aggregate(eta, ri, ru, p, I)
            alpha = edge_softmax(self.social_att[k](p, p, su, sv), su, U)
            s = aggregate(alpha, su, sv, p, U)
            beta = edge_softmax(self.interest_att[k](p, q, ru, ri), ru, U)
            r = aggregate(beta, ru, ri, q, U)
            ids = torch.arange(U, device=p.device)
            g = torch.stack([self.graph_att[k](p, s, ids, ids), self.graph_att[k](p, r, ids, ids)], 1)
            g = g.masked_fill(~torch.stack([self.has_friends, self.has_items], 1), float("-inf"))
            gamma = torch.nan_to_num(torch.softmax(g, 1), nan=0.0)   # a user with neither graph: 0, 0
            p = p + gamma[:, :1] * s + gamma[:, 1:] * r
            q = q_next
            users.append(p)
            items.append(q)
        return torch.cat(users, 1), torch.cat(items, 1)
