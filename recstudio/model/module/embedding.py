"""Id embeddings with a zero padding row and an optional per-id bias."""
from typing import Optional

import torch
from torch import nn

from recstudio.utils.errors import ConfigError

INITS = ("normal", "xavier")


class IdEmbedding(nn.Module):
    """An embedding table for ids ``1..num-1`` with row ``padding_idx`` (default 0) fixed at zero.

    ``num`` is the number of rows *including* the padding row, i.e. the dataset's ``num_items`` /
    ``num_users`` as reported by :mod:`recstudio.data` (ids are remapped to ``1..n``, 0 = padding).

    Initialisation: ``init='normal'`` (default) draws every row from N(0, ``init_std``\\ :sup:`2`)
    with ``init_std=0.01``; ``init='xavier'`` uses ``nn.init.xavier_normal_`` on the table. The
    padding row is then set to zero and, because ``nn.Embedding(padding_idx=...)`` is used, never
    receives a gradient. The bias (when ``bias=True``) starts at zero and its padding entry stays zero.

    Args:
        num: rows including padding.
        dim: vector size.
        padding_idx: the padding id (its row is zero); ``None`` for no padding row.
        bias: also learn one scalar per id (:meth:`get_bias`).
        sparse: sparse gradients (use with ``torch.optim.SparseAdam`` / SGD).
        init: ``'normal'`` or ``'xavier'``.
        init_std: standard deviation of the ``'normal'`` init.

    Example:
        >>> emb = IdEmbedding(11, 8, bias=True)      # ids 1..10, 0 = padding
        >>> emb(torch.tensor([[0, 3], [5, 7]])).shape
        torch.Size([2, 2, 8])
        >>> emb.get_bias(torch.tensor([0, 3])).shape
        torch.Size([2])
    """

    def __init__(self, num: int, dim: int, padding_idx: Optional[int] = 0, bias: bool = False,
                 sparse: bool = False, init: str = "normal", init_std: float = 0.01):
        super().__init__()
        if num < 1 or dim < 1:
            raise ConfigError(f"IdEmbedding needs num >= 1 and dim >= 1, got num={num}, dim={dim}.")
        if init not in INITS:
            raise ConfigError(f"IdEmbedding init must be one of {INITS}, got {init!r}.")
        self.num, self.dim, self.padding_idx = int(num), int(dim), padding_idx
        self.init, self.init_std = init, init_std
        self.embedding = nn.Embedding(num, dim, padding_idx=padding_idx, sparse=sparse)
        self.bias = nn.Embedding(num, 1, padding_idx=padding_idx, sparse=sparse) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise as described in the class docstring."""
        with torch.no_grad():
            if self.init == "xavier":
                nn.init.xavier_normal_(self.embedding.weight)
            else:
                nn.init.normal_(self.embedding.weight, std=self.init_std)
            if self.padding_idx is not None:
                self.embedding.weight[self.padding_idx].zero_()
            if self.bias is not None:
                self.bias.weight.zero_()

    @property
    def weight(self) -> torch.Tensor:
        """The ``[num, dim]`` table (row ``padding_idx`` is zero)."""
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` int64 of any shape ``[*]`` -> vectors ``[*, dim]``."""
        return self.embedding(ids)

    def get_bias(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-id bias ``[*]`` (zeros when the embedding has no bias)."""
        if self.bias is None:
            return torch.zeros(ids.shape, dtype=self.weight.dtype, device=ids.device)
        return self.bias(ids).squeeze(-1)

    def extra_repr(self) -> str:
        return (f"num={self.num}, dim={self.dim}, padding_idx={self.padding_idx}, "
                f"bias={self.bias is not None}, init={self.init!r}")
