"""KGCN: knowledge graph convolutional networks (user-specific aggregation of an item's KG neighbourhood)."""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import embedding_norm
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

AGGREGATORS = ("sum", "neighbor", "concat")

KGCN_HELP = {
    "embed_dim": "size of the user, entity and relation embeddings",
    "n_iter": "depth H of the receptive field (hops of KG neighbours aggregated)",
    "aggregator": "'sum' (W (v + v_N) + b), 'neighbor' (W v_N + b) or 'concat' (W [v ; v_N] + b)",
    "neighbor_sample_size": "neighbours K sampled once per entity (with replacement when it has fewer)",
    "reg_weight": "weight of the L2 norm (RecBole's EmbLoss) of the batch's user and item vectors",
    "sampler": "negative sampler (masked_uniform: a uniform item the user has not seen)",
    "num_neg": "negative items per interaction",
    "item_chunk_size": "items scored at once in full ranking (memory: users x chunk x K^H x embed_dim floats)",
}


def sample_neighbors(head: torch.Tensor, relation: torch.Tensor, tail: torch.Tensor, num_nodes: int, k: int,
                     generator: torch.Generator):
    """``(adj_entity, adj_relation)`` ``[num_nodes, k]``: for each node ``k`` neighbours of the undirected graph
    of the triples (every triple read both ways, with its relation), drawn without replacement when the node
    has at least ``k``, else with replacement; a node without neighbours is its own ``k`` neighbours through
    the padding relation 0 (as RecBole's KGCN)."""
    src = torch.cat([head, tail])
    dst = torch.cat([tail, head])
    rel = torch.cat([relation, relation])
    order = torch.argsort(src, stable=True)
    src, dst, rel = src[order], dst[order], rel[order]
    deg = torch.bincount(src, minlength=num_nodes)
    start = torch.cumsum(deg, 0) - deg
    # without replacement where deg >= k: the k smallest of random keys per row; with replacement otherwise
    keys = torch.rand(len(src), generator=generator, dtype=torch.float64)
    shuffled = torch.argsort(src.double() * 2.0 + keys)              # rows stay grouped, shuffled within
    offsets = torch.arange(k).expand(num_nodes, k)
    with_repl = (torch.rand(num_nodes, k, generator=generator) * deg.clamp(min=1)[:, None]).long()
    pick = torch.where((deg >= k)[:, None], offsets, with_repl)
    pos = (start[:, None] + pick).clamp(max=max(len(src) - 1, 0))
    has = (deg > 0)[:, None].expand(-1, k)
    nodes = torch.arange(num_nodes)[:, None].expand(-1, k)
    adj_entity = torch.where(has, dst[shuffled[pos]], nodes)
    adj_relation = torch.where(has, rel[shuffled[pos]], torch.zeros_like(nodes))
    return adj_entity.contiguous(), adj_relation.contiguous()


@register_model("KGCN", category="kg",
                paper="H. Wang, M. Zhao, X. Xie, W. Li, M. Guo. Knowledge Graph Convolutional Networks for "
                      "Recommender Systems. WWW 2019.")
class KGCN(KnowledgeRecommender):
    """An item's vector is computed *for each user* by aggregating its knowledge-graph neighbourhood
    (Wang et al., WWW 2019). Every entity has ``K = neighbor_sample_size`` neighbours sampled once from the
    undirected KG; a neighbour ``e`` reached through relation ``r`` weighs ``softmax_e(pi^u_r)`` with
    ``pi^u_r = mean(u * r)`` (the user's interest in the relation), the neighbourhood vector is
    ``v_N = (1/K) sum_e softmax(pi^u_r) v_e`` and one aggregation layer gives ``act(W agg(v, v_N) + b)``
    (``agg``: ``v + v_N`` (sum), ``v_N`` (neighbor) or ``[v ; v_N]`` (concat); ``act`` ReLU, tanh at the last
    layer). ``n_iter`` layers aggregate the ``K^H``-node receptive field from the leaves inwards;
    ``score(u, i) = u . v^u_i``, trained with binary cross-entropy on a positive and one uniform negative
    (``softplus(-pos) + softplus(neg)``) plus ``reg_weight`` times RecBole's EmbLoss of the user and the two
    item vectors. There is no KG loss: the KG enters only through the aggregation.

    An item linked to an entity starts from that entity's embedding and neighbourhood; an item without an
    entity has an embedding of its own and no neighbours (it is its own ``K`` neighbours through the padding
    relation, as an isolated entity in RecBole). The neighbour samples are persistent buffers (drawn from a
    generator seeded by ``seed``), so a checkpoint scores exactly as the trained model.

    The item vector depends on the user, so the score is not a dot product of two fixed towers: full ranking
    scores ``item_chunk_size`` items at a time for a batch of users, and ANN retrieval is refused (the
    conformance check ``ann`` is skipped for this reason).

    Departures: the mean over the ``K`` weighted neighbours (RecBole's code; the paper's formula sums them,
    the same up to a factor ``1/K`` that ``W`` absorbs); RecBole's BCE averages over the ``2B`` logits, here the
    per-interaction sum of both terms is averaged (twice the gradient, which Adam ignores; ``reg_weight`` is
    RecBole's); neighbours are sampled once (RecBole and the official code also fix them); the KG as
    undirected (the paper's). Defaults: RecBole 1.2.1's (embedding 64, one iteration, sum aggregator,
    4 neighbours, reg 1e-7, Adam 1e-3, batch 2048).

    Args (config keys): ``embed_dim``, ``n_iter``, ``aggregator``, ``neighbor_sample_size``, ``reg_weight``,
    ``sampler``, ``num_neg``, ``item_chunk_size``; see ``kgcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="KGCN", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    supports_ann = False
    option_help = dict(KGCN_HELP)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        if self.cfg("aggregator") not in AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {AGGREGATORS}, got {self.cfg('aggregator')!r}.")
        for key in ("n_iter", "neighbor_sample_size", "item_chunk_size"):
            if int(self.cfg(key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {self.cfg(key)!r}.")
        if self.config.get("ann") is not None:
            raise ConfigError(f"{type(self).__name__}'s item vectors depend on the user: ANN retrieval (ann="
                              f"{self.config['ann']!r}) is not available; remove the ann key.")

    # ---- data ---------------------------------------------------------------------------------
    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        E, I = meta.num_entities, meta.num_items
        item_entity = meta.item_entity.long()
        own = E + torch.arange(I)
        own[0] = 0
        self.num_nodes = E + I
        self.register_buffer("item_node", torch.where(item_entity > 0, item_entity, own), persistent=False)
        gen = torch.Generator().manual_seed(int(self.config["seed"]))
        adj_e, adj_r = sample_neighbors(meta.kg_head.long(), meta.kg_relation.long(), meta.kg_tail.long(),
                                        self.num_nodes, int(self.cfg("neighbor_sample_size")), gen)
        self.register_buffer("adj_entity", adj_e)      # persistent: the samples the model was trained with
        self.register_buffer("adj_relation", adj_r)

    def _get_item_encoder(self) -> nn.Module:
        d = int(self.cfg("embed_dim"))
        self.entity_embedding = IdEmbedding(self.num_nodes, d, init="xavier")
        self.relation_embedding = IdEmbedding(self.meta.num_relations, d, init="xavier")
        return nn.Identity()  # item vectors are user-specific (score_candidates)

    def build_blocks(self) -> None:
        super().build_blocks()
        d = int(self.cfg("embed_dim"))
        width = 2 * d if self.cfg("aggregator") == "concat" else d
        self.layers = nn.ModuleList(nn.Linear(width, d) for _ in range(int(self.cfg("n_iter"))))

    # ---- the user-specific item vectors -------------------------------------------------------
    def receptive_field(self, users: torch.Tensor, items: torch.Tensor):
        """The receptive field of items ``items`` ``[B, N]`` for user vectors ``users`` ``[B, d]``: ``nodes`` (per
        hop ``[B, N, K^h]`` node ids) and ``weights`` (per hop ``[B, N, K^h, K, 1]``, the softmax of the user's
        relation scores over each node's ``K`` neighbours)."""
        B, N = items.shape
        K, d = int(self.cfg("neighbor_sample_size")), users.shape[-1]
        nodes = [self.item_node[items].reshape(B, N, 1)]
        rels: List[torch.Tensor] = []
        for _ in range(len(self.layers)):
            nodes.append(self.adj_entity[nodes[-1]].reshape(B, N, -1))
            rels.append(self.adj_relation[nodes[-2]].reshape(B, N, -1))
        # the user's interest in each relation, then gathered per edge (relations are few)
        interest = users @ self.relation_embedding.weight.t() / d                      # [B, R]
        weights = []
        for r in rels:
            w = torch.gather(interest, 1, r.reshape(B, -1)).reshape(B, N, -1, K)
            weights.append(torch.softmax(w, dim=-1).unsqueeze(-1))                    # [B, N, K^h, K, 1]
        return nodes, weights

    def item_vectors_for(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, N, d]``: item ``items[b, n]`` seen by user vector ``users[b]`` (``users [B, d]``, ``items [B, N]``)."""
        B, N = items.shape
        K, d = int(self.cfg("neighbor_sample_size")), users.shape[-1]
        nodes, weights = self.receptive_field(users, items)
        vectors = [self.entity_embedding(n) for n in nodes]                           # [B, N, K^h, d]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            nxt = []
            for hop in range(len(vectors) - 1):
                own = vectors[hop]
                neigh = (weights[hop] * vectors[hop + 1].reshape(B, N, -1, K, d)).mean(3)
                agg = self.cfg("aggregator")
                x = own + neigh if agg == "sum" else neigh if agg == "neighbor" else torch.cat([own, neigh], -1)
                out = layer(x)
                nxt.append(torch.tanh(out) if i == last else F.relu(out))
            vectors = nxt
        return vectors[0].reshape(B, N, d)

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_query(batch)

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        flat = items.dim() == 1
        ids = items[:, None] if flat else items
        scores = (self.item_vectors_for(state, ids) * state[:, None, :]).sum(-1)
        return scores[:, 0] if flat else scores

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.score_items_in_chunks(batch, state, state.shape[0])

    def item_vectors(self) -> torch.Tensor:
        raise ConfigError("KGCN's item vectors depend on the user: use item_vectors_for(users, items).")

    # ---- losses -------------------------------------------------------------------------------
    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        return build_loss("bce")

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = self.encode_query(batch)
        pos = batch[self.meta.iid_field]
        neg = batch["neg_item"].reshape(len(pos), -1)
        vec = self.item_vectors_for(users, torch.cat([pos[:, None], neg], dim=1))
        scores = (vec * users[:, None, :]).sum(-1)
        loss = self.loss_fn(pos_score=scores[:, 0], neg_score=scores[:, 1:])
        reg = float(self.cfg("reg_weight"))
        if reg:
            loss = loss + reg * embedding_norm(users, vec[:, 0], vec[:, 1:])
        return loss

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rec_loss(batch)  # no KG loss: the KG enters through the aggregation only
