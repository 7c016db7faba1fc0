"""FDSA: feature-level and item-level self-attention streams, concatenated (Zhang et al., IJCAI 2019)."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.seq_blocks import (FieldAttentionInput, ItemFieldEmbeddings, RecBoleTransformerEncoder,
                                               resolve_item_fields)
from recstudio.model.registry import register_model


class FDSAEncoder(nn.Module):
    """Item stream ``TRM(e_i + p)`` and feature stream ``TRM(VanillaAttn(f^1..f^F) + p)``, each a causal
    transformer; output ``Linear(2d, d)([item_t ; feature_t])``, zeros at padding."""

    def __init__(self, item_stream: nn.Module, feature_stream: nn.Module, dim: int):
        super().__init__()
        self.item_stream, self.feature_stream = item_stream, feature_stream
        self.merge = nn.Linear(2 * dim, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        out = self.merge(torch.cat([self.item_stream(seq), self.feature_stream(seq)], -1))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("FDSA", category="seq",
                paper="T. Zhang, P. Zhao, Y. Liu, V. S. Sheng, J. Xu, D. Wang, G. Liu, X. Zhou. Feature-level "
                      "Deeper Self-Attention Network for Sequential Recommendation. IJCAI 2019.")
class FDSA(SequentialRecommender):
    """FDSA (Zhang et al., IJCAI 2019).

    Two self-attention streams over the user's latest ``max_seq_len`` items:

    - item level: ``S = TRM(LayerNorm(e_{s_t} + p_t))`` with the (shared) item id embeddings;
    - feature level: each item's feature fields (``feature_fields``; token_seq fields such as genres are the
      mean of their tokens) are embedded separately and combined by vanilla attention,
      ``a = softmax_f(w^T ReLU(W f^f + b))``, ``A_t = sum_f a_f f^f``; then ``F = TRM(LayerNorm(A_t + p_t))``.

    Each ``TRM`` is a stack of causal post-norm transformer layers (GELU feed-forward of width ``ffn_dim``,
    :class:`~recstudio.model.module.seq_blocks.RecBoleTransformerEncoder`); the output at position ``t`` is
    ``W [S_t ; F_t] + b`` and scores the next item by the inner product with the item id embeddings.
    Training (every position predicts its next item), losses and evaluation are the sequential base's.

    Defaults: RecBole's FDSA (``embed_dim`` 64, 2 layers, 2 heads, feed-forward 256, GELU, dropout 0.5,
    ``max_seq_len`` 50, full softmax, Adam 1e-3, batch 128, ``feature_fields: [class]``).

    Departures from the paper / RecBole: each stream has its own position table and input LayerNorm (RecBole
    shares them); one dropout rate for hidden and attention dropout; full-softmax loss (the paper: BCE with
    sampled negatives, ``loss: bce`` is available); training at every position at once.

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``ffn_dim``, ``dropout``, ``max_seq_len``,
    ``feature_fields``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``,
    ``item_feature_fields``; defaults in ``fdsa.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="FDSA", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "n_layers": "transformer layers of each stream",
        "n_heads": "attention heads per layer (embed_dim must be divisible by it)",
        "ffn_dim": "feed-forward width of each layer",
        "dropout": "dropout on the embeddings and inside the layers",
        "feature_fields": "item feature fields of the feature-level stream (at least one; ml-100k: class = genres)",
    }

    @property
    def needs(self) -> frozenset:
        return frozenset({"item_features"})

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        d = c["embed_dim"]
        fields = ItemFieldEmbeddings(self.item_feats, resolve_item_fields(self, c["feature_fields"], "feature_fields"),
                                     d, self.meta.num_items)

        def stream(embedding):
            return RecBoleTransformerEncoder(self.num_tokens, d, c["max_seq_len"], c["n_layers"], c["n_heads"],
                                             c["ffn_dim"], c["dropout"], item_embedding=embedding)

        return FDSAEncoder(stream(self.item_encoder), stream(FieldAttentionInput(fields, d)), d)
