"""GRU4Rec: a GRU over the user's item sequence, trained to predict the next item at every position."""
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.sequence import GRUSeqEncoder
from recstudio.model.registry import register_model


@register_model("GRU4Rec", category="seq",
                paper="B. Hidasi, A. Karatzoglou, L. Baltrunas, D. Tikk. Session-based Recommendations with "
                      "Recurrent Neural Networks. ICLR 2016.")
class GRU4Rec(SequentialRecommender):
    """GRU4Rec (Hidasi et al., ICLR 2016).

    The user's latest ``max_seq_len`` items are embedded with the item tower's table, passed through
    dropout and a ``n_layers``-layer GRU with ``hidden_dim`` units; a linear layer maps each state
    back to ``embed_dim`` and the state after item ``s_t`` scores the next item by the inner product
    with the item embeddings (:class:`~recstudio.model.module.sequence.GRUSeqEncoder`). Training,
    losses, samplers and evaluation are the sequential base's
    (:class:`~recstudio.model.family.sequential.SequentialRecommender`): every position of the
    sequence predicts its next item in one pass (the same examples as RecBole's prefix expansion).

    Defaults are RecBole's GRU4Rec settings: ``embed_dim`` 64, ``hidden_dim`` 128, 1 layer, dropout 0.3 on
    the embeddings, full-softmax cross-entropy (RecBole's ``CE``), Adam lr 1e-3; ``max_seq_len`` 50 (RecBole's
    ``MAX_ITEM_LIST_LENGTH``); leave-one-out split.

    Departures from the paper: users' whole histories are the sequences (the paper trains on sessions with
    session-parallel mini-batches and carries the GRU state across a session); the output layer shares the
    input item embeddings (via the ``hidden_dim -> embed_dim`` projection) instead of a separate output
    table; the default loss is the full softmax (the paper: TOP1 / BPR with in-batch negatives, available as
    ``loss: bpr, sampler: inbatch``); evaluation ranks all items.

    Args (config keys): ``embed_dim``, ``hidden_dim``, ``n_layers``, ``dropout``, ``max_seq_len``, ``loss``,
    ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``gru4rec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="GRU4Rec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "hidden_dim": "GRU state size (RecBole: 128)",
        "n_layers": "stacked GRU layers",
        "dropout": "dropout on the input item embeddings (and between GRU layers)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        return GRUSeqEncoder(self.num_tokens, c["embed_dim"], hidden_dim=c["hidden_dim"], n_layers=c["n_layers"],
                             dropout=c["dropout"], item_embedding=self.item_encoder, padding="left")
