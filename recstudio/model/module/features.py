"""Encode a batch of typed feature fields (token, token_seq, float, float_seq) into one vector."""
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from recstudio.model.module.embedding import IdEmbedding
from recstudio.utils.errors import ConfigError, DataError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def _type_name(ftype) -> str:
    """``'token'`` etc. from a string or a :class:`recstudio.data.fields.FieldType` (a str enum)."""
    name = getattr(ftype, "value", ftype)
    if not isinstance(name, str) or name.lower() not in FIELD_TYPES:
        raise ConfigError(f"unknown field type {ftype!r}; use one of {FIELD_TYPES}.")
    return name.lower()


def masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``vectors [*, S, d]`` over the positions where ``mask [*, S]`` is True.

    Rows with no True position give zeros (never NaN).

    Example:
        >>> masked_mean(torch.ones(1, 3, 2), torch.tensor([[True, False, False]]))
        tensor([[1., 1.]])
    """
    m = mask.to(vectors.dtype).unsqueeze(-1)
    return (vectors * m).sum(-2) / m.sum(-2).clamp(min=1.0)


class FeatureEncoder(nn.Module):
    """Encodes a dict of feature tensors into ``[*, dim]``.

    Each field is encoded to ``[*, dim]``; the leading shape ``[*]`` is the batch shape (``[B]``,
    or ``[B, L]`` for features gathered along a sequence of ids) and must agree across fields:

    ============  ==================  ==========================================================
    type          input               encoding
    ============  ==================  ==========================================================
    token         int ``[*]``         embedding (``size`` rows incl. padding 0; row 0 is zero)
    token_seq     int ``[*, S]``      masked mean of the embeddings of the non-zero ids
                                      (0 = padding; an all-padding row gives zeros)
    float         float ``[*]``       ``value * w + b`` with learned ``w, b in R^dim``
    float_seq     float ``[*, W]``    ``Linear(W, dim)``
    ============  ==================  ==========================================================

    Fields are combined by ``combine='sum'`` (sum of the field vectors) or ``'concat'``
    (concatenate, then ``Linear(F * dim, dim)``). Keys of the batch that are not fields are ignored.

    Args:
        fields: ``name -> (type, size)``; ``type`` is ``'token' | 'token_seq' | 'float' |
            'float_seq'`` or a :class:`~recstudio.data.fields.FieldType`; ``size`` is the vocabulary
            size (rows incl. padding) for token types, the width ``W`` for ``float_seq``, and is
            ignored for ``float`` (use 1).
        dim: output size.
        combine: ``'sum'`` or ``'concat'``.
        embeddings: optional ``name -> IdEmbedding`` to share tables (e.g. the item id embedding of
            the item tower) instead of creating new ones.
        init_std: std of the new id embeddings (see :class:`IdEmbedding`).

    Example:
        >>> enc = FeatureEncoder({"item_id": ("token", 11), "genre": ("token_seq", 6),
        ...                       "price": ("float", 1), "vec": ("float_seq", 3)}, dim=8)
        >>> batch = {"item_id": torch.tensor([1, 2]), "genre": torch.tensor([[1, 2, 0], [0, 0, 0]]),
        ...          "price": torch.tensor([0.5, 1.0]), "vec": torch.randn(2, 3)}
        >>> enc(batch).shape
        torch.Size([2, 8])
    """

    def __init__(self, fields: Mapping[str, Tuple[Union[str, object], int]], dim: int, combine: str = "sum",
                 embeddings: Optional[Mapping[str, nn.Module]] = None, init_std: float = 0.01):
        super().__init__()
        if not fields:
            raise ConfigError("FeatureEncoder needs at least one field.")
        if combine not in ("sum", "concat"):
            raise ConfigError(f"FeatureEncoder combine must be 'sum' or 'concat', got {combine!r}.")
        embeddings = dict(embeddings or {})
        unknown = set(embeddings) - set(fields)
        if unknown:
            raise ConfigError(f"FeatureEncoder: shared embeddings for unknown fields {sorted(unknown)}; "
                              f"fields are {sorted(fields)}.")
        self.dim, self.combine = int(dim), combine
        self.field_types: Dict[str, str] = {}
        self.encoders = nn.ModuleDict()
        for name, spec in fields.items():
            try:
                ftype, size = spec
            except (TypeError, ValueError):
                raise ConfigError(f"FeatureEncoder field {name!r}: expected (type, size), got {spec!r}.") from None
            ftype = _type_name(ftype)
            self.field_types[name] = ftype
            if ftype in ("token", "token_seq"):
                enc = embeddings.get(name)
                if enc is None:
                    enc = IdEmbedding(int(size), dim, init_std=init_std)
            elif ftype == "float":
                enc = _FloatEncoder(dim)
            else:
                enc = nn.Linear(int(size), dim)
            self.encoders[name] = enc
        self.out = nn.Linear(len(fields) * dim, dim) if combine == "concat" else None

    def encode_field(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """One field's ``[*, dim]`` vectors."""
        ftype, enc = self.field_types[name], self.encoders[name]
        if ftype == "token":
            return enc(value.long())
        if ftype == "token_seq":
            value = value.long()
            return masked_mean(enc(value), value != 0)
        return enc(value.to(self._dtype()))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``batch`` (a dict holding every field) -> ``[*, dim]``.

        Raises:
            DataError: a field is missing from the batch, or fields disagree on the batch shape.
        """
        missing = [n for n in self.field_types if n not in batch]
        if missing:
            raise DataError(f"FeatureEncoder: batch lacks fields {missing} (batch keys: {sorted(batch)}).")
        parts = [self.encode_field(n, batch[n]) for n in self.field_types]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            detail = {n: tuple(p.shape[:-1]) for n, p in zip(self.field_types, parts)}
            raise DataError(f"FeatureEncoder: fields have different batch shapes {detail}; token/float "
                            f"fields are [*], token_seq/float_seq fields [*, S].")
        if self.combine == "sum":
            return torch.stack(parts, 0).sum(0)
        return self.out(torch.cat(parts, -1))

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class _FloatEncoder(nn.Module):
    """A scalar feature ``[*]`` -> ``value * w + b`` in ``[*, dim]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim).normal_(std=0.01))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value.unsqueeze(-1) * self.weight + self.bias
