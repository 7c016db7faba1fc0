"""MCCLK: multi-level cross-view contrastive learning for knowledge-aware recommendation."""
from typing import Dict, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KG_HELP
from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.graph import to_torch_csr
from recstudio.model.registry import register_model
from recstudio.model.zoo.kg.kgat import spmm
from recstudio.model.zoo.kg.kgin import KGGraphMixin, scatter_mean
from recstudio.utils.errors import ConfigError

MCCLK_HELP = {
    **{k: KG_HELP[k] for k in ("embed_dim", "reg_weight", "loss", "sampler", "num_neg", "score_func")},
    "n_hops": "number of relation-aware KG aggregation layers of the structural (global) view",
    "node_dropout": "fraction of KG edges dropped (re-drawn) at every training step",
    "interaction_dropout": "fraction of user-item edges of the structural view dropped at every training step",
    "mess_dropout": "dropout on each aggregation layer's outputs (training only)",
    "lightgcn_layer": "LightGCN layers of the collaborative (local) view over the user-item graph",
    "item_agg_layer": "propagation layers of the semantic (local) view over the item-item kNN graph",
    "k": "neighbours of each item in the kNN item-item semantic graph",
    "lambda_coeff": "weight of the kNN graph of the raw embeddings against that of the KG-aggregated ones",
    "alpha": "weight of the local-level contrastive loss (1 - alpha: the global level)",
    "beta": "weight of the whole contrastive loss",
    "temperature": "temperature of the contrastive losses",
}


def cross_view_loss(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of ``-log(e(a_i, b_i) / (sum_{j != i} e(a_i, a_j) + sum_j e(a_i, b_j)))`` with
    ``e(x, y) = exp(cos(x, y) / temperature)`` (intra- and inter-view negatives; logsumexp form)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    s_aa = a @ a.t() / temperature
    s_ab = a @ b.t() / temperature
    s_aa = s_aa.masked_fill(torch.eye(len(a), dtype=torch.bool, device=a.device), float("-inf"))
    return (torch.logsumexp(torch.cat([s_aa, s_ab], 1), 1) - s_ab.diag()).mean()


def knn_graph(x: torch.Tensor, k: int) -> torch.Tensor:
    """``D^-1/2 S D^-1/2`` of the kNN graph of the rows of ``x`` ``[n, d]`` (row 0, the padding item, neither
    picks nor is picked): ``S_ij = cos(x_i, x_j)`` for the ``k`` most similar ``j`` of row ``i`` (itself
    included, as the reference), ``D`` its row sums (clamped above zero); a CSR matrix, no gradient."""
    z = F.normalize(x.detach(), dim=1)
    sim = z @ z.t()
    sim[:, 0] = float("-inf")
    val, idx = sim.topk(k, dim=1)
    n = len(x)
    val[0] = 0.0
    m = sp.csr_matrix((val.reshape(-1).cpu().numpy(), (np.repeat(np.arange(n), k), idx.reshape(-1).cpu().numpy())),
                      shape=(n, n))
    deg = np.asarray(m.sum(1)).ravel()
    inv = np.power(np.clip(deg, 1e-12, None), -0.5)
    return to_torch_csr(sp.diags(inv) @ m @ sp.diags(inv)).to(x.device)


def mlp(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


@register_model("MCCLK", category="kg",
                paper="D. Zou, W. Wei, X.-L. Mao, Z. Wang, M. Qiu, F. Zhu, X. Cao. Multi-level Cross-view "
                      "Contrastive Learning for Knowledge-aware Recommender System. SIGIR 2022.")
class MCCLK(KGGraphMixin, KnowledgeRecommender):
    """Multi-level cross-view contrastive learning (Zou et al., SIGIR 2022). Three views of users and items:

    - **global structural view**: ``n_hops`` layers of relation-aware attentive KG aggregation,
      ``e_h^{l+1} = mean_{(h, r, t)} softmax_h(pi(h, r, t)) e_r * e_t^l`` with
      ``pi = (||e_h * e_r|| ||e_t * e_r||)^2`` (the authors' code), users
      ``u^{l+1} = (1 + softmax_r(u^l . e_r) E_R) * mean_{i in N_u} e_i^l``; each layer's output L2-normalised,
      the view the mean of the ego embedding and the layers (``u_g``, ``i_g``);
    - **local collaborative view**: ``lightgcn_layer`` LightGCN layers over the row-normalised
      (``D^-1 A``) user-item graph, the mean of the layers (``u_c``, ``i_c``);
    - **local semantic view**: ``item_agg_layer`` layers over an item-item kNN graph
      ``(1 - lambda) kNN(KG-aggregated items) + lambda kNN(raw items)`` (``k`` neighbours, cosine,
      ``D^-1/2 S D^-1/2``), rebuilt from the current embeddings at every step (no gradient through it),
      the mean of the layers (``i_s``).

    ``score(u, i) = [u_g ; u_c] . [i_g ; i_s + i_c]``. Loss: BPR (one uniform negative) + ``reg_weight`` times
    RecBole's EmbLoss of the batch's concatenated vectors + ``beta (alpha L_local + (1 - alpha) L_global)``;
    ``L_local`` contrasts ``i_s`` with ``i_c``, ``L_global`` ``u_g`` with ``u_c`` and ``i_g`` with ``i_s + i_c``
    (both directions), each over the batch's users / items (positives and negatives) after a two-layer MLP
    projection (one per contrast), with intra- and inter-view negatives at ``temperature``.

    Departures: the kNN graph is built among the **items** only (the paper's item-item semantic graph;
    RecBole 1.2.1 builds it over every entity, a dense ``entities x entities`` similarity that does not fit
    for ml-100k-kg's 34k entities), with the separate KG pass for it (RecBole's ``build_graph_separately``);
    the KG and interaction dropouts are applied in training only (RecBole also samples edges in evaluation);
    the InfoNCE denominators are computed in logsumexp form (same values, stable). Defaults: RecBole 1.2.1's
    (embedding 64, 2 hops, node dropout 0.5, message dropout 0.1 (also its interaction dropout), 2 LightGCN
    layers, 1 semantic layer, k 10, lambda 0.5, alpha 0.2, beta 0.1, temperature 0.8, reg 1e-5, Adam 1e-3,
    batch 2048).

    Args (config keys): ``embed_dim``, ``n_hops``, ``node_dropout``, ``interaction_dropout``, ``mess_dropout``,
    ``lightgcn_layer``, ``item_agg_layer``, ``k``, ``lambda_coeff``, ``alpha``, ``beta``, ``temperature``,
    ``reg_weight``, ``loss``, ``sampler``, ``num_neg``, ``score_func``; defaults in ``mcclk.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="MCCLK", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"kg", "train_graph"})
    option_help = dict(MCCLK_HELP)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        for key in ("n_hops", "lightgcn_layer", "item_agg_layer", "k"):
            if int(self.cfg(key)) < 1:
                raise ConfigError(f"MCCLK {key} must be >= 1, got {self.cfg(key)!r}.")
        for key in ("node_dropout", "interaction_dropout", "mess_dropout"):
            if not 0.0 <= float(self.cfg(key)) < 1.0:
                raise ConfigError(f"MCCLK {key} must be in [0, 1), got {self.cfg(key)!r}.")
        for key in ("alpha", "lambda_coeff"):
            if not 0.0 <= float(self.cfg(key)) <= 1.0:
                raise ConfigError(f"MCCLK {key} must be in [0, 1], got {self.cfg(key)!r}.")
        if float(self.cfg("temperature")) <= 0:
            raise ConfigError(f"MCCLK temperature must be > 0, got {self.cfg('temperature')!r}.")

    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        self._register_graph(meta)
        # collaborative view: D^-1 A of the bipartite user-item graph, with its transpose for the backward
        r = meta.train_matrix().astype(np.float32)
        a = sp.bmat([[None, r], [r.T, None]], format="csr")
        deg = np.asarray(a.sum(1)).ravel()
        norm = (sp.diags(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)) @ a).tocsr()
        self.register_buffer("ui_adj", to_torch_csr(norm), persistent=False)
        self.register_buffer("ui_adj_t", to_torch_csr(norm.T), persistent=False)

    def build_blocks(self) -> None:
        super().build_blocks()
        d = int(self.cfg("embed_dim"))

        def xavier(*shape):
            return nn.Parameter(nn.init.xavier_normal_(torch.empty(*shape)))
        self.user_embedding = xavier(self.meta.num_users, d)
        self.entity_embedding = xavier(self.num_nodes, d)
        self.relation_embedding = xavier(self.meta.num_relations, d)
        self.mess_drop = nn.Dropout(float(self.cfg("mess_dropout")))
        self.fc1, self.fc2, self.fc3 = mlp(d), mlp(d), mlp(d)

    # ---- views --------------------------------------------------------------------------------
    def _kg_layer(self, ent, edges, attention: bool):
        src, dst, rel = edges
        edge_rel = self.relation_embedding[rel]
        msg = ent[dst] * edge_rel
        if attention:
            pi = ((ent[src] * edge_rel).norm(dim=1) * (ent[dst] * edge_rel).norm(dim=1)) ** 2
            peak = torch.full((self.num_nodes,), float("-inf"), dtype=pi.dtype, device=pi.device)
            peak = peak.scatter_reduce(0, src, pi.detach(), reduce="amax", include_self=True)
            z = torch.exp(pi - peak[src])
            total = torch.zeros(self.num_nodes, dtype=pi.dtype, device=pi.device).index_add(0, src, z)
            msg = (z / total[src])[:, None] * msg
        return scatter_mean(msg, src, self.num_nodes)

    def structural_view(self) -> Tuple[torch.Tensor, torch.Tensor]:
        edges, inter = self.kg_edges(), self.interactions()
        ent, user = self.entity_embedding, self.user_embedding
        ents, users = [ent], [user]
        rel = self.relation_embedding
        for _ in range(int(self.cfg("n_hops"))):
            ent_next = self._kg_layer(ent, edges, attention=True)
            agg = inter @ ent
            user = agg + (torch.softmax(user @ rel.t(), -1) @ rel) * agg
            ent = F.normalize(self.mess_drop(ent_next), dim=1)
            user = F.normalize(self.mess_drop(user), dim=1)
            ents.append(ent)
            users.append(user)
        return torch.stack(users).mean(0), torch.stack(ents).mean(0)[self.item_node]

    @torch.no_grad()
    def semantic_graph(self) -> torch.Tensor:
        """The item-item graph ``(1 - lambda) kNN(aggregated) + lambda kNN(raw)`` of the current embeddings."""
        edges = self.kg_edges()
        k = min(int(self.cfg("k")), self.meta.num_items - 1)
        ent = self.entity_embedding
        layers = [ent]
        for _ in range(int(self.cfg("n_hops"))):
            ent = F.normalize(self.mess_drop(self._kg_layer(ent, edges, attention=False)), dim=1)
            layers.append(ent)
        agg = torch.stack(layers).mean(0)[self.item_node]
        lam = float(self.cfg("lambda_coeff"))
        return (1 - lam) * knn_graph(agg, k) + lam * knn_graph(self.entity_embedding[self.item_node], k)

    def semantic_view(self) -> torch.Tensor:
        adj = self.semantic_graph()
        x = self.entity_embedding[self.item_node]
        out = [x]
        for _ in range(int(self.cfg("item_agg_layer"))):
            x = torch.sparse.mm(adj, x)
            out.append(x)
        return torch.stack(out).mean(0)

    def collaborative_view(self) -> Tuple[torch.Tensor, torch.Tensor]:
        U = self.meta.num_users
        x = torch.cat([self.user_embedding, self.entity_embedding[self.item_node]])
        out = [x]
        for _ in range(int(self.cfg("lightgcn_layer"))):
            x = spmm((self.ui_adj, self.ui_adj_t), x)
            out.append(x)
        x = torch.stack(out).mean(0)
        return x[:U], x[U:]

    def views(self) -> Dict[str, torch.Tensor]:
        u_g, i_g = self.structural_view()
        u_c, i_c = self.collaborative_view()
        return {"u_g": u_g, "i_g": i_g, "u_c": u_c, "i_c": i_c, "i_s": self.semantic_view()}

    def propagate(self) -> Tuple[torch.Tensor, torch.Tensor]:
        v = self.views()
        return torch.cat([v["u_g"], v["u_c"]], 1), torch.cat([v["i_g"], v["i_s"] + v["i_c"]], 1)

    # ---- training -----------------------------------------------------------------------------
    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        v = self.views()
        self._step = (torch.cat([v["u_g"], v["u_c"]], 1), torch.cat([v["i_g"], v["i_s"] + v["i_c"]], 1))
        try:
            loss = self.rec_loss(batch)
        finally:
            self._step = None
        users = batch[self.meta.uid_field]
        items = batch[self.meta.iid_field].reshape(-1)
        if "neg_item" in batch:   # the contrasted items: the batch's positives and negatives (as RecBole)
            items = torch.cat([items, batch["neg_item"].reshape(-1)])
        tau = float(self.cfg("temperature"))
        i_s, i_c, i_g = v["i_s"][items], v["i_c"][items], v["i_g"][items]
        local = cross_view_loss(self.fc1(i_s), self.fc1(i_c), tau)
        a, b = self.fc2(v["u_g"][users]), self.fc2(v["u_c"][users])
        g_user = 0.5 * (cross_view_loss(a, b, tau) + cross_view_loss(b, a, tau))
        a, b = self.fc3(i_g), self.fc3(i_s + i_c)
        g_item = 0.5 * (cross_view_loss(a, b, tau) + cross_view_loss(b, a, tau))
        alpha = float(self.cfg("alpha"))
        return loss + float(self.cfg("beta")) * (alpha * local + (1 - alpha) * (g_user + g_item))
