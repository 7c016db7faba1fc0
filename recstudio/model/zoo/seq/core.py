"""CORE: the session vector is a weighted sum of its item embeddings, scored by cosine / temperature."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.seq_blocks import RecBoleTransformerEncoder, causal_softmax_pool
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import CosineScorer
from recstudio.utils.errors import ConfigError

DNN_TYPES = ("trm", "ave")


class ItemDropoutCosine(CosineScorer):
    """``cos(q, Dropout(v)) / temperature``: CORE's robust distance measuring (dropout on the candidate item
    embeddings while training; none at evaluation, where it is the plain cosine scorer)."""

    def __init__(self, temperature: float, item_dropout: float):
        super().__init__(temperature=temperature)
        self.item_dropout = nn.Dropout(item_dropout)

    def pair_score(self, query, items):
        return super().pair_score(query, self.item_dropout(items))

    def _score_matrix(self, query, items):
        return super()._score_matrix(query, self.item_dropout(items))


class COREEncoder(nn.Module):
    """``x = Dropout_sess(e)``; weights ``alpha_{t,j} = softmax_{j <= t}(w^T h_j + b)`` with ``h`` a causal
    transformer over ``x`` (``trm``) or uniform (``ave``); output ``sum_{j <= t} alpha_{t,j} x_j``, i.e. in
    the item embedding space (zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, transformer, dim: int, sess_dropout: float):
        super().__init__()
        self.item_embedding, self.trm = item_embedding, transformer
        self.sess_dropout = nn.Dropout(sess_dropout)
        self.fn = nn.Linear(dim, 1) if transformer is not None else None

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        valid = seq != 0
        x = self.sess_dropout(self.item_embedding(seq))
        if self.trm is None:
            scores = torch.zeros(seq.shape, dtype=x.dtype, device=x.device)
        else:
            t = self.trm
            if seq.size(1) > t.max_len:
                raise ConfigError(f"COREEncoder: input length {seq.size(1)} exceeds max_seq_len={t.max_len}.")
            pos = torch.arange(seq.size(1), device=seq.device)
            h = t.dropout(t.layer_norm(x + t.position_embedding(pos)))
            h = t.encoder(h, mask=t.attention_mask(seq))
            scores = self.fn(h).squeeze(-1)
        return causal_softmax_pool(scores, x, valid).masked_fill(~valid.unsqueeze(-1), 0.0)


@register_model("CORE", category="seq",
                paper="Y. Hou, B. Hu, Z. Zhang, W. X. Zhao. CORE: Simple and Effective Session-based Recommendation "
                      "within Consistent Representation Space. SIGIR 2022.")
class CORE(SequentialRecommender):
    """CORE (Hou et al., SIGIR 2022).

    **Representation-consistent encoding**: the sequence vector is a convex combination of the (session-
    dropped-out) item embeddings themselves, ``s_t = sum_{j <= t} alpha_{t,j} x_j``, so sequences and items
    live in the same space; the weights come from a causal transformer over the items,
    ``alpha_{t,.} = softmax_{j <= t}(w^T h_j + b)`` (``dnn_type: trm``, CORE-trm) or are uniform (``ave``,
    CORE-ave: the mean). **Robust distance measuring**: items are scored by ``cos(s_t, Dropout(v_i)) / tau``
    (``temperature`` tau, ``item_dropout`` on the candidate embeddings while training,
    :class:`ItemDropoutCosine`), trained with the full softmax.

    Training predicts the next item at every position at once (the weights at position ``t`` use positions
    ``<= t`` only, :func:`~recstudio.model.module.seq_blocks.causal_softmax_pool`); at the last position this
    is exactly the paper's session vector. Evaluation ranks all items by the cosine (ANN: metric cosine).

    Defaults: RecBole's CORE (``embed_dim`` 64, 2 layers, 2 heads, feed-forward 256, GELU, dropout 0.5,
    ``sess_dropout`` 0.2, ``item_dropout`` 0.2, ``temperature`` 0.07, ``max_seq_len`` 50, Adam 1e-3, batch 128).

    Departures: users' histories instead of sessions; one dropout rate for hidden and attention dropout in the
    transformer; training at every position (RecBole: the last item of every prefix). ``score_func`` must stay
    ``cosine`` (the method's scorer).

    Args (config keys): ``embed_dim``, ``dnn_type``, ``n_layers``, ``n_heads``, ``ffn_dim``, ``dropout``,
    ``sess_dropout``, ``item_dropout``, ``temperature``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``core.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="CORE", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "score_func": "must be cosine: cos(sequence, item) / temperature with item dropout (CORE's scorer)",
        "dnn_type": "trm: weights from a causal transformer (CORE-trm); ave: uniform weights (CORE-ave)",
        "n_layers": "transformer layers (dnn_type trm)",
        "n_heads": "attention heads per layer (embed_dim must be divisible by it)",
        "ffn_dim": "feed-forward width of each transformer layer",
        "dropout": "dropout inside the transformer (dnn_type trm)",
        "sess_dropout": "dropout on the item embeddings of the input sequence",
        "item_dropout": "dropout on the candidate item embeddings while training",
        "temperature": "cosine temperature tau (> 0)",
    }

    def _get_score_func(self) -> nn.Module:
        if self.cfg("score_func") != "cosine":
            raise ConfigError(f"CORE scores by cosine / temperature; set score_func: cosine (got "
                              f"{self.cfg('score_func')!r}).")
        return ItemDropoutCosine(self.cfg("temperature"), self.cfg("item_dropout"))

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["dnn_type"] not in DNN_TYPES:
            raise ConfigError(f"CORE dnn_type must be one of {DNN_TYPES}, got {c['dnn_type']!r}.")
        trm = None
        if c["dnn_type"] == "trm":
            trm = RecBoleTransformerEncoder(self.num_tokens, c["embed_dim"], c["max_seq_len"], c["n_layers"],
                                            c["n_heads"], c["ffn_dim"], c["dropout"], item_embedding=self.item_encoder)
        return COREEncoder(self.item_encoder, trm, c["embed_dim"], c["sess_dropout"])
