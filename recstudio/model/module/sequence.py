"""Sequence encoders: a SASRec-style transformer and a GRU4Rec-style GRU, plus last-position gather.

Padding: item id 0 is padding. ``'left'`` padding (the data layer's default, see
:class:`recstudio.data.types.seq.SeqDataset`) right-aligns the items, zeros first, so the latest
item is in the last column; ``'right'`` padding left-aligns them, zeros after. Both encoders accept
either; outputs at padding positions are zero.
"""
from typing import Optional

import torch
from torch import nn

from recstudio.model.module.embedding import IdEmbedding
from recstudio.utils.errors import ConfigError

PADDINGS = ("left", "right", "auto")


def last_positions(seq: torch.Tensor, padding: str = "auto") -> torch.Tensor:
    """Index ``[B]`` of the last real (non-zero) item of each row of ``seq [B, L]``.

    ``'left'``: always ``L - 1``; ``'right'``: ``(#non-zero) - 1``; ``'auto'``: the largest index
    holding a non-zero id (right for both paddings, and for holes). Empty rows give ``L - 1``
    (left) or ``0`` (right / auto); :func:`gather_last` zeroes them.
    """
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {PADDINGS}, got {padding!r}.")
    B, L = seq.shape
    if padding == "left":
        return torch.full((B,), L - 1, dtype=torch.long, device=seq.device)
    valid = seq != 0
    if padding == "right":
        return (valid.sum(-1) - 1).clamp(min=0)
    pos = torch.arange(L, device=seq.device).expand(B, L)
    return torch.where(valid, pos, torch.zeros_like(pos)).amax(-1)


def gather_last(hidden: torch.Tensor, seq: torch.Tensor, padding: str = "auto") -> torch.Tensor:
    """The vector ``[B, d]`` at the last real position of ``hidden [B, L, d]``.

    Args:
        hidden: per-position outputs.
        seq: the item ids ``[B, L]`` (0 = padding) that produced ``hidden``.
        padding: ``'left'``, ``'right'`` or ``'auto'`` (see :func:`last_positions`).

    Rows of ``seq`` with no item give zeros.

    Example:
        >>> h = torch.arange(6.).view(2, 3, 1)
        >>> gather_last(h, torch.tensor([[0, 4, 5], [7, 0, 0]]))
        tensor([[2.],
                [3.]])
    """
    idx = last_positions(seq, padding)
    out = hidden.gather(1, idx.view(-1, 1, 1).expand(-1, 1, hidden.size(-1))).squeeze(1)
    return out.masked_fill(~(seq != 0).any(-1, keepdim=True), 0.0)


class _SeqEncoderBase(nn.Module):
    def __init__(self, num_items: int, dim: int, item_embedding: Optional[nn.Module], padding: str):
        super().__init__()
        if padding not in PADDINGS:
            raise ConfigError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        self.padding, self.dim = padding, dim
        self.item_embedding = item_embedding if item_embedding is not None else IdEmbedding(num_items, dim)

    def gather_last(self, hidden: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """:func:`gather_last` with this encoder's ``padding``."""
        return gather_last(hidden, seq, self.padding)

    def encode_last(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [B, L]`` -> the output at the last real item, ``[B, d]``."""
        return self.gather_last(self(seq), seq)


class TransformerSeqEncoder(_SeqEncoderBase):
    """SASRec-style self-attentive sequence encoder (Kang & McAuley, ICDM 2018).

    ``item embedding + learned position embedding -> LayerNorm -> Dropout -> nn.TransformerEncoder``
    (post-norm layers, ReLU feed-forward of width ``ffn_dim``), with a causal mask (position ``t``
    sees positions ``<= t``) when ``causal=True`` (bidirectional, BERT4Rec-style, otherwise) and a
    key-padding mask, so padding never influences a real position. Each position may always attend
    to itself, so a padding position with no visible real item (left padding + causal) gives no NaN.
    Outputs at padding positions are set to zero.

    Positions are the column indices ``0..L-1`` of the (padded) input: with left padding the latest
    item is always at ``L-1``; with right padding the first item is always at 0.

    Args:
        num_items: rows of the item embedding incl. padding 0 (the dataset's ``num_items``, or
            ``num_tokens`` for a cloze dataset with a mask token).
        dim: model size ``d``.
        max_len: longest input ``L`` (size of the position table).
        n_layers, n_heads: transformer layers and attention heads (``dim % n_heads == 0``).
        dropout: dropout on the embeddings and inside the layers.
        causal: causal (SASRec) or bidirectional attention.
        ffn_dim: feed-forward width; default ``dim`` (as in SASRec).
        item_embedding: an existing ``[num_items, dim]`` embedding to share (e.g. the item tower's).
        padding: ``'left'`` (default), ``'right'`` or ``'auto'``: used by :meth:`gather_last`.

    Example:
        >>> enc = TransformerSeqEncoder(num_items=21, dim=8, max_len=5, n_layers=1, n_heads=2)
        >>> seq = torch.tensor([[0, 0, 3, 4, 5], [0, 1, 2, 3, 4]])
        >>> enc(seq).shape, enc.encode_last(seq).shape
        (torch.Size([2, 5, 8]), torch.Size([2, 8]))
    """

    def __init__(self, num_items: int, dim: int, max_len: int, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.2, causal: bool = True, ffn_dim: Optional[int] = None,
                 item_embedding: Optional[nn.Module] = None, padding: str = "left"):
        super().__init__(num_items, dim, item_embedding, padding)
        if dim % n_heads:
            raise ConfigError(f"TransformerSeqEncoder: dim={dim} must be divisible by n_heads={n_heads}.")
        self.max_len, self.n_heads, self.causal = int(max_len), int(n_heads), causal
        self.position_embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.position_embedding.weight, std=0.01)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=ffn_dim or dim, dropout=dropout,
                                           activation="relu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """Bool ``[B * n_heads, L, L]``, True = may NOT attend (PyTorch's convention)."""
        B, L = seq.shape
        blocked = (seq == 0).unsqueeze(1).expand(B, L, L)  # key padding
        if self.causal:
            future = torch.ones(L, L, dtype=torch.bool, device=seq.device).triu(1)
            blocked = blocked | future
        blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=seq.device)  # always see yourself
        return blocked.repeat_interleave(self.n_heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq`` int64 ``[B, L]`` (0 = padding, ``L <= max_len``) -> ``[B, L, d]``."""
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"TransformerSeqEncoder: input length {L} exceeds max_len={self.max_len}; "
                              f"keep the last {self.max_len} items or build the encoder with a larger max_len.")
        pos = torch.arange(L, device=seq.device)
        x = self.item_embedding(seq) + self.position_embedding(pos)
        x = self.dropout(self.layer_norm(x))
        x = self.encoder(x, mask=self.attention_mask(seq))
        return x.masked_fill((seq == 0).unsqueeze(-1), 0.0)


class GRUSeqEncoder(_SeqEncoderBase):
    """GRU4Rec-style encoder (Hidasi et al., ICLR 2016): ``embedding -> dropout -> GRU -> Linear``.

    The GRU runs over the real items only (they are packed in order, wherever the padding is), so
    left- and right-padded copies of a sequence give the same outputs at their real items; outputs
    at padding positions are zero.

    Args:
        num_items: rows of the item embedding incl. padding 0.
        dim: embedding and output size ``d``.
        hidden_dim: GRU state size; default ``dim``. The states are projected back to ``d``.
        n_layers: stacked GRU layers.
        dropout: dropout on the input embeddings (and between GRU layers when ``n_layers > 1``).
        item_embedding: an existing ``[num_items, dim]`` embedding to share.
        padding: ``'left'`` (default), ``'right'`` or ``'auto'``: used by :meth:`gather_last`.

    Example:
        >>> enc = GRUSeqEncoder(num_items=21, dim=8)
        >>> seq = torch.tensor([[0, 0, 3, 4], [0, 1, 2, 3]])
        >>> enc(seq).shape, enc.encode_last(seq).shape
        (torch.Size([2, 4, 8]), torch.Size([2, 8]))
    """

    def __init__(self, num_items: int, dim: int, hidden_dim: Optional[int] = None, n_layers: int = 1,
                 dropout: float = 0.0, item_embedding: Optional[nn.Module] = None, padding: str = "left"):
        super().__init__(num_items, dim, item_embedding, padding)
        hidden_dim = hidden_dim or dim
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden_dim, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.proj = nn.Linear(hidden_dim, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq`` int64 ``[B, L]`` (0 = padding, any side) -> ``[B, L, d]``."""
        B, L = seq.shape
        valid = seq != 0
        # Move the real items of each row to the front (stable: keeps their order), run packed.
        order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
        packed_ids = seq.gather(1, order)
        lengths = valid.sum(1)
        x = self.dropout(self.item_embedding(packed_ids))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
        out = self.proj(out)
        # Put each output back at the column its item came from; padding columns become zero.
        restored = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
        return restored.masked_fill(~valid.unsqueeze(-1), 0.0)
