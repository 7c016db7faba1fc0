"""HSTU: Hierarchical Sequential Transduction Units (pointwise SiLU attention with relative bias, gating)."""
import math

import torch
from torch import nn
from torch.nn import functional as F

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import CosineScorer
from recstudio.utils.errors import ConfigError


class HSTULayer(nn.Module):
    """One HSTU block on ``x [B, L, d]`` (pre-norm, residual):

    ``U, V, Q, K = split(SiLU(W_1 LayerNorm(x)))``;
    ``A = SiLU(Q K^T / sqrt(d_qk) + rab_{i-j}) / L`` (causal, padding keys masked) per head;
    ``x + W_2 Dropout(U ⊙ LayerNorm(A V))``. With ``time_buckets`` the bias also has the time part
    ``rab^t``: one learned value per bucket of the log time gap (``ts_bucket`` ``[B, L, L]``, see
    :func:`time_buckets`), shared by the heads as in the official code.
    """

    def __init__(self, dim: int, n_heads: int, max_len: int, dropout: float, attn_dropout: float,
                 time_buckets: int = 0):
        super().__init__()
        self.h, self.dh = n_heads, dim // n_heads
        self.norm = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, 4 * dim)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, 2 * max_len - 1))
        self.ts_bias = nn.Parameter(torch.empty(time_buckets + 1).normal_(0.0, 0.02)) if time_buckets else None
        self.attn_norm = nn.LayerNorm(dim)
        self.attn_dropout, self.dropout = nn.Dropout(attn_dropout), nn.Dropout(dropout)
        self.out = nn.Linear(dim, dim)
        self.max_len = int(max_len)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, ts_bucket: torch.Tensor = None) -> torch.Tensor:
        B, L, d = x.shape
        u, v, q, k = F.silu(self.uvqk(self.norm(x))).chunk(4, dim=-1)
        q, k, v = (t.view(B, L, self.h, self.dh).transpose(1, 2) for t in (q, k, v))  # [B, h, L, dh]
        rel = torch.arange(L, device=x.device)
        bias = self.rel_bias[:, (rel[None, :] - rel[:, None]) + self.max_len - 1]  # [h, L(i), L(j)]: j - i
        if self.ts_bias is not None:
            if ts_bucket is None:
                raise ConfigError("HSTU with a time bias needs the items' timestamps (time_seq).")
            bias = bias + self.ts_bias[ts_bucket].unsqueeze(1)  # [B, 1, L, L], every head
        a = F.silu(q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias) / L
        a = self.attn_dropout(a * allowed.unsqueeze(1).to(a.dtype))
        av = (a @ v).transpose(1, 2).reshape(B, L, d)
        return x + self.out(self.dropout(u * self.attn_norm(av)))


def time_buckets(times: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """``[B, L, L]`` long: the official bucketing of the time gap between query ``i`` and key ``j``,
    ``clamp(floor(ln(max(|t_{i+1} - t_j|, 1)) / 0.301), 0, num_buckets)``, where query ``i`` reads the time of
    the next item in the window (the time at which it predicts) and the last query its own time.

    Example:
        >>> t = torch.tensor([[10.0, 20.0, 1010.0]], dtype=torch.float64)
        >>> time_buckets(t, 128)[0].tolist()
        [[7, 0, 22], [22, 22, 0], [22, 22, 0]]
    """
    ext = torch.cat([times, times[:, -1:]], 1).to(torch.float64)
    gap = (ext[:, 1:, None] - ext[:, None, :-1]).abs().clamp(min=1.0)
    return (torch.log(gap) / 0.301).long().clamp(0, num_buckets)


class HSTUEncoder(nn.Module):
    """``Dropout(sqrt(d) e + p) -> n_layers x HSTULayer -> LayerNorm``; zeros at padding. With
    ``time_buckets > 0`` it is called with the items' timestamps too (the time part of the bias)."""

    def __init__(self, item_embedding: nn.Module, dim: int, max_len: int, n_layers: int, n_heads: int,
                 dropout: float, attn_dropout: float, time_buckets: int = 0):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"HSTU: embed_dim={dim} must be divisible by n_heads={n_heads}.")
        self.item_embedding, self.dim, self.max_len = item_embedding, dim, int(max_len)
        self.position_embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(HSTULayer(dim, n_heads, max_len, dropout, attn_dropout, time_buckets)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        self.time_buckets = int(time_buckets)

    def forward(self, seq: torch.Tensor, times: torch.Tensor = None) -> torch.Tensor:
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"HSTUEncoder: input length {L} exceeds max_seq_len={self.max_len}.")
        valid = seq != 0
        causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
        allowed = causal & valid[:, None, :] & valid[:, :, None]  # [B, L, L]
        pos = self.position_embedding(torch.arange(L, device=seq.device))
        x = self.dropout(self.item_embedding(seq) * self.dim ** 0.5 + pos).masked_fill(~valid.unsqueeze(-1), 0.0)
        ts_bucket = time_buckets(times, self.time_buckets) if self.time_buckets and times is not None else None
        for layer in self.layers:
            x = layer(x, allowed, ts_bucket)
        return self.norm(x).masked_fill(~valid.unsqueeze(-1), 0.0)


@register_model("HSTU", category="seq",
                paper="J. Zhai, L. Liao, X. Liu, Y. Wang, R. Li, X. Cao, L. Gao, Z. Gong, F. Gu, M. He, Y. Lu, "
                      "Y. Shi. Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for "
                      "Generative Recommendations. ICML 2024.")
class HSTU(SequentialRecommender):
    """HSTU (Zhai et al., ICML 2024), the sequential-transduction encoder of generative recommenders.

    Each block (:class:`HSTULayer`) projects the normalised input once into four parts with SiLU,
    ``U, V, Q, K = split(SiLU(W_1 x))``, and replaces softmax attention by **pointwise aggregated attention**:
    ``A = SiLU(Q K^T + rab) / L`` with a causal mask and a learned **relative position bias** ``rab_{j-i}`` per
    head (no normalisation over the keys, so the intensity of the history is kept); the aggregated values are
    layer-normalised, **gated** elementwise by ``U`` and projected, ``x + W_2 (U ⊙ Norm(A V))``. Inputs are
    ``sqrt(d)`` times the shared item embeddings plus learned positions; the final LayerNorm'd output at
    position ``t`` scores the next item by **cosine similarity / temperature** (the official code's
    L2-normalised embeddings), trained with a **sampled softmax** over ``num_neg`` uniform negatives
    (``loss: sampled_softmax``; the logQ correction is a constant for uniform negatives).

    Defaults: the official ML-1M setting where it fits this protocol: 2 blocks, 1 head, linear dropout 0.2,
    attention dropout 0, ``max_seq_len`` 200, 128 negatives, temperature 0.05, Adam 1e-3, batch 128;
    ``embed_dim`` 64 (the official code: 50) as SASRec here.

    The relative attention bias ``rab^{p,t}`` has both parts: the position part per head and, with
    ``time_bias: true`` (default), the time part, one learned value per bucket of the log time gap
    (``time_buckets`` 128, the official bucketing ``floor(ln|t_{i+1} - t_j| / 0.301)``: query ``i`` reads the
    time of the next item of the window, the last query its own time) shared by the heads. The model then
    reads the items' timestamps (``uses_time``; the dataset needs a time field); ``time_bias: false`` gives
    the position-only variant for data without timestamps.

    Departures: the position bias is per head (the official: shared); the attention is divided by the padded length ``L`` (as the official code);
    ``d_qk = d_v = embed_dim / n_heads``; negatives come from ``masked_uniform`` (outside the row's window).
    ``score_func`` must stay ``cosine``.

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``dropout``, ``attn_dropout``,
    ``temperature``, ``time_bias``, ``time_buckets``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``,
    ``item_feature_fields``; defaults in ``hstu.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="HSTU", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "score_func": "must be cosine: cos(output, item) / temperature (L2-normalised embeddings)",
        "n_layers": "HSTU blocks",
        "n_heads": "attention heads per block (embed_dim must be divisible by it)",
        "dropout": "dropout on the input embeddings and before each block's output projection",
        "attn_dropout": "dropout on the pointwise attention weights",
        "temperature": "temperature of the cosine scores (> 0; official: 0.05)",
        "num_neg": "uniform negatives per position of the sampled softmax (official: 128)",
        "time_bias": "add the time part of the relative attention bias (reads the items' timestamps; false for "
                     "data without a time field)",
        "time_buckets": "buckets of the log time gap in the time bias (official: 128)",
    }

    @property
    def uses_time(self) -> bool:
        return bool(self.cfg("time_bias"))

    def _get_score_func(self) -> nn.Module:
        if self.cfg("score_func") != "cosine":
            raise ConfigError(f"HSTU scores by cosine / temperature; set score_func: cosine (got "
                              f"{self.cfg('score_func')!r}).")
        return CosineScorer(temperature=self.cfg("temperature"))

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["time_bias"] and int(c["time_buckets"]) < 1:
            raise ConfigError(f"HSTU: time_buckets must be >= 1 with time_bias, got {c['time_buckets']}.")
        return HSTUEncoder(self.item_encoder, c["embed_dim"], c["max_seq_len"], c["n_layers"], c["n_heads"],
                           c["dropout"], c["attn_dropout"], int(c["time_buckets"]) if c["time_bias"] else 0)
