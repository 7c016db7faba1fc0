"""LightSANs: low-rank decomposed self-attention over k latent interests, with decoupled positions."""
import math

import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.seq_blocks import causal_softmax_pool
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class LightAttention(nn.Module):
    """One low-rank decomposed, causal self-attention sub-layer (``LayerNorm(x + Dropout(W ctx))``).

    At position ``t`` the keys and values of positions ``<= t`` are aggregated into ``k`` interests
    (item-to-interest aggregation: ``K~_t = softmax_{j <= t}(K_j Theta)^T K_{<= t}``, separate ``Theta`` for
    the values), the query attends over those ``k`` interests (``softmax_k(q_t K~_t^T / sqrt(d_h))``), and a
    decoupled position attention ``softmax_{j <= t}((P_t W_q)(P_j W_k)^T / (sqrt(2 d_h) sqrt(d_h))) V_j`` is added (RecBole's scaling).
    """

    def __init__(self, dim: int, n_heads: int, k_interests: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.h, self.dh = n_heads, dim // n_heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.theta_k = nn.Parameter(torch.randn(dim, k_interests) * 0.02)
        self.theta_v = nn.Parameter(torch.randn(dim, k_interests) * 0.02)
        self.pos_q, self.pos_k = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.pos_norm = nn.LayerNorm(dim, eps=eps)
        self.attn_dropout, self.out_dropout = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        k_int = causal_softmax_pool(k @ self.theta_k, k, valid)  # [B, L, K, d]
        v_int = causal_softmax_pool(v @ self.theta_v, v, valid)
        qh = q.view(B, L, 1, self.h, self.dh)
        scores = (qh * k_int.view(B, L, -1, self.h, self.dh)).sum(-1) / math.sqrt(self.dh)  # [B, L, K, h]
        probs = self.attn_dropout(torch.softmax(scores, dim=2))
        ctx_item = (probs.unsqueeze(-1) * v_int.view(B, L, -1, self.h, self.dh)).sum(2)  # [B, L, h, dh]
        p = self.pos_norm(pos)  # [L, d]
        pq = self.pos_q(p).view(L, self.h, self.dh).transpose(0, 1)  # [h, L, dh]
        pk = self.pos_k(p).view(L, self.h, self.dh).transpose(0, 1)
        pos_scores = (pq @ pk.transpose(1, 2)) / math.sqrt(2 * self.dh) / math.sqrt(self.dh)  # [h, L, L]
        eye = torch.eye(L, dtype=torch.bool, device=x.device)
        blocked = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1) | ~valid[:, None, None, :]
        blocked = blocked & ~eye
        pos_probs = torch.softmax(pos_scores.unsqueeze(0).masked_fill(blocked, float("-inf")), dim=-1)
        ctx_pos = pos_probs @ v.view(B, L, self.h, self.dh).transpose(1, 2)  # [B, h, L, dh]
        ctx = (ctx_item + ctx_pos.transpose(1, 2)).reshape(B, L, d)
        return self.norm(x + self.out_dropout(self.dense(ctx)))


class LightSANsEncoder(nn.Module):
    """``LayerNorm(e) -> Dropout -> n_layers x [LightAttention -> LayerNorm(x + Dropout(FFN(x)))]`` with a
    position table used only by the decoupled position attention; zeros at padding."""

    def __init__(self, item_embedding: nn.Module, dim: int, max_len: int, n_layers: int, n_heads: int,
                 k_interests: int, ffn_dim: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"LightSANs: embed_dim={dim} must be divisible by n_heads={n_heads}.")
        self.item_embedding, self.max_len = item_embedding, int(max_len)
        self.position_embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.norm, self.dropout = nn.LayerNorm(dim, eps=eps), nn.Dropout(dropout)
        self.attn = nn.ModuleList(LightAttention(dim, n_heads, k_interests, dropout, eps) for _ in range(n_layers))
        self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim),
                                               nn.Dropout(dropout)) for _ in range(n_layers))
        self.ffn_norm = nn.ModuleList(nn.LayerNorm(dim, eps=eps) for _ in range(n_layers))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"LightSANsEncoder: input length {L} exceeds max_seq_len={self.max_len}.")
        valid = seq != 0
        pos = self.position_embedding(torch.arange(L, device=seq.device))
        x = self.dropout(self.norm(self.item_embedding(seq)))
        for attn, ffn, norm in zip(self.attn, self.ffn, self.ffn_norm):
            x = attn(x, pos, valid)
            x = norm(x + ffn(x))
        return x.masked_fill(~valid.unsqueeze(-1), 0.0)


@register_model("LightSANs", category="seq",
                paper="X. Fan, Z. Liu, J. Lian, W. X. Zhao, X. Xie, J.-R. Wen. Lighter and Better: Low-Rank "
                      "Decomposed Self-Attention Networks for Next-Item Recommendation. SIGIR 2021.")
class LightSANs(SequentialRecommender):
    """LightSANs (Fan et al., SIGIR 2021).

    Self-attention with **low-rank decomposition**: instead of attending over all ``L`` positions, each query
    attends over ``k_interests`` latent interests, obtained by item-to-interest aggregation of the keys
    (values) with a learned ``Theta in R^{d x k}``, ``K~ = softmax_L(K Theta)^T K``; and **decoupled position
    encoding**: positions are not added to the item embeddings but enter through a separate attention over
    the position embeddings, ``softmax((P W_q)(P W_k)^T / (sqrt(2 d_h) sqrt(d_h))) V``, added to the item context
    (:class:`LightAttention`; then dense, residual, LayerNorm, and a GELU feed-forward layer). The output at
    position ``t`` scores the next item by the inner product with the (shared) item embeddings.

    **Departure (causality)**: the paper aggregates the interests over the whole sequence; to train every
    position at once without the output at ``t`` seeing later items, the interests at ``t`` aggregate
    positions ``<= t`` only (a prefix softmax, :func:`~recstudio.model.module.seq_blocks.causal_softmax_pool`)
    and the position attention is causal with padding masked. At the last position this equals the paper's
    computation on the input sequence (apart from the padding, which RecBole's implementation does not mask).
    The interest attention is normalised over the ``k`` interests as in the paper's equations (RecBole
    normalises over the queries).

    Defaults: RecBole's LightSANs (``embed_dim`` 64, 2 layers, 2 heads, ``k_interests`` 5, feed-forward 256,
    dropout 0.5, ``max_seq_len`` 50, full softmax, Adam 1e-3, batch 128).

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``k_interests``, ``ffn_dim``, ``dropout``,
    ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``;
    defaults in ``lightsans.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="LightSANs", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "n_layers": "light self-attention layers",
        "n_heads": "attention heads per layer (embed_dim must be divisible by it)",
        "k_interests": "latent interests the keys and values are aggregated into (the rank k)",
        "ffn_dim": "feed-forward width of each layer",
        "dropout": "dropout on the embeddings, the attention weights and inside the layers",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["k_interests"] < 1:
            raise ConfigError(f"LightSANs k_interests must be >= 1, got {c['k_interests']}.")
        return LightSANsEncoder(self.item_encoder, c["embed_dim"], c["max_seq_len"], c["n_layers"], c["n_heads"],
                                c["k_interests"], c["ffn_dim"], c["dropout"])
