"""STAMP: short-term attention / memory priority, the last item's interest times the session's."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.family.seq_layers import prefix_mask, prefix_mean
from recstudio.model.registry import register_model


class STAMPEncoder(nn.Module):
    """At every position ``t`` (items ``x_1..x_t``): ``m_s`` = mean of ``x_1..x_t``, ``m_t = x_t``,
    ``a_i = w_0^T sigmoid(W_1 x_i + W_2 x_t + W_3 m_s + b_a)``, ``m_a = sum_i a_i x_i``;
    output ``tanh(W_s m_a + b_s) * tanh(W_t m_t + b_t)`` (``[B, L, d]``, zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, dim: int):
        super().__init__()
        self.item_embedding = item_embedding
        self.w_1 = nn.Linear(dim, dim, bias=False)
        self.w_2 = nn.Linear(dim, dim, bias=False)
        self.w_3 = nn.Linear(dim, dim, bias=False)
        self.b_a = nn.Parameter(torch.zeros(dim))
        self.w_0 = nn.Linear(dim, 1, bias=False)
        self.mlp_s = nn.Linear(dim, dim)
        self.mlp_t = nn.Linear(dim, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(seq)  # [B, L, d], zeros at padding
        m_s = prefix_mean(x, seq)
        query = self.w_2(x) + self.w_3(m_s) + self.b_a  # per position t
        alpha = self.w_0(torch.sigmoid(self.w_1(x).unsqueeze(1) + query.unsqueeze(2))).squeeze(-1)  # [B, t, i]
        m_a = torch.bmm(alpha.masked_fill(~prefix_mask(seq), 0.0), x)
        out = torch.tanh(self.mlp_s(m_a)) * torch.tanh(self.mlp_t(x))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("STAMP", category="seq",
                paper="Q. Liu, Y. Zeng, R. Mokhosi, H. Zhang. STAMP: Short-Term Attention/Memory Priority Model "
                      "for Session-based Recommendation. KDD 2018.")
class STAMP(SequentialRecommender):
    """STAMP (Liu et al., KDD 2018).

    For the items ``x_1..x_t`` seen so far, the *external memory* ``m_s`` is their mean embedding and
    the *short-term memory* ``m_t = x_t`` is the last one. An attention over the items,
    ``a_i = w_0^T sigmoid(W_1 x_i + W_2 x_t + W_3 m_s + b_a)`` (unnormalised, as in the paper), gives the
    general interest ``m_a = sum_i a_i x_i``; two one-layer MLPs give ``h_s = tanh(W_s m_a + b_s)`` and
    ``h_t = tanh(W_t m_t + b_t)``, and item ``i`` scores ``<h_s * h_t, x_i>`` with the shared item
    embeddings (the trilinear composition of the paper; ANN works).

    Training uses every position at once (the base's causal mode: position ``t`` sees items
    ``<= t`` and predicts item ``t + 1``, the same examples as the paper's prefix expansion). Defaults are
    RecBole's (``embed_dim`` 64, full-softmax cross-entropy, Adam 1e-3, ``max_seq_len`` 50).

    Departures: users' whole histories (the latest ``max_seq_len`` items) are the sequences (the paper:
    anonymous sessions); the item table is Xavier-initialised and the layers use PyTorch's default init
    (the paper: N(0, 0.002)); ``m_a`` is the attention sum alone (RecBole adds ``m_s`` to it); evaluation
    ranks all items.

    Args (config keys): ``embed_dim``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``,
    ``gbce_t``, ``item_feature_fields``; defaults in ``stamp.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="STAMP", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = dict(SEQ_HELP)

    def _get_sequence_encoder(self) -> nn.Module:
        return STAMPEncoder(self.item_encoder, self.cfg("embed_dim"))
