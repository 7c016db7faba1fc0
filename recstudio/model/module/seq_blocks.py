"""Blocks shared by the feature-aware and filter / attention variants of the sequential zoo.

- :class:`ItemFieldEmbeddings`: item ids ``[*]`` -> one embedding per item feature field ``[*, F, d]``
  (token: embedding; token_seq: masked mean; float: ``value * w + b``), zero for padding / non-items;
- :class:`FeatureConcatInput`: ``Linear([id embedding, field embeddings...])`` fused item input (SASRecF);
- :class:`FieldAttentionInput`: vanilla attention over the field embeddings of each item (FDSA);
- :class:`RecBoleTransformerEncoder`: :class:`~recstudio.model.module.sequence.TransformerSeqEncoder` with a
  chosen feed-forward width and activation (RecBole's transformer sequential models: GELU, width 256);
- :func:`packed_rnn`: run an ``nn.GRU`` / ``nn.LSTM`` over the real (non-zero) positions of a padded
  sequence only, outputs put back at their columns (zeros at padding).

Example:
    >>> rnn = torch.nn.GRU(4, 3, batch_first=True)
    >>> x, valid = torch.randn(2, 5, 4), torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]).bool()
    >>> packed_rnn(rnn, x, valid).shape
    torch.Size([2, 5, 3])
"""
from typing import Dict, Sequence

import torch
from torch import nn

from recstudio.model.module.features import FeatureEncoder
from recstudio.model.module.sequence import TransformerSeqEncoder
from recstudio.utils.errors import ConfigError


def resolve_item_fields(model, names: Sequence[str], key: str) -> Dict:
    """``name -> FieldSpec`` of ``names`` among the model's item feature fields (``model.meta.item_fields``);
    raises :class:`ConfigError` naming the config ``key`` when a field is unknown or none is given."""
    names = list(names or [])
    if not names:
        raise ConfigError(f"{type(model).__name__} fuses item features: set {key} to a list of item feature "
                          f"fields (this dataset has {sorted(model.meta.item_fields) or 'none'}).")
    available = model.meta.item_fields
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"{key} {unknown} are not item feature fields of this dataset; its item fields are "
                          f"{sorted(available) or 'none'}.")
    return {n: available[n] for n in names}


class ItemFieldEmbeddings(nn.Module):
    """Item ids ``[*]`` -> ``[*, F, d]``: each listed item feature field embedded on its own.

    Args:
        features: the model's item :class:`~recstudio.model.base.context.FeatureStore`.
        fields: field name -> FieldSpec (see :func:`resolve_item_fields`).
        dim: embedding size.
        num_items: ids ``<= 0`` or ``>= num_items`` (padding, mask token) get zero vectors.
    """

    def __init__(self, features: nn.Module, fields: Dict, dim: int, num_items: int):
        super().__init__()
        self.features = [features]  # a plain list: the store stays registered on the model only
        self.names = list(fields)
        self.encoders = nn.ModuleList(FeatureEncoder({n: (s.type, s.size)}, dim) for n, s in fields.items())
        self.num_items, self.dim = int(num_items), int(dim)

    @property
    def num_fields(self) -> int:
        return len(self.names)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids > 0) & (ids < self.num_items)
        feats = self.features[0](ids.masked_fill(~real, 0))
        out = torch.stack([enc({n: feats[n]}) for n, enc in zip(self.names, self.encoders)], dim=-2)
        return out * real.unsqueeze(-1).unsqueeze(-1).to(out.dtype)


class FeatureConcatInput(nn.Module):
    """``ids -> Linear((1 + F) d, d)([id embedding, field_1, ..., field_F])`` (RecBole's SASRecF fusion)."""

    def __init__(self, id_embedding: nn.Module, fields: ItemFieldEmbeddings):
        super().__init__()
        self.id_embedding, self.fields = id_embedding, fields
        self.proj = nn.Linear((1 + fields.num_fields) * fields.dim, fields.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        parts = torch.cat([self.id_embedding(ids).unsqueeze(-2), self.fields(ids)], dim=-2)
        return self.proj(parts.flatten(-2))


class FieldAttentionInput(nn.Module):
    """FDSA's feature input: vanilla attention over the ``F`` field embeddings of an item,
    ``a = softmax_f(w^T ReLU(W e_f + b))`` (RecBole's VanillaAttention), output ``sum_f a_f e_f`` ``[*, d]``."""

    def __init__(self, fields: ItemFieldEmbeddings, hidden: int):
        super().__init__()
        self.fields = fields
        self.score = nn.Sequential(nn.Linear(fields.dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.fields(ids)  # [*, F, d]
        a = torch.softmax(self.score(e), dim=-2)
        return (a * e).sum(-2)


def packed_rnn(rnn: nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Run a batch-first ``rnn`` over the positions where ``valid [B, L]`` is True (kept in order, any
    padding side); returns ``[B, L, hidden]`` with the outputs at their original columns, zeros elsewhere."""
    B, L = valid.shape
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
    xs = x.gather(1, order.unsqueeze(-1).expand_as(x))
    lengths = valid.sum(1).clamp(min=1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
    restored = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
    return restored.masked_fill(~valid.unsqueeze(-1), 0.0)


class RecBoleTransformerEncoder(TransformerSeqEncoder):
    """:class:`TransformerSeqEncoder` (``input embedding + positions -> LayerNorm -> Dropout -> post-norm
    layers``, causal or bidirectional, zeros at padding) whose layers have feed-forward width ``ffn_dim`` and
    activation ``activation`` (``'gelu'`` or ``'relu'``): the layout of RecBole's transformer models
    (FDSA, CL4SRec, DuoRec, ...). ``item_embedding`` may be any module ``ids [B, L] -> [B, L, d]``."""

    def __init__(self, num_items: int, dim: int, max_len: int, n_layers: int, n_heads: int, ffn_dim: int,
                 dropout: float, item_embedding: nn.Module, causal: bool = True, activation: str = "gelu"):
        if activation not in ("gelu", "relu"):
            raise ConfigError(f"activation must be 'gelu' or 'relu', got {activation!r}.")
        super().__init__(num_items, dim, max_len, n_layers=n_layers, n_heads=n_heads, dropout=dropout,
                         causal=causal, ffn_dim=ffn_dim, item_embedding=item_embedding, padding="left")
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=ffn_dim, dropout=dropout,
                                           activation=activation, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


def causal_softmax_pool(scores: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Prefix attention pooling: ``out_t = sum_{j <= t, valid} softmax_{j <= t}(scores_j) values_j``.

    Args:
        scores: ``[B, L]`` or ``[B, L, K]`` (``K`` separate poolings, e.g. interests).
        values: ``[B, L, d]``.
        valid: bool ``[B, L]`` (padding False).

    Returns ``[B, L, d]`` (or ``[B, L, K, d]``); positions with no valid ``j <= t`` give zeros. Computed by
    cumulative sums of ``exp(scores - max)`` (one pass, causal: ``out_t`` uses positions ``<= t`` only).

    Example:
        >>> v = torch.tensor([[[1.], [3.]]])
        >>> causal_softmax_pool(torch.zeros(1, 2), v, torch.ones(1, 2, dtype=torch.bool))
        tensor([[[1.],
                 [2.]]])
    """
    squeeze = scores.dim() == 2
    s = scores.unsqueeze(-1) if squeeze else scores  # [B, L, K]
    m = valid.unsqueeze(-1)
    s = s.masked_fill(~m, float("-inf"))
    top = s.amax(dim=1, keepdim=True).clamp(min=-1e30).detach()  # a constant per row: cancels in the ratio
    w = torch.exp(s - top).masked_fill(~m, 0.0)  # [B, L, K]
    num = torch.cumsum(w.unsqueeze(-1) * values.unsqueeze(2), dim=1)  # [B, L, K, d]
    den = torch.cumsum(w, dim=1).unsqueeze(-1)
    out = num / den.clamp(min=1e-30)
    out = out.masked_fill(den == 0, 0.0)
    return out.squeeze(2) if squeeze else out


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0, same: torch.Tensor = None) -> torch.Tensor:
    """NT-Xent (SimCLR / CL4SRec) of paired views ``z1, z2 [N, d]`` with dot-product similarity:
    each of the ``2N`` vectors must pick its partner among the other ``2N - 1`` (in-batch negatives).

    ``same`` (bool ``[N, N]``, optional): pairs ``(i, j)`` that are not negatives of each other (e.g. the same
    target item, DuoRec); they are removed from the denominators (the partner itself always counts).
    """
    n = z1.size(0)
    z = torch.cat([z1, z2], 0)
    sim = z @ z.t() / temperature  # [2N, 2N]
    blocked = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    if same is not None:
        s = same.repeat(2, 2) & ~torch.eye(n, dtype=torch.bool, device=z.device).repeat(2, 2)
        blocked = blocked | s
    sim = sim.masked_fill(blocked, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)
