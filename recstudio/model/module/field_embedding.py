"""One embedding per feature field (FuxiCTR-style), plus the first-order (linear) term of CTR models.

Every field becomes one ``dim``-vector, so a batch of rows becomes ``[*, F, dim]``: the input of
factorisation machines, DeepFM's MLP and every other field-interaction model.

==============  =====================  ==============================================================
type            input                  field vector                       first-order weight
==============  =====================  ==============================================================
token           int ``[*]``            table row (row 0 = padding = 0)    one scalar per id
token_seq       int ``[*, S]``         mean of the non-padding rows, or   same pooling of the
                                       with a paired float_seq weight     per-id scalars
                                       ``sum_j w_j e_j``
float           float ``[*]``          ``value * v`` (a learned vector)   ``value * w``
float_seq       float ``[*, W]``       ``Linear(W, dim, bias=False)``     ``Linear(W, 1, bias=False)``
==============  =====================  ==============================================================

Floats enter as given, so scale them in the data layer (``float_scaling``) or turn them into tokens
(``discretize: {field: bins}``), as FuxiCTR does. A padding / absent value (id 0, all-padding sequence,
float 0) gives the zero vector and weight 0, so an absent field contributes nothing.
"""
from typing import Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from recstudio.utils.errors import ConfigError, DataError

TYPES = ("token", "token_seq", "float", "float_seq")


class _FieldEncoder(nn.Module):
    """One field encoded to ``[*, dim]`` (see the module table)."""

    def __init__(self, ftype: str, size: int, dim: int, init_std: float):
        super().__init__()
        self.ftype = ftype
        if ftype in ("token", "token_seq"):
            self.table = nn.Embedding(int(size), dim, padding_idx=0)
            nn.init.normal_(self.table.weight, std=init_std)
            with torch.no_grad():
                self.table.weight[0].zero_()
        elif ftype == "float":
            self.vector = nn.Parameter(torch.empty(dim).normal_(std=init_std))
        else:
            self.linear = nn.Linear(int(size), dim, bias=False)
            nn.init.normal_(self.linear.weight, std=init_std)

    def forward(self, value: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.ftype == "token":
            return self.table(value.long())
        if self.ftype == "token_seq":
            ids = value.long()
            vecs = self.table(ids)                                       # [*, S, d], padding rows are 0
            if weight is not None:
                return (vecs * weight.to(vecs.dtype).unsqueeze(-1)).sum(-2)
            count = (ids != 0).sum(-1, keepdim=True).clamp(min=1).to(vecs.dtype)
            return vecs.sum(-2) / count
        if self.ftype == "float":
            return value.to(self.vector.dtype).unsqueeze(-1) * self.vector
        return self.linear(value.to(self.linear.weight.dtype))


class FieldEmbedding(nn.Module):
    """Per-field embeddings ``[*, F, dim]`` and first-order weights ``[*]``.

    Args:
        fields: ``key -> (type, size)`` in field order; ``size`` is the vocabulary size with padding
            (token types), the width (float_seq) or 1 (float).
        dim: vector size of every field.
        seq_weights: ``token_seq key -> float_seq key`` of the same width: the float_seq holds the
            pooling weights of the token_seq (it is then no field of its own).
        linear: also build the first-order weights (:meth:`first_order`).
        init_std: std of the normal initialisation (FuxiCTR: 1e-4).

    Raises:
        ConfigError: an unknown type, an empty field set, a bad weight pairing.

    Example:
        >>> emb = FieldEmbedding({"item": ("token", 5), "tags": ("token_seq", 4), "tag_w": ("float_seq", 2),
        ...                       "price": ("float", 1)}, dim=3, seq_weights={"tags": "tag_w"})
        >>> values = {"item": torch.tensor([1, 2]), "tags": torch.tensor([[1, 2], [3, 0]]),
        ...           "tag_w": torch.tensor([[0.5, 0.5], [1.0, 0.0]]), "price": torch.tensor([0.1, 0.2])}
        >>> emb(values).shape, emb.first_order(values).shape
        (torch.Size([2, 3, 3]), torch.Size([2]))
    """

    def __init__(self, fields: Mapping[str, Tuple[str, int]], dim: int,
                 seq_weights: Optional[Mapping[str, str]] = None, linear: bool = True, init_std: float = 1e-4):
        super().__init__()
        seq_weights = dict(seq_weights or {})
        specs = {}
        for key, spec in fields.items():
            try:
                ftype, size = spec
            except (TypeError, ValueError):
                raise ConfigError(f"FieldEmbedding field {key!r}: expected (type, size), got {spec!r}.") from None
            ftype = str(getattr(ftype, "value", ftype)).lower()
            if ftype not in TYPES:
                raise ConfigError(f"FieldEmbedding field {key!r} has type {ftype!r}; use one of {TYPES}.")
            specs[key] = (ftype, int(size))
        for seq, w in seq_weights.items():
            if specs.get(seq, ("",))[0] != "token_seq" or specs.get(w, ("",))[0] != "float_seq":
                raise ConfigError(f"FieldEmbedding seq_weights {seq!r} -> {w!r} must pair a token_seq field with a "
                                  f"float_seq field; fields are {specs}.")
        self.weight_of = seq_weights
        weights = set(seq_weights.values())
        self.names = [k for k in specs if k not in weights]
        if not self.names:
            raise ConfigError("FieldEmbedding needs at least one field.")
        self.types = {k: specs[k][0] for k in self.names}
        self.dim = int(dim)
        self.embed = nn.ModuleDict({k: _FieldEncoder(specs[k][0], specs[k][1], dim, init_std) for k in self.names})
        self.weights = (nn.ModuleDict({k: _FieldEncoder(specs[k][0], specs[k][1], 1, init_std) for k in self.names})
                        if linear else None)

    @property
    def num_fields(self) -> int:
        return len(self.names)

    def _inputs(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]]):
        names = self.names if names is None else list(names)
        missing = [n for n in names if n not in values or (n in self.weight_of and self.weight_of[n] not in values)]
        if missing:
            raise DataError(f"FieldEmbedding: the inputs lack fields {missing} (given: {sorted(values)}).")
        return [(n, values[n], values.get(self.weight_of.get(n, ""))) for n in names]

    def forward(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """``[*, len(names), dim]`` for the fields ``names`` (default: all, in field order); every value
        shares the leading shape ``[*]``."""
        parts = [self.embed[n](v, w) for n, v, w in self._inputs(values, names)]
        if not parts:
            raise DataError("FieldEmbedding: no field to embed.")
        return torch.stack(parts, -2)

    def first_order(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """``[*]``: the sum over ``names`` of each field's first-order weight (no global bias)."""
        if self.weights is None:
            raise ConfigError("this FieldEmbedding was built with linear=False.")
        parts = [self.weights[n](v, w).squeeze(-1) for n, v, w in self._inputs(values, names)]
        return torch.stack(parts, 0).sum(0)

    def extra_repr(self) -> str:
        return f"fields={self.types}, dim={self.dim}, seq_weights={self.weight_of}"
