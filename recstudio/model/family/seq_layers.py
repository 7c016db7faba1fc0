"""Building blocks of the zoo's sequential models beyond the transformer / GRU encoders.

- :func:`causal_windows`: the last ``width`` items up to each position (Caser, HGN, Fossil, ...);
- :func:`prefix_mask`: which positions ``j <= t`` hold a real item, per query position ``t``
  (attention over the prefix, e.g. NARM, STAMP);
- :func:`prefix_mean`: the mean embedding of the real items up to each position;
- :class:`UserSequentialRecommender`: a :class:`~recstudio.model.family.sequential.SequentialRecommender`
  whose sequence encoder also reads the user id (``encoder(item_seq, user) -> [B, L, d]``), for the
  personalised models (FPMC, TransRec, Caser, HGN, ...). Training and evaluation batches both carry the
  user field, so the encoder sees the same user in both.

All functions take left- or right-padded ``item_seq [B, L]`` (0 = padding).
"""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import ITEM_SEQ, SequentialRecommender


def causal_windows(seq: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, L] -> [B, L, width]``: row ``t`` holds ``seq[t - width + 1 .. t]`` (oldest first, 0 before the start).

    Example:
        >>> causal_windows(torch.tensor([[0, 3, 4, 5]]), 2).tolist()
        [[[0, 0], [0, 3], [3, 4], [4, 5]]]
    """
    padded = F.pad(seq, (width - 1, 0))
    return padded.unfold(1, width, 1)


def prefix_mask(seq: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, L, L]``: ``[b, t, j]`` is True when ``j <= t`` and ``seq[b, j]`` is a real item.

    Example:
        >>> prefix_mask(torch.tensor([[0, 3, 4]]))[0].int().tolist()
        [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    L = seq.size(1)
    causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
    return causal.unsqueeze(0) & (seq != 0).unsqueeze(1)


def prefix_mean(x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """``x [B, L, d]`` -> the mean of ``x`` over the real items at positions ``<= t``, ``[B, L, d]``
    (zero where no real item has been seen yet)."""
    valid = (seq != 0).unsqueeze(-1).to(x.dtype)
    total = (x * valid).cumsum(1)
    count = valid.cumsum(1).clamp(min=1.0)
    return total / count


class UserSequenceQuery(nn.Module):
    """Query encoder of :class:`UserSequentialRecommender`: ``encoder(item_seq, user)`` at the latest position
    of the left-padded ``item_seq`` (the latest ``max_len`` items)."""

    def __init__(self, encoder: nn.Module, uid_field: str, max_len: int):
        super().__init__()
        self.encoder, self.uid_field, self.max_len = encoder, uid_field, int(max_len)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        seq = batch[ITEM_SEQ][:, -self.max_len:]
        return self.encoder(seq, batch[self.uid_field])[:, -1]


class UserSequentialRecommender(SequentialRecommender):
    """A causal sequential model whose encoder reads the user too: ``_get_sequence_encoder`` returns a
    module ``(item_seq [B, L], user [B]) -> [B, L, d]``. Everything else (training at every position,
    losses, samplers, evaluation) is :class:`SequentialRecommender`'s; the user of the training row is
    handed to the encoder during :meth:`training_loss`.
    """

    seq_mode = "causal"
    _batch_users = None

    def _get_query_encoder(self) -> nn.Module:
        return UserSequenceQuery(self._get_sequence_encoder(), self.meta.uid_field, self.cfg("max_seq_len"))

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        self._batch_users = batch[self.meta.uid_field]
        try:
            return super().training_loss(batch)
        finally:
            self._batch_users = None

    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:
        """The encoder's output ``[B, L, d]`` for the users of the batch being trained."""
        users = self._batch_users
        if users is None:  # called outside training_loss: no user known
            raise RuntimeError(f"{type(self).__name__}.sequence_output needs the batch's users; call "
                               "training_loss(batch) or the query encoder with a batch.")
        return self.query_encoder.encoder(item_seq, users)


def item_table(model: SequentialRecommender, dim: int) -> nn.Module:
    """The base's item tower (:meth:`SequentialRecommender._get_item_encoder`) with vectors of size ``dim``:
    an id table of ``model.num_tokens`` rows, plus the ``item_feature_fields`` embeddings when listed."""
    from recstudio.model.family.sequential import ItemWithFeatures
    from recstudio.model.module.embedding import IdEmbedding
    from recstudio.utils.errors import ConfigError
    table = IdEmbedding(model.num_tokens, dim, init="xavier", sparse=model.sparse_embeddings)
    names = model.feature_fields()
    if not names:
        return table
    available = model.meta.item_fields
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"item_feature_fields {unknown} are not item feature fields of this dataset; "
                          f"its item fields are {sorted(available) or 'none'}.")
    return ItemWithFeatures(table, model.item_feats, {n: available[n] for n in names}, model.meta.num_items)
