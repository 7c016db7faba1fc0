"""CFKG: users, items and entities embedded in one translational space, the interaction a relation."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import TransE, kg_margin_loss
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

SCORES = ("inner_product", "transe")


class _UserPlusBuy(nn.Module):
    """Query ``u + r_buy``: the user's embedding translated by the interaction relation's vector."""

    def __init__(self, uid_field: str, users: IdEmbedding, relations: IdEmbedding, buy: int):
        super().__init__()
        self.uid_field, self.embedding, self.relations, self.buy = uid_field, users, relations, int(buy)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding(batch[self.uid_field]) + self.relations.weight[self.buy]


class _ItemNode(nn.Module):
    """An item's vector is its entity's (items linked to an entity share it); an item without an entity has a
    row of its own after the entities'."""

    def __init__(self, nodes: IdEmbedding, item_node: torch.Tensor):
        super().__init__()
        self.nodes = nodes
        self.register_buffer("item_node", item_node, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.nodes(self.item_node[ids])


@register_model("CFKG", category="kg",
                paper="Q. Ai, V. Azizi, X. Chen, Y. Zhang. Learning Heterogeneous Knowledge Base Embeddings for "
                      "Explainable Recommendation. Algorithms 11(9), 2018.")
class CFKG(KnowledgeRecommender):
    """Users, items and KG entities are entities of one knowledge base and "user bought item" is one more
    relation ``r_buy``; every fact ``(h, r, t)`` -- interactions and KG triples alike -- is embedded by
    translation, ``h + r ~ t`` (Ai et al., 2018). The recommendation score of user ``u`` and item ``i``:

    - ``loss_function: inner_product`` (default, RecBole's): ``score = (u + r_buy) . v_i``; every fact trains
      with ``softplus(-(h + r) . t) + softplus((h + r) . t')`` (a sampled item / corrupted tail ``t'``; the
      ``bce`` loss with one negative);
    - ``loss_function: transe``: ``score = -||u + r_buy - v_i||_2``, trained with the margin loss
      ``max(0, margin + ||h + r - t|| - ||h + r - t'||)`` (PyTorch's ``TripletMarginLoss``, the paper's
      TransE objective).

    Each step sums the loss of a batch of interactions (one uniform negative item the user has not seen) and
    ``kg_weight`` times the loss of ``kg_batch_size`` KG triples with uniformly corrupted tails (joint schedule).
    An item linked to an entity *is* that entity (its embedding is the entity's, as RecBole maps items onto
    entities); an item without an entity has an embedding of its own.

    Departures: as RecBole's CFKG, interactions and KG triples are sampled separately and summed (the paper
    mixes them in one stream), with the inner-product loss by default; mini-batch Adam. RecBole averages one
    loss over the concatenated batch of interactions and triples; here the two means are summed
    (``kg_weight`` 1: the same gradients times 2 for equal batch sizes, which Adam ignores). The KG negatives
    avoid only the true tail. Defaults: RecBole 1.2.1's (embedding 64, inner product, margin 1, Adam 1e-3,
    batch 2048) with as many KG triples per step as interactions (RecBole's KG loader in RSKG mode).

    Args (config keys): ``embed_dim``, ``loss_function``, ``margin``, ``kg_weight``, ``kg_batch_size``,
    ``kg_schedule``, ``sampler``, ``num_neg``; see ``cfkg.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="CFKG", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    option_help = {
        "embed_dim": "size of the user, item, entity and relation embeddings",
        "loss_function": "'inner_product' (score (u + r_buy) . v, softplus loss on facts and corrupted facts) or "
                         "'transe' (score -||u + r_buy - v||, margin loss)",
        "margin": "margin of loss_function 'transe'",
        "kg_weight": "weight of the KG triples' loss against the interactions' loss",
        "kg_batch_size": "KG triples drawn for each training batch of interactions",
        "kg_schedule": "'joint' (one step on rec + kg_weight * kg loss) or 'alternating' (a rec step, then a KG step)",
        "sampler": "negative sampler of the interactions (masked_uniform: a uniform item the user has not seen)",
        "num_neg": "negative items per interaction",
    }

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        if self.cfg("loss_function") not in SCORES:
            raise ConfigError(f"CFKG loss_function must be one of {SCORES}, got {self.cfg('loss_function')!r}.")
        if float(self.cfg("margin")) < 0:
            raise ConfigError(f"CFKG margin must be >= 0, got {self.cfg('margin')!r}.")

    # ---- towers -------------------------------------------------------------------------------
    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        E, I = meta.num_entities, meta.num_items
        item_entity = meta.item_entity.long()
        own = E + torch.arange(I)
        own[0] = 0  # the padding item is the padding entity
        self.register_buffer("item_node", torch.where(item_entity > 0, item_entity, own), persistent=False)

    def _get_item_encoder(self) -> nn.Module:
        d = int(self.cfg("embed_dim"))
        self.buy_relation = self.meta.num_relations  # one relation id after the KG's
        self.relation_embedding = IdEmbedding(self.buy_relation + 1, d, init="xavier")
        self.node_embedding = IdEmbedding(self.meta.num_entities + self.meta.num_items, d, init="xavier")
        return _ItemNode(self.node_embedding, self.item_node)

    def _get_query_encoder(self) -> nn.Module:
        users = IdEmbedding(self.meta.num_users, int(self.cfg("embed_dim")), init="xavier")
        return _UserPlusBuy(self.meta.uid_field, users, self.relation_embedding, self.buy_relation)

    def _get_score_func(self) -> nn.Module:
        from recstudio.model.scorer import get_score_func
        transe = self.cfg("loss_function") == "transe"
        return get_score_func("euclidean" if transe else "inner_product", dim=self.cfg("embed_dim"))

    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        if self.cfg("loss_function") == "transe":
            return build_loss("hinge", margin=float(self.cfg("margin")))
        return build_loss("bce")

    def build_blocks(self) -> None:
        super().build_blocks()
        self.kg_scorer = TransE(self.buy_relation + 1, int(self.cfg("embed_dim")))
        self.kg_scorer.relation = self.relation_embedding  # one relation table for r_buy and the KG relations

    # ---- losses -------------------------------------------------------------------------------
    def kg_loss(self, kg_batch):
        h = self.node_embedding(kg_batch["head"])
        tp, tn = self.node_embedding(kg_batch["pos_tail"]), self.node_embedding(kg_batch["neg_tail"])
        rel = kg_batch["relation"]
        if self.cfg("loss_function") == "transe":
            pos, neg, _ = self.kg_scorer.corrupted_scores(h, rel, tp, tn)
            return kg_margin_loss(pos, neg, float(self.cfg("margin")))
        anchor = h + self.relation_embedding(rel)
        return (F.softplus(-(anchor * tp).sum(-1)) + F.softplus((anchor * tn).sum(-1))).mean()
