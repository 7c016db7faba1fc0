"""Encoder building blocks: id embeddings, feature encoder, MLP tower, history pooling, sequence encoders.

Shapes and padding conventions (id 0 = padding everywhere) are listed in ``docs/blocks.md``.
"""
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.features import FeatureEncoder, masked_mean
from recstudio.model.module.kg import TransE, TransR, embedding_norm, kg_bpr_loss, kg_margin_loss
from recstudio.model.module.field_embedding import FieldEmbedding
from recstudio.model.module.mlp import MLP, get_activation
from recstudio.model.module.pooling import HistoryPooling, SequencePooling, masked_softmax
from recstudio.model.module.sequence import GRUSeqEncoder, TransformerSeqEncoder, gather_last, last_positions

__all__ = ["IdEmbedding", "FeatureEncoder", "FieldEmbedding", "masked_mean", "MLP", "get_activation", "HistoryPooling",
           "SequencePooling", "masked_softmax", "TransformerSeqEncoder", "GRUSeqEncoder", "gather_last", "last_positions",
           "TransE", "TransR", "kg_bpr_loss", "kg_margin_loss", "embedding_norm"]
