"""RippleNet: user preferences propagated over the knowledge graph from the user's items (ripple sets)."""
from typing import Dict

import numpy as np
import torch
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import embedding_norm
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

RIPPLE_HELP = {
    "embed_dim": "size of the entity embeddings (relations are embed_dim x embed_dim matrices)",
    "n_hop": "hops H of the ripple sets (each hop's heads are the previous hop's tails)",
    "n_memory": "triples M sampled per hop and user (with replacement when there are fewer)",
    "kg_weight": "weight of the KG term mean sigmoid(t^T R h) of the ripple sets' triples (maximised)",
    "reg_weight": "weight of the L2 norm (RecBole's EmbLoss) of the ripple triples' vectors and the transform",
    "sampler": "negative sampler (masked_uniform: a uniform item the user has not seen)",
    "num_neg": "negative items per interaction",
    "item_chunk_size": "items scored at once in full ranking (memory: users x chunk x n_memory floats)",
}


def build_ripple_sets(user_items, kg_head, kg_relation, kg_tail, num_nodes: int, n_hop: int, n_memory: int,
                      rng: np.random.Generator):
    """``(heads, relations, tails)`` ``[num_users, n_hop, n_memory]`` int64 arrays: hop 0's candidates are the
    triples whose head is one of the user's items (node ids), hop ``h``'s those whose head is a tail sampled at
    hop ``h - 1``; ``n_memory`` are drawn (without replacement when there are enough). A user with no
    candidate at hop 0 gets padding (0) everywhere; an empty later hop repeats the previous one (RecBole)."""
    order = np.argsort(kg_head, kind="stable")
    heads, rels, tails = kg_head[order], kg_relation[order], kg_tail[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(heads, minlength=num_nodes))])
    U = len(user_items)
    out = np.zeros((3, U, n_hop, n_memory), dtype=np.int64)
    for u, items in enumerate(user_items):
        seeds = np.asarray(items, dtype=np.int64)
        for h in range(n_hop):
            if len(seeds):
                starts, ends = indptr[seeds], indptr[seeds + 1]
                counts = ends - starts
                offsets = starts - np.concatenate([[0], np.cumsum(counts)[:-1]])
                idx = np.repeat(offsets, counts) + np.arange(counts.sum())
            else:
                idx = np.zeros(0, dtype=np.int64)
            if len(idx) == 0:
                if h > 0:
                    out[:, u, h] = out[:, u, h - 1]
                    seeds = out[2, u, h]
                    continue
                break  # padding everywhere
            pick = idx[rng.choice(len(idx), size=n_memory, replace=len(idx) < n_memory)]
            out[0, u, h], out[1, u, h], out[2, u, h] = heads[pick], rels[pick], tails[pick]
            seeds = out[2, u, h]
    return out[0], out[1], out[2]


@register_model("RippleNet", category="kg",
                paper="H. Wang, F. Zhang, J. Wang, M. Zhao, W. Li, X. Xie, M. Guo. RippleNet: Propagating User "
                      "Preferences on the Knowledge Graph for Recommender Systems. CIKM 2018.")
class RippleNet(KnowledgeRecommender):
    """A user is represented by *ripple sets*: hop ``k``'s set holds ``M = n_memory`` KG triples ``(h, R, t)``
    sampled among those starting at the user's items (hop 1) or at the previous hop's tails (Wang et al.,
    CIKM 2018). For candidate item ``v`` (its entity's embedding), each hop attends over its triples,
    ``p_i = softmax_i(v^T R_i h_i)``, reads ``o = sum_i p_i t_i`` and updates the item ``v <- W (v + o)``
    (RecBole's ``plus_transform``); ``score(u, v) = v_H . sum_k o_k`` with ``v_H`` the last updated item vector.
    Relations are ``d x d`` matrices. Training: binary cross-entropy on a positive and one uniform negative
    (``softplus(-pos) + softplus(neg)``) minus ``kg_weight`` times ``sum_k mean_i sigmoid(t_i^T R_i h_i)`` over the
    batch users' ripple triples (the paper's KG likelihood) plus ``reg_weight`` times RecBole's EmbLoss of the
    triples' vectors and the transform ``W``.

    An item linked to an entity starts from that entity (its ripple seeds are the entity); an item without an
    entity has a node of its own with no KG triples (it is a seed that starts no triple). The ripple sets are
    sampled once (as in RecBole and the official code) from a generator seeded by ``seed`` and kept as
    persistent buffers, so a checkpoint scores exactly as the trained model. The score depends on the (user,
    item) pair, so full ranking runs ``item_chunk_size`` items at a time and ANN retrieval is refused (the
    conformance check ``ann`` is skipped for this reason).

    Departures: RecBole trains RippleNet pointwise on labelled rows; here one positive and one sampled
    negative per interaction with the same binary cross-entropy (its per-row sum of the two terms averaged;
    RecBole averages over rows); the paper's attention ``v^T R h`` and KG term ``t^T R h`` use one orientation
    of ``R`` (RecBole's code transposes ``R`` in the attention); mini-batch Adam. Defaults: RecBole 1.2.1's
    (embedding 64, 2 hops, 16 memories, kg_weight 0.01, reg_weight 1e-7, Adam 1e-3, batch 2048).

    Args (config keys): ``embed_dim``, ``n_hop``, ``n_memory``, ``kg_weight``, ``reg_weight``, ``sampler``,
    ``num_neg``, ``item_chunk_size``; see ``ripplenet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="RippleNet", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"kg", "train_graph"})
    supports_ann = False
    option_help = dict(RIPPLE_HELP)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        for key in ("n_hop", "n_memory", "item_chunk_size"):
            if int(self.cfg(key)) < 1:
                raise ConfigError(f"{key} must be >= 1, got {self.cfg(key)!r}.")
        if self.config.get("ann") is not None:
            raise ConfigError("RippleNet's score depends on the (user, item) pair: ANN retrieval is not available; "
                              "remove the ann key.")

    # ---- data ---------------------------------------------------------------------------------
    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        E, I = meta.num_entities, meta.num_items
        item_entity = meta.item_entity.long()
        own = E + torch.arange(I)
        own[0] = 0
        self.num_nodes = E + I
        item_node = torch.where(item_entity > 0, item_entity, own)
        self.register_buffer("item_node", item_node, persistent=False)
        indptr, indices = meta.train_indptr.numpy(), meta.train_indices.numpy()
        nodes = item_node.numpy()
        user_items = [nodes[indices[indptr[u]:indptr[u + 1]]] for u in range(meta.num_users)]
        rng = np.random.default_rng(int(self.config["seed"]))
        h, r, t = build_ripple_sets(user_items, meta.kg_head.long().numpy(), meta.kg_relation.long().numpy(),
                                    meta.kg_tail.long().numpy(), self.num_nodes, int(self.cfg("n_hop")),
                                    int(self.cfg("n_memory")), rng)
        for name, value in (("ripple_head", h), ("ripple_relation", r), ("ripple_tail", t)):
            self.register_buffer(name, torch.as_tensor(value))   # persistent: the sets the model was trained with

    def _get_query_encoder(self) -> nn.Module:
        return nn.Identity()  # a user is its ripple sets (prepare_scoring)

    def _get_item_encoder(self) -> nn.Module:
        d = int(self.cfg("embed_dim"))
        self.entity_embedding = IdEmbedding(self.num_nodes, d, init="xavier")
        self.relation_matrix = IdEmbedding(self.meta.num_relations, d * d, init="xavier")
        return nn.Identity()

    def build_blocks(self) -> None:
        super().build_blocks()
        d = int(self.cfg("embed_dim"))
        self.transform = nn.Linear(d, d, bias=False)
        nn.init.xavier_normal_(self.transform.weight)

    # ---- ripple memories ----------------------------------------------------------------------
    def _relation_apply(self, x: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """``x_i R_{rel_i}^T`` (i.e. ``R x``) rows ``[*, d]``: one matrix product per relation present."""
        d = x.shape[-1]
        flat, r = x.reshape(-1, d), rel.reshape(-1)
        order = torch.argsort(r, stable=True)
        counts = torch.bincount(r, minlength=self.meta.num_relations).tolist()
        W = self.relation_matrix.weight.view(-1, d, d)
        chunks = torch.split(flat[order], counts)
        out = torch.cat([c @ W[k].t() for k, c in enumerate(chunks) if len(c)] or [flat.new_zeros(0, d)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return out[inverse].view_as(x)

    def memories(self, users: torch.Tensor):
        """``(R h, t, h, rel)`` of the users' ripple sets: ``[B, H, M, d]`` (rel ``[B, H, M]``)."""
        h = self.entity_embedding(self.ripple_head[users])
        t = self.entity_embedding(self.ripple_tail[users])
        rel = self.ripple_relation[users]
        return self._relation_apply(h, rel), t, h, rel

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]):
        return self.memories(batch[self.meta.uid_field])

    def pair_scores(self, state, items: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` scores of the users' memories ``state`` and item ids ``[B, N]``."""
        Rh, t = state[0], state[1]
        v = self.entity_embedding(self.item_node[items])                  # [B, N, d]
        y = torch.zeros_like(v)
        for k in range(Rh.shape[1]):
            p = torch.softmax(torch.einsum("bnd,bmd->bnm", v, Rh[:, k]), dim=-1)
            o = torch.einsum("bnm,bmd->bnd", p, t[:, k])
            v = self.transform(v + o)
            y = y + o
        return (v * y).sum(-1)

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        if items.dim() == 1:
            return self.pair_scores(state, items[:, None])[:, 0]
        return self.pair_scores(state, items)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.score_items_in_chunks(batch, state, state[0].shape[0])

    def item_vectors(self) -> torch.Tensor:
        raise ConfigError("RippleNet's scores depend on the (user, item) pair; it has no fixed item vectors.")

    # ---- losses -------------------------------------------------------------------------------
    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        return build_loss("bce")

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        state = self.prepare_scoring(batch)
        pos = batch[self.meta.iid_field]
        neg = batch["neg_item"].reshape(len(pos), -1)
        scores = self.pair_scores(state, torch.cat([pos[:, None], neg], 1))
        loss = self.loss_fn(pos_score=scores[:, 0], neg_score=scores[:, 1:])
        Rh, t, h, rel = state
        kge = torch.sigmoid((Rh * t).sum(-1)).mean(dim=(0, 2)).sum()   # t^T R h, mean per hop, summed
        loss = loss - float(self.cfg("kg_weight")) * kge
        reg = float(self.cfg("reg_weight"))
        if reg:
            B, H, M, d = h.shape
            sq = (self.relation_matrix.weight ** 2).sum(-1)   # ||R_r||_F^2 per relation: no [B, H, M, d*d] gather
            terms = [(torch.linalg.vector_norm(h[:, k]) + torch.linalg.vector_norm(t[:, k])
                      + sq[rel[:, k]].sum().clamp(min=1e-24).sqrt()) / (B * M) for k in range(H)]
            loss = loss + reg * (sum(terms) + embedding_norm(self.transform.weight))
        return loss

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rec_loss(batch)  # the KG term is part of rec_loss (the ripple triples of the batch's users)
