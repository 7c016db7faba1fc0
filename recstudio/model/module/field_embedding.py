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

Sizes per field. ``field_dims`` gives a field a table of its own width ``d_f``; its vectors are then mapped
to the common width ``dim`` by a learned ``Linear(d_f, dim, bias=False)`` (``project``; initialised as the
zero-padding identity, so it starts as the ``d_f``-vector padded with zeros), so that every field still gives a
``dim``-vector and field-interaction models (FM's inner products, CIN, attention) stay defined. A field whose
width is ``dim`` has no projection (and ``field_dims=None`` builds exactly the single-width module).
:func:`auto_dim` is the vocabulary rule of ``embed_dim: auto``.

Row penalty. Inside ``with emb.record_rows() as rows:`` every lookup adds, per field, the squared norm of
the table rows it read (padding rows are zero; a float field's vector once per row of the input; a
float_seq field's whole matrix once per row) and the same for the first-order weights: ``rows[key]`` is
that sum, the input of a per-field L2 on the rows a batch reads (``embed_l2`` of the CTR models).
"""
from contextlib import contextmanager
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from recstudio.utils.errors import ConfigError, DataError

TYPES = ("token", "token_seq", "float", "float_seq")
#: ``auto_dim``: ``min(AUTO_DIM_CAP, round(AUTO_DIM_FACTOR * n ** 0.25))`` for a field of ``n`` values
AUTO_DIM_FACTOR, AUTO_DIM_CAP = 6.0, 64


def auto_dim(ftype: str, size: int) -> int:
    """Embedding width of a field by its vocabulary: ``min(64, round(6 * n^(1/4)))`` (at least 1), the rule of
    thumb of TensorFlow's feature columns, with ``n`` the vocabulary size (token / token_seq, padding
    included), the width (float_seq) or 1 (float: 6).

    Example:
        >>> auto_dim("token", 10_000), auto_dim("token", 4), auto_dim("float", 1), auto_dim("token", 10 ** 9)
        (60, 8, 6, 64)
    """
    n = max(1, int(size)) if ftype != "float" else 1
    return int(min(AUTO_DIM_CAP, max(1, round(AUTO_DIM_FACTOR * n ** 0.25))))


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

    def forward(self, value: torch.Tensor, weight: Optional[torch.Tensor] = None,
                record: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """The field's vectors; ``record`` (a list) also gets the squared norm of the rows read."""
        if self.ftype == "token":
            vecs = self.table(value.long())
            if record is not None:
                record.append(vecs.pow(2).sum())
            return vecs
        if self.ftype == "token_seq":
            ids = value.long()
            vecs = self.table(ids)                                       # [*, S, d], padding rows are 0
            if record is not None:
                record.append(vecs.pow(2).sum())
            if weight is not None:
                return (vecs * weight.to(vecs.dtype).unsqueeze(-1)).sum(-2)
            count = (ids != 0).sum(-1, keepdim=True).clamp(min=1).to(vecs.dtype)
            return vecs.sum(-2) / count
        if self.ftype == "float":
            if record is not None:
                record.append(self.vector.pow(2).sum() * value.numel())
            return value.to(self.vector.dtype).unsqueeze(-1) * self.vector
        if record is not None:
            record.append(self.linear.weight.pow(2).sum() * (value.numel() // max(1, value.shape[-1])))
        return self.linear(value.to(self.linear.weight.dtype))


class FieldEmbedding(nn.Module):
    """Per-field embeddings ``[*, F, dim]`` and first-order weights ``[*]``.

    Args:
        fields: ``key -> (type, size)`` in field order; ``size`` is the vocabulary size with padding
            (token types), the width (float_seq) or 1 (float).
        dim: vector size of every field (the output width).
        field_dims: ``key -> d_f``, the table width of some fields (default: ``dim``); a field with
            ``d_f != dim`` is projected to ``dim`` (see the module docstring). ``d_f > dim`` is refused.
        seq_weights: ``token_seq key -> float_seq key`` of the same width: the float_seq holds the
            pooling weights of the token_seq (it is then no field of its own).
        linear: also build the first-order weights (:meth:`first_order`).
        init_std: std of the normal initialisation (FuxiCTR: 1e-4).

    Raises:
        ConfigError: an unknown type, an empty field set, a bad weight pairing, a bad ``field_dims``.

    Example:
        >>> emb = FieldEmbedding({"item": ("token", 5), "tags": ("token_seq", 4), "tag_w": ("float_seq", 2),
        ...                       "price": ("float", 1)}, dim=3, seq_weights={"tags": "tag_w"})
        >>> values = {"item": torch.tensor([1, 2]), "tags": torch.tensor([[1, 2], [3, 0]]),
        ...           "tag_w": torch.tensor([[0.5, 0.5], [1.0, 0.0]]), "price": torch.tensor([0.1, 0.2])}
        >>> emb(values).shape, emb.first_order(values).shape
        (torch.Size([2, 3, 3]), torch.Size([2]))
        >>> wide = FieldEmbedding({"item": ("token", 5), "price": ("float", 1)}, dim=4, field_dims={"price": 2})
        >>> wide({"item": torch.tensor([1]), "price": torch.tensor([0.5])}).shape, sorted(wide.project)
        (torch.Size([1, 2, 4]), ['price'])
    """

    def __init__(self, fields: Mapping[str, Tuple[str, int]], dim: int,
                 seq_weights: Optional[Mapping[str, str]] = None, linear: bool = True, init_std: float = 1e-4,
                 field_dims: Optional[Mapping[str, int]] = None):
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
        dims = self._table_dims(field_dims)
        self.field_dims = dims
        self.embed = nn.ModuleDict({k: _FieldEncoder(specs[k][0], specs[k][1], dims[k], init_std)
                                    for k in self.names})
        self.weights = (nn.ModuleDict({k: _FieldEncoder(specs[k][0], specs[k][1], 1, init_std) for k in self.names})
                        if linear else None)
        narrow = [k for k in self.names if dims[k] != self.dim]
        self.project = nn.ModuleDict({k: nn.Linear(dims[k], self.dim, bias=False) for k in narrow}) if narrow else None
        for k in narrow:  # start as zero-padding: the d_f-vector in the first d_f coordinates
            nn.init.eye_(self.project[k].weight)
        self._record: Optional[Dict[str, List[torch.Tensor]]] = None

    def _table_dims(self, field_dims: Optional[Mapping[str, int]]) -> Dict[str, int]:
        dims = {k: self.dim for k in self.names}
        for key, d in dict(field_dims or {}).items():
            if key not in dims:
                raise ConfigError(f"FieldEmbedding field_dims names {key!r}, which is no field; fields are "
                                  f"{self.names}.")
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= self.dim:
                raise ConfigError(f"FieldEmbedding field_dims[{key!r}] must be an int in [1, dim={self.dim}], "
                                  f"got {d!r}.")
            dims[key] = int(d)
        return dims

    @property
    def num_fields(self) -> int:
        return len(self.names)

    def table_parameters(self):
        """The tables' and first-order weights' parameters (not the projections of ``field_dims``)."""
        yield from self.embed.parameters()
        if self.weights is not None:
            yield from self.weights.parameters()

    def _inputs(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]]):
        names = self.names if names is None else list(names)
        missing = [n for n in names if n not in values or (n in self.weight_of and self.weight_of[n] not in values)]
        if missing:
            raise DataError(f"FieldEmbedding: the inputs lack fields {missing} (given: {sorted(values)}).")
        return [(n, values[n], values.get(self.weight_of.get(n, ""))) for n in names]

    def forward(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """``[*, len(names), dim]`` for the fields ``names`` (default: all, in field order); every value
        shares the leading shape ``[*]``."""
        parts = []
        for n, v, w in self._inputs(values, names):
            vec = self.embed[n](v, w, self._rows_of(n))
            parts.append(self.project[n](vec) if self.project is not None and n in self.project else vec)
        if not parts:
            raise DataError("FieldEmbedding: no field to embed.")
        return torch.stack(parts, -2)

    def _rows_of(self, name: str) -> Optional[List[torch.Tensor]]:
        return None if self._record is None else self._record.setdefault(name, [])

    @contextmanager
    def record_rows(self):
        """Within the block, sum per field the squared norms of the rows every lookup reads (embedding tables
        and first-order weights): yields a dict ``key -> scalar tensor`` filled when the block ends.

        Example:
            >>> emb = FieldEmbedding({"item": ("token", 5)}, dim=2)
            >>> with emb.record_rows() as rows:
            ...     _ = emb({"item": torch.tensor([1, 1, 0])})
            >>> bool(torch.isclose(rows["item"], 2 * emb.embed["item"].table.weight[1].pow(2).sum()))
            True
        """
        if self._record is not None:
            raise ConfigError("FieldEmbedding.record_rows() is already active; blocks do not nest.")
        self._record, out = {}, {}
        try:
            yield out
        finally:
            recorded, self._record = self._record, None
            out.update({k: torch.stack(v).sum() for k, v in recorded.items() if v})

    def first_order(self, values: Mapping[str, torch.Tensor], names: Optional[Sequence[str]] = None) -> torch.Tensor:
        """``[*]``: the sum over ``names`` of each field's first-order weight (no global bias)."""
        if self.weights is None:
            raise ConfigError("this FieldEmbedding was built with linear=False.")
        parts = [self.weights[n](v, w, self._rows_of(n)).squeeze(-1) for n, v, w in self._inputs(values, names)]
        return torch.stack(parts, 0).sum(0)

    def extra_repr(self) -> str:
        narrow = {k: d for k, d in self.field_dims.items() if d != self.dim}
        return (f"fields={self.types}, dim={self.dim}, seq_weights={self.weight_of}"
                + (f", field_dims={narrow}" if narrow else ""))
