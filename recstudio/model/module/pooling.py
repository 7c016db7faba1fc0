"""Pool a padded history of item vectors (or a weighted token sequence) into one vector: mean, sum or attention."""
from typing import Optional, Sequence

import torch
from torch import nn

from recstudio.model.module.features import masked_mean
from recstudio.model.module.mlp import MLP
from recstudio.utils.errors import ConfigError, DataError


def valid_mask(mask_or_ids: torch.Tensor) -> torch.Tensor:
    """A bool ``[B, L]`` mask, True at real (non-padding) positions.

    Accepts a bool mask (returned as is: True = real item) or int ids (True where ``id != 0``).
    """
    if mask_or_ids.dtype == torch.bool:
        return mask_or_ids
    if mask_or_ids.is_floating_point():
        raise ConfigError("pass a bool mask (True = real item) or int64 item ids (0 = padding), not floats.")
    return mask_or_ids != 0


class HistoryPooling(nn.Module):
    """``[B, L, d]`` history vectors + mask -> ``[B, d]``.

    Modes:

    - ``'mean'``: mean over the real positions.
    - ``'attention'`` with ``with_query=False``: additive attention (Bahdanau-style) against a
      learned context vector: ``a_j = w^T tanh(W h_j + b)``, ``softmax`` over real positions,
      output ``sum_j a_j h_j``.
    - ``'attention'`` with ``with_query=True``: DIN-style target attention (Zhou et al., KDD 2018):
      ``a_j = MLP([h_j, q, h_j - q, h_j * q])`` for a query/target vector ``q [B, d]`` given to
      :meth:`forward`; the weights are softmax-normalised over the real positions (DIN itself
      leaves them unnormalised; normalising keeps the output scale independent of history length).

    Padding positions never contribute, whatever their vectors hold; a history with no real
    position gives a zero vector (no NaN, finite gradients).

    Args:
        mode: ``'mean'`` or ``'attention'``.
        dim: vector size ``d``.
        with_query: (attention) score the history against a query given to ``forward``.
        hidden: (attention) hidden sizes of the scoring network.
        activation: (attention) activation of the scoring network.

    Example:
        >>> pool = HistoryPooling("attention", 8, with_query=True)
        >>> ids = torch.tensor([[0, 3, 4], [0, 0, 0]])
        >>> pool(torch.randn(2, 3, 8), ids, query=torch.randn(2, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, mode: str = "mean", dim: Optional[int] = None, with_query: bool = False,
                 hidden: Sequence[int] = (32,), activation: str = "relu"):
        super().__init__()
        if mode not in ("mean", "attention"):
            raise ConfigError(f"HistoryPooling mode must be 'mean' or 'attention', got {mode!r}.")
        if mode == "attention" and not dim:
            raise ConfigError("HistoryPooling(mode='attention') needs dim.")
        if with_query and mode != "attention":
            raise ConfigError("HistoryPooling: with_query=True needs mode='attention'.")
        self.mode, self.dim, self.with_query = mode, dim, with_query
        if mode == "attention":
            # The output layers have no bias: softmax ignores a shift, so a bias would never learn.
            in_dim = 4 * dim if with_query else dim
            if with_query:
                body = MLP([in_dim, *hidden], activation=activation, last_activation=True) if hidden else nn.Identity()
            else:
                body = nn.Sequential(nn.Linear(in_dim, hidden[0] if hidden else dim), nn.Tanh())
            width = (hidden[-1] if with_query else hidden[0]) if hidden else (in_dim if with_query else dim)
            self.scorer = nn.Sequential(body, nn.Linear(width, 1, bias=False))

    def forward(self, history: torch.Tensor, mask: torch.Tensor,
                query: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pool the history.

        Args:
            history: ``[B, L, d]``.
            mask: bool ``[B, L]`` with True at real items, or the int64 item ids ``[B, L]`` (0 = padding).
            query: ``[B, d]``; required iff ``with_query=True``.

        Returns:
            ``[B, d]``.
        """
        mask = valid_mask(mask)
        if self.mode == "mean":
            return masked_mean(history, mask)
        weights = masked_softmax(self.attention_logits(history, query), mask)
        return (weights.unsqueeze(-1) * history).sum(-2)

    def attention_logits(self, history: torch.Tensor, query: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The unnormalised attention scores ``[B, L]`` of the history positions (attention mode)."""
        if self.with_query != (query is not None):
            need = "needs a query [B, d]" if self.with_query else "was built with with_query=False; do not pass a query"
            raise ConfigError(f"{type(self).__name__}(attention) {need}.")
        if self.with_query:
            q = query.unsqueeze(-2).expand_as(history)
            return self.scorer(torch.cat([history, q, history - q, history * q], -1)).squeeze(-1)
        return self.scorer(history).squeeze(-1)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``logits [*, L]`` over the True positions of ``mask``; all-False rows give zeros.

    Example:
        >>> masked_softmax(torch.zeros(2, 2), torch.tensor([[True, True], [False, False]]))
        tensor([[0.5000, 0.5000],
                [0.0000, 0.0000]])
    """
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, -1) * mask.to(logits.dtype)


class SequencePooling(nn.Module):
    """Pool ``[B, L, d]`` element vectors of a token_seq (optionally weighted) into ``[B, d]``.

    With mask ``m_j`` (real element) and weights ``w_j`` (1 when none are given):

    - ``'sum'``: ``sum_j m_j w_j e_j``;
    - ``'mean'``: ``sum_j m_j w_j e_j / sum_j m_j w_j`` (the plain masked mean without weights);
    - ``'attention'``: ``sum_j a_j e_j`` with ``a = softmax_j(s_j + log w_j)`` over the real elements, i.e.
      ``a_j ∝ w_j exp(s_j)``; the scores ``s_j`` are :class:`~recstudio.model.module.pooling.HistoryPooling`'s
      (a learned context vector, or DIN-style against a query with ``with_query=True``).

    A row with no real element (or zero total weight) gives zeros, never NaN.

    Args:
        mode: ``'mean' | 'sum' | 'attention'``.
        dim: the vector size (attention only).
        with_query, hidden: as in ``HistoryPooling``.

    Example:
        >>> pool = SequencePooling("mean")
        >>> e = torch.tensor([[[1.0], [3.0], [9.0]]]); ids = torch.tensor([[4, 5, 0]])
        >>> pool(e, ids, weight=torch.tensor([[3.0, 1.0, 0.0]]))
        tensor([[1.5000]])
    """

    def __init__(self, mode: str = "mean", dim: Optional[int] = None, with_query: bool = False,
                 hidden=(32,)):
        super().__init__()
        if mode not in ("mean", "sum", "attention"):
            raise ConfigError(f"SequencePooling mode must be 'mean', 'sum' or 'attention', got {mode!r}.")
        self.mode = mode
        self.attention = HistoryPooling("attention", dim, with_query=with_query, hidden=hidden) \
            if mode == "attention" else None

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor, weight: Optional[torch.Tensor] = None,
                query: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``vectors [B, L, d]``, ``mask`` (bool, True = real; or the ids, 0 = padding), ``weight [B, L]``."""
        mask = valid_mask(mask)
        if weight is not None and weight.shape != mask.shape:
            raise DataError(f"SequencePooling: weight has shape {tuple(weight.shape)}, the sequence "
                            f"{tuple(mask.shape)}.")
        w = mask.to(vectors.dtype) if weight is None else weight.to(vectors.dtype) * mask.to(vectors.dtype)
        if self.mode == "attention":
            logits = self.attention.attention_logits(vectors, query)
            real = mask & (w > 0)
            logits = logits + torch.log(w.clamp(min=torch.finfo(w.dtype).tiny))
            return (masked_softmax(logits, real).unsqueeze(-1) * vectors).sum(-2)
        total = (w.unsqueeze(-1) * vectors).sum(-2)
        if self.mode == "sum":
            return total
        denom = w.sum(-1, keepdim=True)
        return torch.where(denom > 0, total / denom.clamp(min=torch.finfo(w.dtype).tiny), torch.zeros_like(total))
