"""NARM: a GRU over the session with a global (last state) and an attentive local encoder."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.sequence import GRUSeqEncoder
from recstudio.model.family.seq_layers import prefix_mask
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class NARMEncoder(nn.Module):
    """Item embeddings -> dropout -> GRU states ``h_1..h_L``; at every position ``t``:
    ``c_g = h_t``, ``a_tj = v^T sigmoid(A_1 h_t + A_2 h_j)`` for the real items ``j <= t``,
    ``c_l = sum_j a_tj h_j``; output ``B Dropout([c_l; c_g])`` (``[B, L, embed_dim]``, zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, num_items: int, dim: int, hidden_dim: int, n_layers: int,
                 emb_dropout: float, ct_dropout: float):
        super().__init__()
        self.gru = GRUSeqEncoder(num_items, dim, hidden_dim=hidden_dim, n_layers=n_layers, dropout=emb_dropout,
                                 item_embedding=item_embedding, padding="left")
        self.gru.proj = nn.Identity()  # NARM reads the raw GRU states
        self.a_1 = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.a_2 = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)
        self.ct_dropout = nn.Dropout(ct_dropout)
        self.b = nn.Linear(2 * hidden_dim, dim, bias=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        h = self.gru(seq)  # [B, L, H], zeros at padding
        query, key = self.a_1(h), self.a_2(h)
        # [B, L(t), L(j)]: v^T sigmoid(A_1 h_t + A_2 h_j)
        alpha = self.v(torch.sigmoid(query.unsqueeze(2) + key.unsqueeze(1))).squeeze(-1)
        alpha = alpha.masked_fill(~prefix_mask(seq), 0.0)
        c_local = torch.bmm(alpha, h)
        out = self.b(self.ct_dropout(torch.cat([c_local, h], -1)))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("NARM", category="seq",
                paper="J. Li, P. Ren, Z. Chen, Z. Ren, T. Lian, J. Ma. Neural Attentive Session-based "
                      "Recommendation. CIKM 2017.")
class NARM(SequentialRecommender):
    """NARM (Li et al., CIKM 2017).

    A GRU encodes the items ``x_1..x_t``; the *global* encoder is the last state ``c_g = h_t``, the
    *local* encoder attends over all states, ``c_l = sum_{j<=t} a_tj h_j`` with
    ``a_tj = v^T sigmoid(A_1 h_t + A_2 h_j)`` (unnormalised, as in the paper). The session vector
    ``c_t = [c_l; c_g]`` is scored against the item embeddings through the bilinear decoder
    ``S_i = emb_i^T B c_t`` (``B``: ``2 hidden_dim -> embed_dim``), so ranking is an inner product with the
    shared item table (ANN works).

    Training uses every position of the sequence at once (the base's causal mode): position ``t``
    attends only to positions ``<= t`` and predicts item ``t + 1``, the same examples as the prefix
    expansion of the paper / RecBole. Defaults are RecBole's (``embed_dim`` 64, ``hidden_dim`` 128,
    1 layer, dropout 0.25 on the embeddings and 0.5 on ``c_t``, full-softmax cross-entropy, Adam 1e-3,
    ``max_seq_len`` 50).

    Departures from the paper: users' whole histories (the latest ``max_seq_len`` items) are the
    sequences (the paper: anonymous sessions); the default loss is the full softmax (the paper's
    cross-entropy over all items is the same objective); evaluation ranks all items.

    Args (config keys): ``embed_dim``, ``hidden_dim``, ``n_layers``, ``emb_dropout``, ``ct_dropout``,
    ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``;
    defaults in ``narm.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NARM", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "hidden_dim": "GRU state size (RecBole: 128)",
        "n_layers": "stacked GRU layers",
        "emb_dropout": "dropout on the input item embeddings (paper / RecBole: 0.25)",
        "ct_dropout": "dropout on the session vector [c_local; c_global] before the decoder (0.5)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        for key in ("emb_dropout", "ct_dropout"):
            if not 0.0 <= c[key] < 1.0:
                raise ConfigError(f"NARM {key} must be in [0, 1), got {c[key]}.")
        return NARMEncoder(self.item_encoder, self.num_tokens, c["embed_dim"], c["hidden_dim"], c["n_layers"],
                           c["emb_dropout"], c["ct_dropout"])
