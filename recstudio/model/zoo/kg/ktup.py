"""KTUP: translation-based user preferences (TUP) learned jointly with a TransH knowledge graph."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import TransH, kg_margin_loss
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

KTUP_HELP = {
    "embed_dim": "size of the user, item, entity, relation and preference embeddings",
    "use_st_gumbel": "induce one hard preference per (user, item) with the straight-through Gumbel softmax in "
                     "training (false: the soft attention over the preferences)",
    "L1_flag": "score with the L1 distance (false: the squared L2 distance)",
    "margin": "margin of the TransH loss on the KG triples",
    "kg_weight": "weight of the KG step's loss (TransH margin loss + orthogonality + norm penalty)",
    "align_weight": "weight of the squared distance between an item's embedding and its entity's",
    "kg_batch_size": "KG triples drawn for each training batch of interactions",
    "kg_schedule": "'alternating' (a rec step, then a KG step per batch) or 'joint' (one step on both losses)",
    "sampler": "negative sampler of the interactions (masked_uniform: a uniform item the user has not seen)",
    "num_neg": "negative items per interaction",
    "item_chunk_size": "items scored at once in full ranking (memory: users x chunk x embed_dim floats)",
}


def orthogonal_loss(relations: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """``sum_r (w_r . r)^2 / ||r||^2``: TransH's soft constraint that a translation lies in its hyperplane."""
    return ((normals * relations).sum(-1) ** 2 / (relations ** 2).sum(-1).clamp(min=1e-12)).sum()


def norm_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum max(||x||^2 - 1, 0)`` over the rows: TransH's soft unit-ball constraint (RecBole's EmbMarginLoss)."""
    return sum(F.relu((x ** 2).sum(-1) - 1.0).sum() for x in tensors)


@register_model("KTUP", category="kg",
                paper="Y. Cao, X. Wang, X. He, Z. Hu, T.-S. Chua. Unifying Knowledge Graph Learning and "
                      "Recommendation: Towards a Better Understanding of User Preferences. WWW 2019.")
class KTUP(KnowledgeRecommender):
    """Translation-based user preferences jointly trained with TransH (Cao et al., WWW 2019). There are as many
    latent *preferences* ``p`` as KG relations, each a translation ``p_k`` and a hyperplane normal ``w_k``, tied to
    its relation's (KTUP's "knowledge-enhanced" preferences: ``(p_k + r_k) / 2``, ``(w_k + w_{r_k}) / 2``). For
    user ``u`` and item ``i`` (item vector ``i = q_i + e_i``, its own embedding plus its entity's):

    - preference attention ``a = softmax((u + i) . (P + R)^T / 2)`` (one-hot with the straight-through Gumbel
      softmax in training when ``use_st_gumbel``; at evaluation the argmax, without noise);
    - ``p = a (P + R) / 2``, ``w = a (W_P + W_R) / 2`` (unit-normalised), projections ``x_w = x - (w . x) w``;
    - ``score(u, i) = -||u_w + p - i_w||^2`` (``-||.||_1`` with ``L1_flag``).

    The recommendation step minimises BPR on these scores (one uniform negative), the orthogonality of the
    preferences to their normals ``sum_k (w_k . p_k)^2 / ||p_k||^2`` and ``align_weight`` times the squared
    distance between the batch items' embeddings and their entities'. The KG step (``kg_schedule:
    alternating``) minimises ``kg_weight`` times the TransH margin loss ``max(0, margin - s(h, r, t) + s(h, r, t'))``
    (:class:`~recstudio.model.module.kg.TransH`, squared distance, a uniformly corrupted tail), the orthogonality
    of the batch's relations and the unit-ball penalty ``sum max(||x||^2 - 1, 0)`` of the entity and relation
    vectors, plus ``align_weight`` times the alignment of the items among the triples' entities (the family
    multiplies the whole KG step by ``kg_weight``; RecBole leaves this alignment out of it: the same at the
    defaults, both 1).

    The score depends on the (user, item) pair through the attention, so full ranking scores ``item_chunk_size``
    items at a time and ANN retrieval is refused (the conformance check ``ann`` is skipped for this reason).
    An item without an entity has the zero entity vector and no alignment term.

    Departures: as RecBole 1.2.1's KTUP, whose defaults these are (embedding 64, ST Gumbel on, L2, margin 1,
    kg / align weights 1, Adam 1e-3, batch 2048), except: RecBole alternates 5 epochs of recommendation with
    5 of KG training, here the steps alternate per batch with as many KG batches of ``kg_batch_size`` (2048)
    triples as interaction batches; the hyperplane normals are unit-normalised when used (TransH's constraint;
    RecBole uses them raw); the evaluation uses the argmax preference without Gumbel noise (RecBole's predict
    draws noise, so its scores are random); users / items are not unit-normalised at initialisation (Xavier).

    Args (config keys): ``embed_dim``, ``use_st_gumbel``, ``L1_flag``, ``margin``, ``kg_weight``,
    ``align_weight``, ``kg_batch_size``, ``kg_schedule``, ``sampler``, ``num_neg``, ``item_chunk_size``; see
    ``ktup.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="KTUP", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    supports_ann = False
    option_help = dict(KTUP_HELP)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        for key in ("margin", "align_weight", "kg_weight"):
            if float(self.cfg(key)) < 0:
                raise ConfigError(f"{key} must be >= 0, got {self.cfg(key)!r}.")
        if int(self.cfg("item_chunk_size")) < 1:
            raise ConfigError(f"item_chunk_size must be >= 1, got {self.cfg('item_chunk_size')!r}.")
        if self.config.get("ann") is not None:
            raise ConfigError("KTUP's score depends on the (user, item) pair: ANN retrieval is not available; "
                              "remove the ann key.")

    def _get_item_encoder(self) -> nn.Module:
        d = int(self.cfg("embed_dim"))
        self.entity_embedding = IdEmbedding(self.meta.num_entities, d, init="xavier")
        return IdEmbedding(self.meta.num_items, d, init="xavier")

    def build_blocks(self) -> None:
        super().build_blocks()
        d, R = int(self.cfg("embed_dim")), self.meta.num_relations
        l1 = bool(self.cfg("L1_flag"))
        self.kg_scorer = TransH(R, d, p=1 if l1 else 2, squared=not l1)
        self.pref_embedding = IdEmbedding(R, d, init="xavier")
        self.pref_normal = IdEmbedding(R, d, init="xavier")

    # ---- scoring ------------------------------------------------------------------------------
    def item_full(self, items: torch.Tensor) -> torch.Tensor:
        """``q_i + e_i`` of item ids ``[*]``."""
        return self.item_encoder(items) + self.entity_embedding(self.item_entity[items])

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` scores of user vectors ``[B, d]`` and item ids ``[B, N]``."""
        item = self.item_full(items)
        u = users[:, None, :].expand_as(item)
        trans = (self.pref_embedding.weight[1:] + self.kg_scorer.relation.weight[1:]) / 2   # [P, d]
        normal = (self.pref_normal.weight[1:] + self.kg_scorer.normal.weight[1:]) / 2
        logits = (u + item) @ trans.t() / 2
        if self.training and self.cfg("use_st_gumbel"):
            soft = F.gumbel_softmax(logits, tau=1.0, hard=False)
            probs = (F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype) - soft).detach() + soft
        elif self.cfg("use_st_gumbel"):
            probs = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
        else:
            probs = torch.softmax(logits, -1)
        p = probs @ trans
        w = F.normalize(probs @ normal, p=2, dim=-1)
        diff = (u - (u * w).sum(-1, keepdim=True) * w) + p - (item - (item * w).sum(-1, keepdim=True) * w)
        return self.kg_scorer.distance_score(diff)

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_query(batch)

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        if items.dim() == 1:
            return self.pair_scores(state, items[:, None])[:, 0]
        return self.pair_scores(state, items)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.score_items_in_chunks(batch, state, state.shape[0])

    def item_vectors(self) -> torch.Tensor:
        raise ConfigError("KTUP's scores depend on the (user, item) pair; it has no fixed item vectors.")

    # ---- losses -------------------------------------------------------------------------------
    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        return build_loss("bpr")

    def _align(self, items: torch.Tensor) -> torch.Tensor:
        items = items.reshape(-1)
        linked = items[self.item_entity[items] > 0]
        if linked.numel() == 0:
            return self.item_encoder.weight.sum() * 0.0
        diff = self.item_encoder(linked) - self.entity_embedding(self.item_entity[linked])
        dist = diff.abs().sum(-1) if self.cfg("L1_flag") else (diff ** 2).sum(-1)
        return dist.mean()

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = self.encode_query(batch)
        pos = batch[self.meta.iid_field]
        neg = batch["neg_item"].reshape(len(pos), -1)
        scores = self.pair_scores(users, torch.cat([pos[:, None], neg], 1))
        loss = self.loss_fn(pos_score=scores[:, 0], neg_score=scores[:, 1:])
        loss = loss + orthogonal_loss(self.pref_embedding.weight[1:], self.pref_normal.weight[1:])
        return loss + float(self.cfg("align_weight")) * self._align(torch.cat([pos, neg.reshape(-1)]))

    def kg_loss(self, kg_batch):
        head, rel, tp, tn = kg_batch["head"], kg_batch["relation"], kg_batch["pos_tail"], kg_batch["neg_tail"]
        h, t_pos, t_neg = (self.entity_embedding(x) for x in (head, tp, tn))
        pos, neg, _ = self.kg_scorer.corrupted_scores(h, rel, t_pos, t_neg)
        r, w = self.kg_scorer.relation(rel), F.normalize(self.kg_scorer.normal(rel), p=2, dim=-1)
        loss = (kg_margin_loss(pos, neg, float(self.cfg("margin"))) + orthogonal_loss(r, w)
                + norm_penalty(h, t_pos, t_neg, r))
        # the alignment of the items among the triples' entities (entity -> its items by the link)
        entities = torch.cat([head, tp, tn])
        is_item_entity = torch.zeros(self.meta.num_entities, dtype=torch.bool, device=entities.device)
        is_item_entity[self.item_entity[1:]] = True
        is_item_entity[0] = False
        hit = entities[is_item_entity[entities]]
        return loss + float(self.cfg("align_weight")) * self._align_entities(hit)

    def _align_entities(self, entities: torch.Tensor) -> torch.Tensor:
        """Mean alignment distance of the items linked to ``entities`` (one item per entity: the last linked)."""
        if entities.numel() == 0:
            return self.entity_embedding.weight.sum() * 0.0
        last = torch.full((self.meta.num_entities,), -1, dtype=torch.long, device=entities.device)
        ids = torch.arange(self.meta.num_items, device=entities.device)
        last.scatter_reduce_(0, self.item_entity, ids, reduce="amax", include_self=True)
        items = last[entities]
        diff = self.item_encoder(items) - self.entity_embedding(entities)
        dist = diff.abs().sum(-1) if self.cfg("L1_flag") else (diff ** 2).sum(-1)
        return dist.mean()
