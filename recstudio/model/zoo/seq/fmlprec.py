"""FMLP-Rec: an all-MLP sequential encoder whose token mixing is a learnable filter applied by FFT."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class CausalFilterLayer(nn.Module):
    """``LayerNorm(x + Dropout(k * x))`` where ``(k * x)_t = sum_{j <= t} k_{t-j} x_j`` per channel: a
    learnable filter of length ``L`` applied in the frequency domain (``rfft`` of ``x`` and ``k`` zero-padded to
    ``2L``, product, ``irfft``, first ``L`` steps), so position ``t`` mixes positions ``<= t`` only."""

    def __init__(self, max_len: int, dim: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.size(1)
        n = 2 * L
        xf = torch.fft.rfft(x, n=n, dim=1)
        kf = torch.fft.rfft(self.kernel[:L], n=n, dim=0)
        y = torch.fft.irfft(xf * kf.unsqueeze(0), n=n, dim=1)[:, :L]
        return self.norm(x + self.dropout(y))


class FMLPEncoder(nn.Module):
    """``LayerNorm(e + p) -> Dropout -> n_layers x [CausalFilterLayer -> LayerNorm(x + Dropout(FFN(x)))]``
    (FFN: ``Linear(d, 4d) -> GELU -> Linear(4d, d)``); padding positions are zeroed before every filter, so
    they never leak into real positions; outputs at padding are zero."""

    def __init__(self, item_embedding: nn.Module, dim: int, max_len: int, n_layers: int, dropout: float,
                 eps: float = 1e-12):
        super().__init__()
        self.item_embedding, self.max_len = item_embedding, int(max_len)
        self.position_embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.filters = nn.ModuleList(CausalFilterLayer(max_len, dim, dropout, eps) for _ in range(n_layers))
        self.ffns = nn.ModuleList(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
                                                nn.Dropout(dropout)) for _ in range(n_layers))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(dim, eps=eps) for _ in range(n_layers))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"FMLPEncoder: input length {L} exceeds max_seq_len={self.max_len}.")
        pad = (seq == 0).unsqueeze(-1)
        pos = torch.arange(L, device=seq.device)
        x = self.dropout(self.norm(self.item_embedding(seq) + self.position_embedding(pos)))
        for filt, ffn, norm in zip(self.filters, self.ffns, self.ffn_norms):
            x = filt(x.masked_fill(pad, 0.0))
            x = norm(x + ffn(x))
        return x.masked_fill(pad, 0.0)


@register_model("FMLPRec", category="seq", aliases=("FMLP-Rec",),
                paper="K. Zhou, H. Yu, W. X. Zhao, J.-R. Wen. Filter-enhanced MLP is All You Need for Sequential "
                      "Recommendation. WWW 2022.")
class FMLPRec(SequentialRecommender):
    """FMLP-Rec (Zhou et al., WWW 2022).

    The user's latest ``max_seq_len`` items (shared item table + learned positions, LayerNorm, dropout) pass
    through ``n_layers`` blocks of a **learnable filter layer** — the sequence is taken to the frequency
    domain by FFT, multiplied by a learnable filter per channel and taken back (``LayerNorm(x + Dropout(.))``)
    — and a point-wise feed-forward layer (``Linear(d, 4d)``, GELU, ``Linear(4d, d)``, residual, LayerNorm).
    The output at position ``t`` scores the next item by the inner product with the item embeddings.

    **Departure (causality)**: the paper's filter is a global (circular) filter ``irfft(W ⊙ rfft(x))`` over the
    whole sequence, so the output at ``t`` depends on later items, and its official code trains every
    position at once -- each position then sees its own target. Here the filter is parametrised by a
    length-``max_seq_len`` kernel ``k`` per channel and applied as a *causal* (linear, not circular)
    convolution through zero-padded FFTs (:class:`CausalFilterLayer`): the same family of learnable
    frequency-domain filters restricted to causal ones, so every position may be trained honestly (and
    evaluation reads the last position, as the paper).

    Other departures: full-softmax loss by default (the paper: BCE with one sampled negative, ``loss: bce``);
    evaluation ranks all items (the paper: 99 sampled negatives). Defaults: the paper's (``embed_dim`` 64,
    2 blocks, dropout 0.5, ``max_seq_len`` 50, Adam 1e-3, batch 256).

    Args (config keys): ``embed_dim``, ``n_layers``, ``dropout``, ``max_seq_len``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``fmlprec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="FMLPRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "n_layers": "filter + feed-forward blocks",
        "dropout": "dropout on the embeddings, after each filter and in each feed-forward layer",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        return FMLPEncoder(self.item_encoder, c["embed_dim"], c["max_seq_len"], c["n_layers"], c["dropout"])
