"""TiSASRec: SASRec whose attention also reads the personalised time intervals between the items."""
import math

import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def interval_matrix(seq: torch.Tensor, times: torch.Tensor, span: int) -> torch.Tensor:
    """``[B, L, L]`` long: the personalised time interval ``r_ij = min(|t'_i - t'_j|, span)`` of each pair of
    positions, ``t'`` the row's timestamps rescaled by its smallest non-zero gap between consecutive items
    (``round((t - t_first) / gap)``: the paper's personalised unit) and 0 wherever a position is padding.

    Example:
        >>> seq = torch.tensor([[0, 5, 6, 7]])
        >>> t = torch.tensor([[0.0, 100.0, 300.0, 300.0]])
        >>> interval_matrix(seq, t, span=256)[0].tolist()
        [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 1, 0, 0]]
    """
    valid = seq != 0
    t = times.to(torch.float64)
    gaps = (t[:, 1:] - t[:, :-1]).abs()
    gaps = gaps.masked_fill(~(valid[:, 1:] & valid[:, :-1]) | (gaps <= 0), float("inf"))
    unit = gaps.amin(dim=1, keepdim=True)
    unit = torch.where(torch.isfinite(unit), unit, torch.ones_like(unit))  # no non-zero gap: unit 1
    first = t.masked_fill(~valid, float("inf")).amin(dim=1, keepdim=True)
    first = torch.where(torch.isfinite(first), first, torch.zeros_like(first))
    scaled = torch.round((t - first) / unit).masked_fill(~valid, 0.0)
    rel = (scaled[:, :, None] - scaled[:, None, :]).abs().clamp_(max=span)
    pair = valid[:, :, None] & valid[:, None, :]
    return rel.long().masked_fill_(~pair, 0)


class TimeIntervalAttention(nn.Module):
    """Self-attention whose keys and values add absolute-position and time-interval embeddings (Eq. 5-6):

    ``e_ij = q_i . (k_j + P^K_j + R^K_{r_ij}) / sqrt(d_h)``, ``z_i = sum_j a_ij (v_j + P^V_j + R^V_{r_ij})``
    with ``q = W_Q x_q``, ``k = W_K x``, ``v = W_V x``. The ``[B, L, L, d]`` interval embeddings are never
    formed: ``q_i . R^K_r`` is one ``[B, L, span + 1]`` product, gathered at ``r_ij``, and the values' term
    sums the attention weights per interval first (``[B, L, span + 1]``) before one product with ``R^V``.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"TiSASRec: embed_dim={dim} must be divisible by n_heads={n_heads}.")
        self.h, self.dh = n_heads, dim // n_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, h, L, dh]
        return x.view(x.size(0), x.size(1), self.h, self.dh).transpose(1, 2)

    def forward(self, x_q, x, pos_k, pos_v, rel, rel_k, rel_v, allowed):
        B, L, d = x.shape
        span = rel_k.size(0)
        q = self._heads(self.q(x_q))
        k = self._heads(self.k(x) + pos_k)
        v = self._heads(self.v(x) + pos_v)
        rk = rel_k.view(span, self.h, self.dh).transpose(0, 1)  # [h, S, dh]
        rv = rel_v.view(span, self.h, self.dh).transpose(0, 1)
        index = rel.unsqueeze(1).expand(B, self.h, L, L)
        scores = q @ k.transpose(-1, -2) + (q @ rk.transpose(-1, -2).unsqueeze(0)).gather(-1, index)
        scores = (scores / math.sqrt(self.dh)).masked_fill(~allowed.unsqueeze(1), float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        per_interval = torch.zeros(B, self.h, L, span, dtype=weights.dtype, device=weights.device)
        per_interval.scatter_add_(-1, index, weights)
        out = weights @ v + per_interval @ rv.unsqueeze(0)
        return out.transpose(1, 2).reshape(B, L, d)


class TiSASRecEncoder(nn.Module):
    """``item_seq [B, L]`` and ``time_seq [B, L]`` -> ``[B, L, d]`` (zeros at padding), the official block
    layout: input ``Dropout(sqrt(d) e)``; per block ``Q = LN(x)``, ``x = Q + Attn(Q, x)``,
    ``x = LN(x)``, ``x = x + FFN(x)`` (two position-wise layers with ReLU and dropout), padding zeroed;
    a final LayerNorm. Position embeddings (keys / values) and interval embeddings go into the attention only.
    """

    def __init__(self, item_embedding: nn.Module, dim: int, max_len: int, n_layers: int, n_heads: int,
                 dropout: float, time_span: int):
        super().__init__()
        self.item_embedding, self.dim, self.max_len, self.span = item_embedding, dim, int(max_len), int(time_span)
        self.pos_k, self.pos_v = nn.Embedding(max_len, dim), nn.Embedding(max_len, dim)
        self.rel_k, self.rel_v = nn.Embedding(time_span + 1, dim), nn.Embedding(time_span + 1, dim)
        for table in (self.pos_k, self.pos_v, self.rel_k, self.rel_v):
            nn.init.xavier_normal_(table.weight)
        self.dropout = nn.Dropout(dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-8) for _ in range(n_layers))
        self.attns = nn.ModuleList(TimeIntervalAttention(dim, n_heads, dropout) for _ in range(n_layers))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-8) for _ in range(n_layers))
        self.ffns = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(),
                                                nn.Linear(dim, dim), nn.Dropout(dropout)) for _ in range(n_layers))
        self.last_norm = nn.LayerNorm(dim, eps=1e-8)

    def forward(self, seq: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        if L > self.max_len:
            raise ConfigError(f"TiSASRecEncoder: input length {L} exceeds max_seq_len={self.max_len}.")
        valid = seq != 0
        causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=seq.device)
        allowed = (causal & valid[:, None, :]) | eye  # a padding row attends to itself only (zeroed later)
        rel = interval_matrix(seq, times, self.span)
        positions = torch.arange(L, device=seq.device)
        pos_k, pos_v = self.dropout(self.pos_k(positions)), self.dropout(self.pos_v(positions))
        rel_k, rel_v = self.dropout(self.rel_k.weight), self.dropout(self.rel_v.weight)
        keep = valid.unsqueeze(-1).to(pos_k.dtype)
        x = self.dropout(self.item_embedding(seq) * self.dim ** 0.5) * keep
        for attn_norm, attn, ffn_norm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            q = attn_norm(x)
            x = q + attn(q, x, pos_k, pos_v, rel, rel_k, rel_v, allowed)
            x = ffn_norm(x)
            x = (x + ffn(x)) * keep
        return self.last_norm(x) * keep


@register_model("TiSASRec", category="seq",
                paper="J. Li, Y. Wang, J. McAuley. Time Interval Aware Self-Attention for Sequential "
                      "Recommendation. WSDM 2020.")
class TiSASRec(SequentialRecommender):
    """TiSASRec (Li, Wang & McAuley, WSDM 2020): SASRec's causal self-attention with the time intervals.

    Each pair of positions ``(i, j)`` of the user's sequence gets a **personalised time interval**
    ``r_ij = min(|t'_i - t'_j|, k)``: the timestamps divided by the user's smallest non-zero gap between
    consecutive items (the paper's ``r^u_min``), rounded, and clipped at ``time_span`` (``k``; 256 on ML-1M).
    The attention (:class:`TimeIntervalAttention`) adds to every key an absolute-position embedding and the
    interval embedding ``R^K_{r_ij}``, and to every value ``P^V_j + R^V_{r_ij}`` (the paper's Eq. 5-6); the
    block layout, the ``sqrt(d)``-scaled shared item embeddings and the final LayerNorm follow the official
    code. The output at position ``t`` scores item ``s_{t+1}`` by the inner product with the item table.

    The batches carry the items' timestamps (``uses_time``; the dataset needs a time field): training,
    evaluation and ``recommend`` (the model context keeps every known interaction's time) alike.

    Defaults: the paper's ML-1M setting (2 blocks, 1 head, dropout 0.2, ``max_seq_len`` 50, ``time_span``
    256, Adam 1e-3 with betas (0.9, 0.98), batch 128) with ``embed_dim`` 64 (the paper: 50).

    Departures: the default loss is the full softmax, as for SASRec here (``loss: bce`` with ``num_neg 1``
    is the paper's objective); the personal unit ``r^u_min`` and the rescaling origin are taken from the
    window the model reads (its latest ``max_seq_len`` items, so nothing outside it, and no held-out
    timestamp, enters), not from the user's whole history as in the official preprocessing; dropout on the
    interval embeddings drops rows of the ``R^K`` / ``R^V`` tables per batch instead of entries of the
    ``[B, L, L, d]`` gathered tensors (never formed here); no ``l2_emb`` term (``weight_decay`` is available).

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``dropout``, ``max_seq_len``,
    ``time_span``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``,
    ``adam_betas``; defaults in ``tisasrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="TiSASRec", dataset="ml-100k")     # doctest: +SKIP
    """

    uses_time = True
    option_help = {
        **SEQ_HELP,
        "num_neg": "negatives per position for negative-based losses (bce: 1, as in the paper)",
        "n_layers": "number of self-attention blocks",
        "n_heads": "attention heads per block (embed_dim must be divisible by it)",
        "dropout": "dropout on the embeddings, the attention weights and inside the blocks (paper: 0.2 on ML-1M)",
        "max_seq_len": "longest input sequence (the latest items are kept; paper: 50)",
        "time_span": "the largest personalised time interval k; longer intervals are clipped to it (paper: 256 on "
                     "ML-1M)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if int(c["time_span"]) < 1:
            raise ConfigError(f"TiSASRec: time_span must be >= 1, got {c['time_span']}.")
        return TiSASRecEncoder(self.item_encoder, c["embed_dim"], c["max_seq_len"], n_layers=c["n_layers"],
                               n_heads=c["n_heads"], dropout=c["dropout"], time_span=int(c["time_span"]))


__all__ = ["TiSASRec", "TiSASRecEncoder", "TimeIntervalAttention", "interval_matrix"]
