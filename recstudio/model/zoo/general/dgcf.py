"""DGCF: disentangled graph collaborative filtering, intent-aware routing over K intent graphs."""
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.graph import GRAPH_HELP, GraphRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation (Székely et al. 2007, V-statistic form) of ``x`` ``[n, p]`` and ``y``
    ``[n, q]``: with ``a``, ``b`` the double-centred pairwise Euclidean distance matrices,
    ``dCor = sqrt(mean(a b)) / sqrt(sqrt(mean(a a)) sqrt(mean(b b)))``; 0 for independent samples (in the
    limit), 1 for ``y = c x``. Written as the DGCF code and RecBole do (``1e-8`` inside the square roots,
    negative values clamped to 0).

    Example:
        >>> x = torch.randn(50, 4)
        >>> round(distance_correlation(x, 2 * x).item(), 3)
        1.0
    """
    def centred(z):
        r = (z * z).sum(1, keepdim=True)
        d = torch.sqrt((r - 2 * z @ z.T + r.T).clamp_min(0.0) + 1e-8)
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()

    def dcov(a, b):
        n = a.shape[0]
        return torch.sqrt(((a * b).sum() / (n * n)).clamp_min(0.0) + 1e-8)

    a, b = centred(x), centred(y)
    return dcov(a, b) / (torch.sqrt((dcov(a, a) * dcov(b, b)).clamp_min(0.0)) + 1e-10)


class IntentRouting(nn.Module):
    """One DGCF layer: ``n_iterations`` rounds of intent-aware routing over the bipartite edges.

    The layer input ``x`` ``[N, D]`` is split into ``K`` chunks ``x_k`` ``[N, D/K]``. With the edge logits
    ``A`` ``[E, K]`` (carried over from the previous layer), each round computes the intent graphs
    ``S = softmax_k(A)``, their degrees ``d_k(v) = sum_{e from v} S_ek`` and the normalised weights
    ``w_ek = S_ek / sqrt(d_k(head) d_k(tail))``, propagates ``u_k = sum_{e: head = u} w_ek x_k(tail)`` and
    updates ``A_ek += normalize(u_k(head)) . tanh(normalize(x_k(tail)))``. The output is the last round's
    ``[u_1 ... u_K]`` and the updated logits.
    """

    def __init__(self, n_factors: int, n_iterations: int):
        super().__init__()
        self.n_factors, self.n_iterations = n_factors, n_iterations

    def forward(self, heads: torch.Tensor, tails: torch.Tensor, x: torch.Tensor, logits: torch.Tensor,
                update_last: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(output [N, D], logits [E, K])``; with ``update_last`` false the last round's score update (whose
        result nobody reads: the last layer's) is skipped."""
        n, dim = x.shape
        k = self.n_factors
        xf = x.view(n, k, dim // k)
        tail_x = xf[tails]                                                  # [E, K, d]
        # normalize / tanh per node, then gather: the same as per edge, E / N times cheaper
        tail_dir = torch.tanh(F.normalize(xf, dim=-1))[tails]
        out = None
        for it in range(self.n_iterations):
            s = torch.softmax(logits, dim=1)                                # [E, K]
            deg = torch.zeros(n, k, dtype=s.dtype, device=s.device).index_add(0, heads, s)
            dinv = deg.clamp_min(1e-8).rsqrt()
            w = s * dinv[heads] * dinv[tails]
            out = torch.zeros(n, k, dim // k, dtype=x.dtype, device=x.device).index_add(
                0, heads, tail_x * w.unsqueeze(-1))
            if update_last or it < self.n_iterations - 1:
                logits = logits + (F.normalize(out, dim=-1)[heads] * tail_dir).sum(-1)
        return out.reshape(n, dim), logits


@register_model("DGCF", category="general",
                paper="X. Wang, H. Jin, A. Zhang, X. He, T. Xu, T.-S. Chua. Disentangled Graph Collaborative "
                      "Filtering. SIGIR 2020.")
class DGCF(GraphRecommender):
    """Disentangled graph CF (Wang et al., SIGIR 2020). Every user / item embedding is split into
    ``n_factors`` intent chunks; every training edge ``(u, i)`` has a score per intent, initialised to 1,
    and each of the ``n_layers`` layers refines them by ``n_iterations`` rounds of intent-aware routing
    (:class:`IntentRouting`: softmax over intents, symmetric normalisation of each intent graph, LightGCN
    propagation of chunk ``k`` over intent graph ``k``, and the score update
    ``A_ek += normalize(u_k) . tanh(normalize(i_k))``); the final vectors average the layers ``0..K``,
    ``score(u, i) = e_u . e_i``. The loss is BPR on uniformly drawn negatives plus ``reg_weight`` times the
    L2 penalty of the batch's ego embeddings plus ``cor_weight`` times the independence loss: the distance
    correlation of consecutive intent chunks ``(k, k+1)`` of the final vectors of a random sample of
    ``cor_batch_size`` users and ``cor_batch_size`` items, summed and divided by ``K (K + 1) / 2``.

    Defaults are RecBole 1.2.1's (the paper's code's for ml-style data): embedding 64, 4 intents,
    2 iterations, 1 layer, reg_weight 1e-3, cor_weight 0.01, Adam 1e-3, batch 2048; the independence
    sample has ``max(#users, #items) / (#train interactions // batch_size + 1)`` rows per side, as the
    paper's code and RecBole. Departures: the independence loss pairs consecutive intents only (as the
    paper's code and RecBole; the paper writes every pair); the L2 penalty is the base's
    ``0.5 |e|^2 / B`` on the batch's ego embeddings (RecBole: unsquared norms / B); the sample is drawn with
    torch's generator (deterministic under the seed) and never contains the padding ids. Gradients flow
    through the routing, as in both codes.

    Args (config keys): ``embed_dim``, ``n_factors``, ``n_iterations``, ``n_layers``, ``reg_weight``,
    ``cor_weight``, ``loss``, ``sampler``, ``num_neg``, ``score_func``; see ``dgcf.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DGCF", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    layer_combine = "mean"
    option_help = {**GRAPH_HELP,
                   "n_factors": "number of latent intents K (embed_dim must be divisible by it)",
                   "n_iterations": "routing iterations per layer",
                   "cor_weight": "weight of the distance-correlation independence loss between intents (0 = off)"}

    def _get_layer(self, k, in_dim, out_dim):
        return IntentRouting(int(self.cfg("n_factors")), int(self.cfg("n_iterations")))

    def build_blocks(self):
        k, dim = int(self.cfg("n_factors")), int(self.cfg("embed_dim"))
        if k < 1 or dim % k:
            raise ConfigError(f"DGCF needs n_factors >= 1 dividing embed_dim; got n_factors {k}, embed_dim {dim}. "
                              "Pick e.g. embed_dim 64 with n_factors 4.")
        if int(self.cfg("n_iterations")) < 1:
            raise ConfigError(f"DGCF n_iterations must be >= 1, got {self.cfg('n_iterations')}.")
        if float(self.cfg("cor_weight")) < 0:
            raise ConfigError(f"DGCF cor_weight must be >= 0, got {self.cfg('cor_weight')}.")
        if self.cfg("self_loops", False):
            raise ConfigError("DGCF routes over the interaction edges only; set self_loops false.")
        super().build_blocks()
        train = self.meta.train_matrix().tocoo()
        users = torch.as_tensor(train.row.astype(np.int64))
        items = torch.as_tensor(train.col.astype(np.int64)) + self.meta.num_users
        self.register_buffer("_heads", torch.cat([users, items]), persistent=False)
        self.register_buffer("_tails", torch.cat([items, users]), persistent=False)
        n_batch = train.nnz // int(self.cfg("batch_size")) + 1
        real_users, real_items = self.meta.num_users - 1, self.meta.num_items - 1
        self.cor_batch_size = max(2, min(max(real_users, real_items) // n_batch, real_users, real_items))
        self._batch_vectors = None

    def propagate(self, adj=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The routed layers from fresh edge logits (all ones): ``(user_vecs, item_vecs)``; ``adj`` is unused
        (the intent graphs are rebuilt from the routing scores at every call)."""
        self.propagation_count += 1
        x = torch.cat([self.user_table, self.item_table], 0)
        logits = torch.ones(self._heads.shape[0], int(self.cfg("n_factors")), device=x.device, dtype=x.dtype)
        outputs: List[torch.Tensor] = [x]
        last = len(self.gnn_layers) - 1
        for j, layer in enumerate(self.gnn_layers):
            x, logits = layer(self._heads, self._tails, x, logits, update_last=j < last)
            outputs.append(x)
        out = self.combine_layers(outputs) * self._node_mask[:, None]
        users, items = out[:self.meta.num_users], out[self.meta.num_users:]
        if self.training:
            self._batch_vectors = (users, items)
        return users, items

    def independence_loss(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Distance correlation of consecutive intent chunks over ``cor_batch_size`` random users and items."""
        k, m = int(self.cfg("n_factors")), self.cor_batch_size
        device = user_vecs.device
        users = torch.randperm(self.meta.num_users - 1, device=device)[:m] + 1
        items = torch.randperm(self.meta.num_items - 1, device=device)[:m] + 1
        chunks = torch.cat([user_vecs[users], item_vecs[items]], 0).chunk(k, dim=1)
        loss = sum(distance_correlation(chunks[i], chunks[i + 1]) for i in range(k - 1))
        return loss / ((k + 1) * k / 2)

    def training_loss(self, batch):
        self._batch_vectors = None
        try:
            loss = super().training_loss(batch)
            vectors = self._batch_vectors  # the batch's propagation (one per batch), shared with BPR
        finally:
            self._batch_vectors = None
        weight = float(self.cfg("cor_weight"))
        if weight == 0 or int(self.cfg("n_factors")) < 2:
            return loss
        return loss + weight * self.independence_loss(*vectors)
