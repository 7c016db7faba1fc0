"""CKE: collaborative knowledge-base embedding (the structural-knowledge part)."""
import torch
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.kg import TransR
from recstudio.model.registry import register_model


class _ItemWithEntity(nn.Module):
    """Item vector ``eta_i + v_e(i)``: the item's own embedding plus its entity's TransR embedding (zero for an
    item without an entity: ``item_entity`` is 0, the padding row)."""

    def __init__(self, items: IdEmbedding, entities: IdEmbedding, item_entity: torch.Tensor):
        super().__init__()
        self.items, self.entities = items, entities
        self.register_buffer("item_entity", item_entity, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.items(ids) + self.entities(self.item_entity[ids])


@register_model("CKE", category="kg",
                paper="F. Zhang, N. J. Yuan, D. Lian, X. Xie, W.-Y. Ma. Collaborative Knowledge Base Embedding for "
                      "Recommender Systems. KDD 2016.")
class CKE(KnowledgeRecommender):
    """Matrix factorisation whose item vector adds the item's knowledge-graph entity embedding,
    ``score(u, i) = p_u . (eta_i + v_e(i))``, where the entity embeddings ``v`` are learned by TransR on the
    knowledge graph at the same time (Zhang et al., KDD 2016, structural knowledge).

    Training is joint (``kg_schedule: joint``): each step minimises the BPR loss of a batch of interactions
    (one uniform negative the user has not seen) plus ``kg_weight`` times the TransR loss of a batch of
    triples ``-ln sigma(d(h, r, t') - d(h, r, t))`` with ``d`` the squared distance of the unit-normalised
    projected vectors (a uniformly corrupted tail ``t'``), plus ``reg_weight`` / ``kg_reg_weight`` times
    RecBole's embedding norm of the batch's vectors. An item without an entity gets no knowledge term
    (its entity vector is the zero padding row); entities not linked to items are learned from the KG only.

    Departures from the paper, as RecBole's CKE: only the structural component (the textual and visual
    auto-encoders of the paper are omitted: ml-100k-kg has no item texts / images); mini-batch Adam on a
    summed loss instead of per-sample SGD; the TransR loss is the BPR form on squared distances (with unit
    normalisation) instead of the paper's sigmoid of the distance difference per sample; defaults are
    RecBole 1.2.1's (embedding 64, relation dimension 64, reg weights 0.01 / 0.01, Adam 1e-3, batch 2048),
    with as many KG triples per step as interactions (RecBole: its KG loader in RSKG mode).

    Args (config keys): ``embed_dim``, ``kg_embed_dim``, ``kg_weight``, ``kg_batch_size``, ``kg_schedule``,
    ``kg_loss``, ``kg_margin``, ``reg_weight``, ``kg_reg_weight``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``; see ``cke.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="CKE", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    def _get_item_encoder(self) -> nn.Module:
        d = self.cfg("embed_dim")
        self.entity_embedding = IdEmbedding(self.meta.num_entities, d, init="xavier")
        items = IdEmbedding(self.meta.num_items, d, init="xavier")
        return _ItemWithEntity(items, self.entity_embedding, self.meta.item_entity.long())

    def build_blocks(self) -> None:
        super().build_blocks()
        self.kg_scorer = TransR(self.meta.num_relations, self.cfg("embed_dim"), self.cfg("kg_embed_dim"),
                                squared=True, normalize=True)

    def kg_loss(self, kg_batch):
        return self.kg_triple_loss(self.kg_scorer, self.entity_embedding, kg_batch)
