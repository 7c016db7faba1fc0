"""GRU4RecF: a parallel GRU over the items' feature embeddings beside GRU4Rec's item GRU (p-RNN)."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.seq_blocks import ItemFieldEmbeddings, packed_rnn, resolve_item_fields
from recstudio.model.registry import register_model


class ParallelGRUEncoder(nn.Module):
    """``[B, L]`` -> ``[B, L, d]``: an item GRU over ``Dropout(e_i)`` and a feature GRU over the concatenated
    field embeddings ``[f^1; ...; f^F]``, run in parallel over the real items; their states are concatenated,
    mapped to ``d`` by a linear layer and dropped out (p-RNN's concatenation merge, as RecBole's GRU4RecF)."""

    def __init__(self, item_embedding: nn.Module, fields: ItemFieldEmbeddings, dim: int, hidden: int,
                 n_layers: int, dropout: float):
        super().__init__()
        self.item_embedding, self.fields = item_embedding, fields
        self.dropout = nn.Dropout(dropout)
        drop_between = dropout if n_layers > 1 else 0.0
        self.item_gru = nn.GRU(dim, hidden, n_layers, batch_first=True, dropout=drop_between)
        self.feature_gru = nn.GRU(dim * fields.num_fields, hidden, n_layers, batch_first=True, dropout=drop_between)
        self.dense = nn.Linear(2 * hidden, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        valid = seq != 0
        h_item = packed_rnn(self.item_gru, self.dropout(self.item_embedding(seq)), valid)
        h_feat = packed_rnn(self.feature_gru, self.fields(seq).flatten(-2), valid)
        out = self.dropout(self.dense(torch.cat([h_item, h_feat], -1)))
        return out.masked_fill(~valid.unsqueeze(-1), 0.0)


@register_model("GRU4RecF", category="seq",
                paper="B. Hidasi, M. Quadrana, A. Karatzoglou, D. Tikk. Parallel Recurrent Neural Network "
                      "Architectures for Feature-rich Session-based Recommendations. RecSys 2016.")
class GRU4RecF(SequentialRecommender):
    """GRU4RecF: the parallel RNN (p-RNN) of Hidasi et al. (RecSys 2016) on GRU4Rec.

    Two GRUs run side by side over the user's latest ``max_seq_len`` items: one over the dropped-out id
    embeddings (as GRU4Rec), one over each item's feature embeddings (one per field of ``feature_fields``,
    concatenated; token_seq fields such as genres are the mean of their tokens' embeddings). At every
    position the two hidden states are concatenated and mapped to ``embed_dim`` by a linear layer (the
    paper's "concatenated" output merge), followed by dropout; the result scores the next item by the inner
    product with the item id embeddings (:class:`ParallelGRUEncoder`). Training, losses and evaluation are
    the sequential base's (every position predicts its next item).

    Defaults: RecBole's GRU4RecF (``embed_dim`` 64, ``hidden_dim`` 128, 1 layer, dropout 0.3, full softmax,
    Adam 1e-3, ``max_seq_len`` 50) with ``feature_fields: [class]`` (ml-100k's genres); GRU4Rec's other
    settings, so its number compares directly with GRU4Rec's.

    Departures from the paper: the paper's features are image / text vectors of the items and its training
    alternates between the subnets; here the features are the dataset's item fields and both GRUs are trained
    jointly (as RecBole); users' whole histories are the sequences; output scores against the shared id
    embeddings; full softmax instead of TOP1 / BPR (``loss: bpr, sampler: inbatch`` is available).

    Args (config keys): ``embed_dim``, ``hidden_dim``, ``n_layers``, ``dropout``, ``max_seq_len``,
    ``feature_fields``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``,
    ``item_feature_fields``; defaults in ``gru4recf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="GRU4RecF", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "hidden_dim": "state size of each GRU (RecBole: 128)",
        "n_layers": "stacked layers of each GRU",
        "dropout": "dropout on the input item embeddings and on the merged output",
        "feature_fields": "item feature fields fed, concatenated, to the feature GRU (at least one; ml-100k: "
                          "class = genres)",
    }

    @property
    def needs(self) -> frozenset:
        return frozenset({"item_features"})

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        fields = ItemFieldEmbeddings(self.item_feats, resolve_item_fields(self, c["feature_fields"], "feature_fields"),
                                     c["embed_dim"], self.meta.num_items)
        return ParallelGRUEncoder(self.item_encoder, fields, c["embed_dim"], c["hidden_dim"], c["n_layers"],
                                  c["dropout"])
