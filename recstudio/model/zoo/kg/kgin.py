"""KGIN: knowledge graph-based intent network (user intents over relations, relational path-aware aggregation)."""
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KG_HELP, KnowledgeRecommender
from recstudio.model.module.graph import to_torch_csr
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

INDEPENDENCE = ("cosine", "distance", "mi")

KGIN_HELP = {
    **KG_HELP,
    "n_factors": "number of user intents P (each a softmax-weighted mix of the relation embeddings)",
    "context_hops": "number L of relational path-aware aggregation layers",
    "node_dropout": "fraction of KG edges dropped (re-drawn) at every training step",
    "interaction_dropout": "fraction of user-item edges dropped at every training step (kept ones scaled "
                           "by 1 / (1 - p))",
    "mess_dropout": "dropout on each layer's user and entity outputs (training only)",
    "ind": "independence loss of the intents: 'cosine' (squared cosine of every pair), 'distance' (distance "
           "correlation of every pair) or 'mi' (InfoNCE over the intents)",
    "sim_regularity": "weight of the intent independence loss",
    "temperature": "temperature of the 'mi' independence loss",
}


def scatter_mean(src: torch.Tensor, index: torch.Tensor, num_rows: int) -> torch.Tensor:
    """``out[r] = mean of src[e] over the e with index[e] == r`` (zero for an empty row)."""
    total = torch.zeros(num_rows, src.shape[1], dtype=src.dtype, device=src.device).index_add(0, index, src)
    count = torch.bincount(index, minlength=num_rows).clamp(min=1).to(src.dtype)
    return total / count[:, None]


def sparse_dropout(adj: torch.Tensor, p: float) -> torch.Tensor:
    """A CSR matrix with each stored entry zeroed with probability ``p`` (kept ones scaled by 1/(1-p))."""
    if p <= 0:
        return adj
    keep = (torch.rand(adj.values().shape, device=adj.device) >= p).to(adj.dtype) / (1.0 - p)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values() * keep, adj.shape,
                                       check_invariants=False)


def independence_loss(weights: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    """Independence of the ``P`` intent vectors ``weights`` ``[P, R]`` (KGIN's eq. 14 / its code's variants)."""
    if kind == "mi":
        z = F.normalize(weights, dim=1)
        logits = z @ z.t() / temperature
        return (torch.logsumexp(logits, 1) - logits.diag()).sum()
    pairs = torch.triu_indices(weights.shape[0], weights.shape[0], 1, device=weights.device)
    if kind == "cosine":
        z = F.normalize(weights, dim=1)
        return ((z[pairs[0]] * z[pairs[1]]).sum(-1) ** 2).sum()
    # distance correlation of each pair of intent vectors (each read as R scalar observations)
    d = torch.sqrt(((weights[:, :, None] - weights[:, None, :]) ** 2) + 1e-8)             # [P, R, R]
    centred = d - d.mean(1, keepdim=True) - d.mean(2, keepdim=True) + d.mean((1, 2), keepdim=True)
    n2 = weights.shape[1] ** 2
    a, b = centred[pairs[0]], centred[pairs[1]]
    dcov_ab = torch.sqrt(((a * b).sum((1, 2)) / n2).clamp(min=0) + 1e-8)
    dcov_aa = torch.sqrt(((a * a).sum((1, 2)) / n2).clamp(min=0) + 1e-8)
    dcov_bb = torch.sqrt(((b * b).sum((1, 2)) / n2).clamp(min=0) + 1e-8)
    return (dcov_ab / torch.sqrt(dcov_aa * dcov_bb + 1e-8)).sum()


class KGGraphMixin:
    """Node layout and evaluation cache shared by the KG models that propagate over items and entities
    (KGIN, MCCLK): ``num_nodes = num_entities + num_items`` rows (entity ``e`` is row ``e``; an item without an
    entity has its own row ``num_entities + i``), ``item_node`` maps items to rows, ``inter_adj`` is the
    row-normalised train user x node matrix (``1 / deg(u)``), ``kg_src / kg_dst / kg_rel`` the KG edges
    (head aggregates its tails). Vectors are computed once per training batch (``_step``) and cached in
    evaluation until a parameter changes."""

    def _register_graph(self, meta) -> None:
        E, I = meta.num_entities, meta.num_items
        item_entity = meta.item_entity.long()
        own = E + torch.arange(I)
        own[0] = 0
        self.num_nodes = E + I
        item_node = torch.where(item_entity > 0, item_entity, own)
        self.register_buffer("item_node", item_node, persistent=False)
        inter = meta.train_matrix().tocoo()
        m = sp.csr_matrix((np.ones(inter.nnz, dtype=np.float32), (inter.row, item_node.numpy()[inter.col])),
                          shape=(meta.num_users, self.num_nodes))
        m.sum_duplicates()
        m.data[:] = 1.0
        deg = np.asarray(m.sum(1)).ravel()
        inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
        self.register_buffer("inter_adj", to_torch_csr(sp.diags(inv) @ m), persistent=False)
        self.register_buffer("kg_src", meta.kg_head.long(), persistent=False)
        self.register_buffer("kg_dst", meta.kg_tail.long(), persistent=False)
        self.register_buffer("kg_rel", meta.kg_relation.long(), persistent=False)
        self._eval_cache: Optional[Tuple] = None
        self._step: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def kg_edges(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The KG edges, a random ``1 - node_dropout`` share of them in training (re-drawn every call)."""
        p = float(self.cfg("node_dropout"))
        if not self.training or p <= 0:
            return self.kg_src, self.kg_dst, self.kg_rel
        keep = torch.randperm(len(self.kg_src), device=self.kg_src.device)[:int(len(self.kg_src) * (1 - p))]
        return self.kg_src[keep], self.kg_dst[keep], self.kg_rel[keep]

    def interactions(self) -> torch.Tensor:
        return sparse_dropout(self.inter_adj, float(self.cfg("interaction_dropout"))) if self.training \
            else self.inter_adj

    def _cache_key(self):
        return tuple((p._version, p.data_ptr(), p.device) for p in self.parameters())

    def propagated(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user vectors [num_users, D], item vectors [num_items, D])``."""
        if self._step is not None:
            return self._step
        if self.training or torch.is_grad_enabled():
            return self.propagate()[:2]
        key = self._cache_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = (key, *self.propagate()[:2])
        return self._eval_cache[1], self._eval_cache[2]

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.propagated()[0][batch[self.meta.uid_field]]

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        return self.propagated()[1][ids]

    def item_vectors(self) -> torch.Tensor:
        return self.propagated()[1]

    def _get_query_encoder(self) -> nn.Module:
        return nn.Identity()   # users come from propagation (encode_query)

    def _get_item_encoder(self) -> nn.Module:
        return nn.Identity()   # items come from propagation (encode_items)

    def load_state_dict(self, *args, **kwargs):
        self._eval_cache = None
        return super().load_state_dict(*args, **kwargs)


@register_model("KGIN", category="kg",
                paper="X. Wang, T. Huang, D. Wang, Y. Yuan, Z. Liu, X. He, T.-S. Chua. Learning Intents behind "
                      "Interactions with Knowledge Graph for Recommendation. WWW 2021.")
class KGIN(KGGraphMixin, KnowledgeRecommender):
    """Knowledge graph-based intent network (Wang et al., WWW 2021). ``P = n_factors`` user intents are
    mixtures of the relation embeddings, ``e_p = sum_r softmax_r(w_p)_r e_r``. Each of ``L = context_hops``
    layers aggregates

    - an entity over its KG out-edges, relation-aware: ``e_h^{l+1} = mean_{(h, r, t)} e_r * e_t^l``;
    - a user over its train items, intent-aware: ``u^{l+1} = (1 + sum_p beta(u, p) e_p) * mean_{i in N_u} e_i^l``
      with ``beta(u, p) = softmax_p(u^l . e_p')`` (``e_p'`` a free intent embedding, as the code);

    layer outputs are L2-normalised (after message dropout) and summed with the ego embedding (the residual);
    ``score(u, i) = u* . i*``. The loss is BPR (one uniform negative) + ``reg_weight`` times RecBole's
    EmbLoss of the batch's propagated vectors + ``sim_regularity`` times the independence loss of the intent
    weights ``w`` (``ind``: squared cosine of every pair (RecBole 1.2.1's default), distance correlation (the
    paper's eq. 14) or InfoNCE). There is no KG triple loss (the KG enters through the aggregation).

    An item linked to an entity is that entity's row; an item without an entity has a row of its own with
    no KG edges. Vectors are propagated once per training batch and once per evaluation (cached until a
    parameter changes).

    Departures: edge dropout (``node_dropout``, 0.5 of the KG edges re-drawn at each step) and
    ``interaction_dropout`` (0.0: RecBole 1.2.1 passes its zero message-dropout rate there) are applied in
    training only (RecBole also samples KG edges when it evaluates; the official code does not); the KG edges
    are used as given (RecBole's ``kg_reverse_r: False``). Defaults: RecBole 1.2.1's (embedding 64, 4 intents,
    2 hops, node dropout 0.5, message dropout 0, independence 'cosine' weighted 1e-4, temperature 0.2,
    reg 1e-5, Adam 1e-3, batch 2048); the official code uses 3 hops, distance correlation, lr 1e-4.

    Args (config keys): ``embed_dim``, ``n_factors``, ``context_hops``, ``node_dropout``,
    ``interaction_dropout``, ``mess_dropout``, ``ind``, ``sim_regularity``, ``temperature``, ``reg_weight``,
    ``loss``, ``sampler``, ``num_neg``, ``score_func``; defaults in ``kgin.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="KGIN", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"kg", "train_graph"})
    option_help = {k: KGIN_HELP[k] for k in KGIN_HELP if k not in (
        "kg_embed_dim", "kg_weight", "kg_batch_size", "kg_schedule", "kg_loss", "kg_margin", "kg_reg_weight")}

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        if self.cfg("ind") not in INDEPENDENCE:
            raise ConfigError(f"KGIN ind must be one of {INDEPENDENCE}, got {self.cfg('ind')!r}.")
        if int(self.cfg("n_factors")) < 2 or int(self.cfg("context_hops")) < 1:
            raise ConfigError("KGIN needs n_factors >= 2 (the independence loss compares intents) and "
                              f"context_hops >= 1, got {self.cfg('n_factors')!r} and {self.cfg('context_hops')!r}.")
        for key in ("node_dropout", "interaction_dropout", "mess_dropout"):
            if not 0.0 <= float(self.cfg(key)) < 1.0:
                raise ConfigError(f"KGIN {key} must be in [0, 1), got {self.cfg(key)!r}.")

    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        self._register_graph(meta)

    def build_blocks(self) -> None:
        super().build_blocks()
        d, P, R = int(self.cfg("embed_dim")), int(self.cfg("n_factors")), self.meta.num_relations

        def xavier(*shape):
            return nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)))
        self.user_embedding = xavier(self.meta.num_users, d)
        self.entity_embedding = xavier(self.num_nodes, d)
        self.latent_embedding = xavier(P, d)
        self.relation_embedding = xavier(R, d)
        self.disen_weight_att = xavier(P, R)
        self.mess_drop = nn.Dropout(float(self.cfg("mess_dropout")))

    def propagate(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(users [U, d], items [I, d], independence loss)``."""
        src, dst, rel = self.kg_edges()
        inter = self.interactions()
        rel_emb = self.relation_embedding
        intents = torch.softmax(self.disen_weight_att, -1) @ rel_emb                  # [P, d]
        edge_rel = rel_emb[rel]
        ent, user = self.entity_embedding, self.user_embedding
        ent_out, user_out = ent, user
        for _ in range(int(self.cfg("context_hops"))):
            ent_next = scatter_mean(ent[dst] * edge_rel, src, self.num_nodes)
            beta = torch.softmax(user @ self.latent_embedding.t(), dim=1)              # [U, P]
            agg = inter @ ent
            user = (beta @ intents) * agg + agg
            ent = F.normalize(self.mess_drop(ent_next), dim=1)
            user = F.normalize(self.mess_drop(user), dim=1)
            ent_out, user_out = ent_out + ent, user_out + user
        cor = independence_loss(self.disen_weight_att, self.cfg("ind"), float(self.cfg("temperature")))
        return user_out, ent_out[self.item_node], cor

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users, items, cor = self.propagate()
        self._step = (users, items)
        try:
            loss = self.rec_loss(batch)
        finally:
            self._step = None
        return loss + float(self.cfg("sim_regularity")) * cor
