"""FEARec: frequency-enhanced hybrid attention (auto-correlation in the frequency domain) + contrastive learning."""
import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import ITEM_SEQ, SEQ_HELP, TARGET_SEQ
from recstudio.model.module.seq_blocks import nt_xent
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.duorec import same_target_partners
from recstudio.model.zoo.seq.srgnn import PrefixGraphRecommender, all_prefixes
from recstudio.utils.errors import ConfigError

CONTRASTS = ("none", "un", "su", "us", "us_x")


def frequency_band(max_len: int, layer: int, n_layers: int, global_ratio: float) -> List[int]:
    """The rfft frequencies (of a length-``max_len`` sequence) layer ``layer`` keeps (FEARec's ramp structure).

    With ``F = max_len // 2 + 1`` frequencies: if ``global_ratio > 1 / n_layers`` every layer keeps a window of
    ``global_ratio * F`` frequencies, sliding down by ``F (1 - global_ratio) // (n_layers - 1)`` per layer
    (the "global" mixer); else layer ``l`` keeps the ``l``-th of ``n_layers`` equal bands from the top (the
    "local" mixer). ``global_ratio = 1`` keeps every frequency in every layer.

    Example:
        >>> frequency_band(8, 0, 2, 1.0), frequency_band(8, 0, 2, 0.4), frequency_band(8, 1, 2, 0.4)
        ([0, 1, 2, 3, 4], [2, 3, 4], [0, 1])
    """
    f = max_len // 2 + 1
    if global_ratio > 1.0 / n_layers:
        w = global_ratio
        s = (f * (1 - global_ratio)) // (n_layers - 1) if n_layers > 1 else 0.0
    else:
        w = 1.0 / n_layers
        s = w * f
    left, right = int(f * (1 - w) - layer * s), int(f - layer * s)
    band = list(range(max(left, 0), min(right, f)))
    if not band:
        raise ConfigError(f"FEARec: layer {layer} keeps no frequency (max_seq_len {max_len}, n_layers {n_layers}, "
                          f"global_ratio {global_ratio}); raise global_ratio or max_seq_len.")
    return band


def band_autocorrelation(q: torch.Tensor, k: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """``corr[..., tau] = sum_t q[..., (t + tau) mod L] k[..., t]`` (circular cross-correlation over the last
    dimension, ``q, k [..., L]``) computed as ``irfft(Q * conj(K))`` with only the frequencies ``band`` kept.

    Example:
        >>> q, k = torch.tensor([[1., 2., 0., 0.]]), torch.tensor([[1., 0., 0., 0.]])
        >>> band_autocorrelation(q, k, torch.arange(3)).round().tolist()
        [[1.0, 2.0, 0.0, 0.0]]
    """
    L = q.size(-1)
    qf, kf = torch.fft.rfft(q, dim=-1), torch.fft.rfft(k, dim=-1)
    box = torch.zeros_like(qf)
    box[..., band] = qf[..., band] * torch.conj(kf[..., band])
    return torch.fft.irfft(box, n=L, dim=-1)


class HybridAttention(nn.Module):
    """FEARec's hybrid attention layer on ``x [B, L, d]`` (``L`` = the fixed padded length).

    Frequency branch (auto-correlation, Eq. 5-9 of the paper): per head and channel, the circular
    cross-correlation of queries and keys is computed by FFT on the layer's frequency band
    (``irfft(Q_f * conj(K_f))`` with the other frequencies zeroed); the ``k = int(topk_factor * ln L)``
    delays of highest mean correlation are kept and the values rolled by those delays are summed with
    softmax weights (training: the delays are shared by the batch and chosen on its mean correlation, the
    weights per row; inference: delays and weights per row, as in the reference code).
    Time branch (``spatial_ratio > 0``): causal scaled dot-product attention on queries / keys / values
    filtered to the layer's band (``spatial_band``) or to all frequencies; the context is
    ``(1 - spatial_ratio) * frequency + spatial_ratio * time``.
    Output: ``LayerNorm(x + Dropout(W context))`` (post-norm).
    """

    def __init__(self, dim: int, n_heads: int, max_len: int, band: List[int], topk_factor: float,
                 spatial_ratio: float, spatial_band: bool, hidden_dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        if dim % n_heads:
            raise ConfigError(f"FEARec: embed_dim {dim} must be divisible by n_heads {n_heads}.")
        self.h, self.e, self.max_len = n_heads, dim // n_heads, max_len
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.out_dropout, self.attn_dropout = nn.Dropout(hidden_dropout), nn.Dropout(attn_dropout)
        self.register_buffer("band", torch.tensor(band, dtype=torch.long), persistent=False)
        self.top_k = max(int(topk_factor * math.log(max_len)), 1)
        self.spatial_ratio, self.spatial_band = float(spatial_ratio), bool(spatial_band)

    def _delay_aggregate(self, values: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        """``values, corr [B, H, E, L]`` -> the softmax-weighted sum of ``values`` rolled by the top delays."""
        L = values.size(-1)
        mean = corr.mean(dim=(1, 2))  # [B, L]
        if self.training:  # delays shared by the batch, weights per row
            delay = torch.topk(mean.mean(0), self.top_k).indices  # [k]
            weights = torch.softmax(mean[:, delay], dim=-1)  # [B, k]
            delay = delay.unsqueeze(0).expand(len(mean), -1)
        else:
            w, delay = torch.topk(mean, self.top_k, dim=-1)
            weights = torch.softmax(w, dim=-1)
        pos = torch.arange(L, device=values.device)
        out = torch.zeros_like(values)
        for i in range(self.top_k):  # pattern_t = values_{(t + delay) mod L}  (torch.roll by -delay)
            idx = (pos.unsqueeze(0) + delay[:, i:i + 1]) % L  # [B, L]
            pattern = values.gather(-1, idx[:, None, None, :].expand_as(values))
            out = out + pattern * weights[:, i, None, None, None]
        return out

    def _band_pass(self, x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """``x [B, H, E, L]`` with only the frequencies ``band`` kept."""
        xf = torch.fft.rfft(x, dim=-1)
        keep = torch.zeros_like(xf)
        keep[..., band] = xf[..., band]
        return torch.fft.irfft(keep, n=x.size(-1), dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = (lin(x).view(B, L, self.h, self.e).permute(0, 2, 3, 1) for lin in (self.query, self.key, self.value))
        corr = band_autocorrelation(q, k, self.band)  # [B, H, E, L]
        context = self._delay_aggregate(v, corr).permute(0, 3, 1, 2).reshape(B, L, -1)
        if self.spatial_ratio > 0:
            if self.spatial_band:
                q, k, v = (self._band_pass(t, self.band) for t in (q, k, v))
            q, k, v = (t.permute(0, 1, 3, 2) for t in (q, k, v))  # [B, H, L, E]
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.e) + mask
            probs = self.attn_dropout(torch.softmax(scores, dim=-1))
            spatial = (probs @ v).permute(0, 2, 1, 3).reshape(B, L, -1)
            context = (1 - self.spatial_ratio) * context + self.spatial_ratio * spatial
        return self.norm(x + self.out_dropout(self.dense(context)))


class FeedForward(nn.Module):
    """``LayerNorm(x + Dropout(W_2 act(W_1 x)))``."""

    def __init__(self, dim: int, inner: int, dropout: float, act: str, eps: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)
        self.act = {"gelu": F.gelu, "relu": F.relu}[act]
        self.norm, self.dropout = nn.LayerNorm(dim, eps=eps), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.fc2(self.act(self.fc1(x)))))


class FEAEncoder(nn.Module):
    """``seq [N, L'] -> [N, d]``, the representation of the row's latest item: the row is left-padded to
    ``max_len`` (the FFT length is fixed), embedded as ``Dropout(LayerNorm(item + position))`` and passed
    through ``n_layers`` FEA blocks (hybrid attention, then feed-forward)."""

    def __init__(self, item_embedding: nn.Module, dim: int, max_len: int, n_layers: int, n_heads: int, inner: int,
                 hidden_dropout: float, attn_dropout: float, act: str, eps: float, global_ratio: float,
                 topk_factor: float, spatial_ratio: float, spatial_band: bool):
        super().__init__()
        self.item_embedding, self.max_len = item_embedding, int(max_len)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.norm, self.dropout = nn.LayerNorm(dim, eps=eps), nn.Dropout(hidden_dropout)
        self.attention = nn.ModuleList(
            HybridAttention(dim, n_heads, max_len, frequency_band(max_len, i, n_layers, global_ratio), topk_factor,
                            spatial_ratio, spatial_band, hidden_dropout, attn_dropout, eps) for i in range(n_layers))
        self.ffn = nn.ModuleList(FeedForward(dim, inner, hidden_dropout, act, eps) for _ in range(n_layers))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"FEAEncoder: input length {L} exceeds max_seq_len={self.max_len}.")
        if L < self.max_len:
            seq = F.pad(seq, (self.max_len - L, 0))
        pos = torch.arange(self.max_len, device=seq.device)
        x = self.dropout(self.norm(self.item_embedding(seq) + self.position_embedding(pos)))
        real = seq != 0
        causal = torch.ones(self.max_len, self.max_len, dtype=torch.bool, device=seq.device).tril()
        allowed = causal.unsqueeze(0) & real.unsqueeze(1)  # [N, L, L]: key j <= query t and real
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, -10000.0)
        mask = mask.unsqueeze(1)  # [N, 1, L, L] (RecBole's additive -10000)
        for att, ffn in zip(self.attention, self.ffn):
            x = ffn(att(x, mask))
        return x[:, -1]


@register_model("FEARec", category="seq",
                paper="X. Du, H. Yuan, P. Zhao, J. Qu, F. Zhuang, G. Liu, Y. Liu, V. S. Sheng. Frequency Enhanced "
                      "Hybrid Attention Network for Sequential Recommendation. SIGIR 2023.")
class FEARec(PrefixGraphRecommender):
    """FEARec (Du et al., SIGIR 2023): frequency-enhanced hybrid attention blocks and contrastive learning.

    Encoder (:class:`FEAEncoder`): ``n_layers`` blocks of :class:`HybridAttention` (auto-correlation of
    queries and keys computed in the frequency domain on a per-layer band of frequencies -- the paper's
    ramp structure, :func:`frequency_band` -- with time-delay aggregation of the values; optionally mixed
    with time-domain self-attention, ``spatial_ratio``) and a GELU feed-forward, post-norm; the
    representation of a sequence is the output at its latest item; item ``i`` scores ``h . e_i`` with the
    shared item table (ANN works).

    Training: the frequency-domain correlation mixes every position of a row (and the delays wrap around),
    so one pass cannot train every position causally; as in the paper's data (and RecBole), every position
    ``t`` of the user's window predicts item ``t + 1`` from its own prefix (the prefix expansion of
    :class:`~recstudio.model.zoo.seq.srgnn.PrefixGraphRecommender`, ``B * L`` encoder rows per batch).
    Loss ``L_rec`` (default full softmax) plus, by ``contrast``:

    - ``us_x`` (the paper's FEARec, default): ``lmd_sem * NT-Xent(z', z_s)`` between a second dropout pass
      ``z'`` of a prefix and the representation ``z_s`` of another prefix of the batch with the same next item
      (supervised positive, as DuoRec);
    - ``un``: ``lmd * NT-Xent(z, z')`` (dropout views); ``su``: ``lmd_sem * NT-Xent(z, z_s)``; ``us``: both;
      ``none``: no contrastive term;
    - ``fredom_weight > 0`` adds the frequency-domain regulariser ``w * mean |rfft(a) - rfft(b)|`` for every
      pair ``(a, b)`` contrasted above (the reference code's ``fredom``, rfft over the hidden dimension).

    NT-Xent uses dot-product similarity / ``cl_temperature`` and the other ``2N - 2`` views as negatives
    (RecBole's ``info_nce`` with ``sim: dot``). Anchors are up to ``cl_anchors`` random prefixes of the batch
    whose next item is the next item of another prefix of the batch.

    Departures: the supervised positive is searched among the batch's prefixes (RecBole: the whole training
    set); at most ``cl_anchors`` anchors per batch; the anchors' own view ``z`` (modes ``un`` / ``su`` / ``us``)
    is a separate dropout pass, not the loss pass's output; one row per user (its latest ``max_seq_len + 1`` train
    items, all prefixes of that window) instead of every prefix of the whole history; positions count from
    the left of the padded window (items of a short prefix get the last position embeddings; RecBole pads on
    the right); the input is left-padded to ``max_seq_len`` before the FFT so the band is defined for any input
    length; the item table is Xavier-initialised (the base's), the encoder layers N(0, 0.02) as in RecBole.
    ``irfft`` is given the sequence length, so odd ``max_seq_len`` works too (the reference code assumes even).

    Defaults: RecBole 1.2.1's FEARec settings (2 layers, 2 heads, d 64, inner 256, dropout 0.5 / 0.5, GELU,
    ``global_ratio`` 1, ``topk_factor`` 1, time branch off, ``us_x`` with ``lmd_sem`` 0.1, temperature 1),
    ``max_seq_len`` 50, Adam 1e-3.

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``ffn_dim``, ``dropout``, ``attn_dropout``,
    ``activation``, ``layer_norm_eps``, ``global_ratio``, ``topk_factor``, ``spatial_ratio``, ``spatial_band``,
    ``contrast``, ``lmd``, ``lmd_sem``, ``cl_temperature``, ``cl_anchors``, ``fredom_weight`` and the base's
    keys; defaults in ``fearec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="FEARec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "n_layers": "number of FEA blocks",
        "n_heads": "attention heads (embed_dim must be divisible by it)",
        "ffn_dim": "inner width of the feed-forward layers",
        "dropout": "dropout on the embeddings, after the attention and the feed-forward layers",
        "attn_dropout": "dropout on the time-domain attention weights (used when spatial_ratio > 0)",
        "activation": "feed-forward activation: gelu or relu",
        "layer_norm_eps": "epsilon of the layer norms",
        "global_ratio": "share of the max_seq_len // 2 + 1 frequencies each layer keeps (> 1 / n_layers: a window "
                        "sliding down per layer; else n_layers equal bands); 1 = every frequency",
        "topk_factor": "time-delay aggregation keeps int(topk_factor * ln(max_seq_len)) delays",
        "spatial_ratio": "weight of the time-domain self-attention in the hybrid context (0: frequency branch only)",
        "spatial_band": "time-domain branch on band-filtered queries / keys / values (true) or unfiltered (false)",
        "contrast": "contrastive objective: us_x (dropout view vs same-target sequence, the paper's), un (dropout "
                    "views), su (sequence vs same-target sequence), us (un + su), none",
        "lmd": "weight of the unsupervised (dropout-view) contrastive loss (contrast un / us)",
        "lmd_sem": "weight of the supervised (same-target) contrastive loss (contrast su / us / us_x)",
        "cl_temperature": "temperature of the NT-Xent losses (> 0)",
        "cl_anchors": "most anchor prefixes per batch in the contrastive losses",
        "fredom_weight": "weight of the frequency-domain regulariser mean |rfft(a) - rfft(b)| of the contrasted "
                         "pairs (0: off)",
    }

    def build_blocks(self) -> None:
        c = self.config
        if c["contrast"] not in CONTRASTS:
            raise ConfigError(f"FEARec contrast must be one of {CONTRASTS}, got {c['contrast']!r}.")
        if c["cl_temperature"] <= 0:
            raise ConfigError(f"FEARec cl_temperature must be > 0, got {c['cl_temperature']}.")
        if c["cl_anchors"] < 2:
            raise ConfigError(f"FEARec cl_anchors must be >= 2, got {c['cl_anchors']}.")
        if not 0 < c["global_ratio"] <= 1:
            raise ConfigError(f"FEARec global_ratio must be in (0, 1], got {c['global_ratio']}.")
        if not 0 <= c["spatial_ratio"] <= 1:
            raise ConfigError(f"FEARec spatial_ratio must be in [0, 1], got {c['spatial_ratio']}.")
        if c["activation"] not in ("gelu", "relu"):
            raise ConfigError(f"FEARec activation must be 'gelu' or 'relu', got {c['activation']!r}.")
        if c["contrast"] == "none" and c["fredom_weight"] > 0:
            raise ConfigError("FEARec fredom_weight regularises the contrasted pairs; with contrast 'none' there is "
                              "none. Set a contrast or fredom_weight 0.")
        super().build_blocks()

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        enc = FEAEncoder(self.item_encoder, c["embed_dim"], c["max_seq_len"], c["n_layers"], c["n_heads"], c["ffn_dim"],
                         c["dropout"], c["attn_dropout"], c["activation"], c["layer_norm_eps"], c["global_ratio"],
                         c["topk_factor"], c["spatial_ratio"], c["spatial_band"])
        for name, m in enc.named_modules():  # RecBole's init of the encoder's own layers (not the shared item table)
            if name.startswith("item_embedding"):
                continue
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        return enc

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        mode = self.cfg("contrast")
        if mode == "none":
            return loss
        seq, target = batch[ITEM_SEQ], batch[TARGET_SEQ]
        has = target > 0
        prefixes, real = all_prefixes(seq)
        # the prefixes in all_prefixes' order are the real positions; keep those with a target
        keep = has[real]
        prefixes, tgt = prefixes[keep], target[real][keep]
        partner = same_target_partners(tgt)
        cand = (partner >= 0).nonzero().view(-1)
        if cand.numel() < 2:
            return loss
        anchors = cand[torch.randperm(cand.numel(), device=cand.device)[:self.cfg("cl_anchors")]]
        encoder, tau = self.query_encoder.encoder, self.cfg("cl_temperature")
        pairs = []
        if mode in ("un", "su", "us"):
            z = encoder(prefixes[anchors])  # the anchors' own view
        if mode in ("un", "us", "us_x"):
            z_aug = encoder(prefixes[anchors])  # a second dropout pass of the same prefixes
        if mode in ("su", "us", "us_x"):
            z_sem = encoder(prefixes[partner[anchors]])  # another sequence with the same next item
        if mode in ("un", "us"):
            pairs.append((self.cfg("lmd"), z, z_aug))
        if mode in ("su", "us"):
            pairs.append((self.cfg("lmd_sem"), z, z_sem))
        if mode == "us_x":
            pairs.append((self.cfg("lmd_sem"), z_aug, z_sem))
        w_f = self.cfg("fredom_weight")
        for w, a, b in pairs:
            loss = loss + w * nt_xent(a, b, tau)
            if w_f > 0:
                diff = torch.fft.rfft(a, dim=-1, norm="ortho") - torch.fft.rfft(b, dim=-1, norm="ortho")
                loss = loss + w_f * diff.abs().mean()
        return loss
