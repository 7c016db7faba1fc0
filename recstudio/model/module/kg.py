"""Knowledge-graph blocks: translational triple scorers (TransE, TransR) and their losses.

A scorer owns the relation parameters and scores ``(head vector, relation id, tail vector)``
triples; the entity vectors come from the model (so an item's entity can share its table with
the recommender). Higher scores mean more plausible triples:

- :class:`TransE` (Bordes et al., NeurIPS 2013): ``-||h + r - t||_p``.
- :class:`TransR` (Lin et al., AAAI 2015): ``-||h W_r + r - t W_r||_p``, entities projected into
  the relation's space by a per-relation matrix ``W_r`` (``entity_dim x relation_dim``).
- :class:`TransH` (Wang et al., AAAI 2014): entities projected onto the relation's hyperplane,
  ``e - (w_r . e) w_r`` with a unit normal ``w_r``.
- :class:`TransD` (Ji et al., ACL 2015): ``e_r = I e + (e_p . e) r_p`` with projection vectors of the
  entity (carried in the entity vector's second half) and of the relation.

``squared=True`` scores with ``-||.||_2^2`` (what CKE and KGAT train with), ``normalize=True``
scales ``h W_r``, ``r`` and ``t W_r`` to unit length first (CKE's constraint, as RecBole does).
Relation id 0 is padding (a zero vector, a zero matrix).

:func:`kg_bpr_loss` (``-ln sigma(pos - neg)``, KGAT's and RecBole's CKE loss) and
:func:`kg_margin_loss` (``max(0, margin - pos + neg)``, the TransE / TransR papers') turn the scores
of true and corrupted triples into a loss; :func:`embedding_norm` is RecBole's ``EmbLoss``.

Example:
    >>> scorer = TransE(num_relations=3, dim=4)
    >>> h, t = torch.zeros(2, 4), torch.zeros(2, 4)
    >>> scorer(h, torch.tensor([1, 2]), t).shape
    torch.Size([2])
"""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.module.embedding import IdEmbedding
from recstudio.utils.errors import ConfigError


class TransE(nn.Module):
    """``score(h, r, t) = -||h + r - t||_p`` (``-||.||_2^2`` with ``squared``).

    Args:
        num_relations: relation ids including the padding id 0.
        dim: entity and relation vector size.
        p: the norm (1 or 2).
        squared: score with the squared L2 distance (needs ``p=2``).
        normalize: unit-normalise the (projected) head, relation and tail vectors first.
    """

    def __init__(self, num_relations: int, dim: int, p: int = 2, squared: bool = False, normalize: bool = False):
        super().__init__()
        if p not in (1, 2):
            raise ConfigError(f"a translational KG scorer takes p = 1 or 2, got {p!r}.")
        if squared and p != 2:
            raise ConfigError("squared=True is the squared L2 distance: use it with p=2.")
        self.num_relations, self.dim, self.p = int(num_relations), int(dim), int(p)
        self.squared, self.normalize = bool(squared), bool(normalize)
        self.relation = IdEmbedding(num_relations, self._relation_dim(), init="xavier")

    def _relation_dim(self) -> int:
        return self.dim

    def project(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """Entity vectors ``[B, d]`` in the space of ``relation`` ``[B]`` (identity for TransE)."""
        return entity

    def triple_vectors(self, head: torch.Tensor, relation: torch.Tensor, tail: torch.Tensor):
        """``(h, r, t)`` as the distance uses them (projected, normalised when configured)."""
        h, t, r = self.project(head, relation), self.project(tail, relation), self.relation(relation)
        if self.normalize:
            h, r, t = (F.normalize(x, p=2, dim=-1) for x in (h, r, t))
        return h, r, t

    def distance_score(self, diff: torch.Tensor) -> torch.Tensor:
        """``-||diff||_p`` (``-||diff||_2^2`` with ``squared``) over the last dimension."""
        if self.squared:
            return -(diff * diff).sum(-1)
        return -diff.norm(p=self.p, dim=-1)

    def forward(self, head: torch.Tensor, relation: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` of triples: head / tail vectors ``[B, d]``, relation ids ``[B]``."""
        h, r, t = self.triple_vectors(head, relation, tail)
        return self.distance_score(h + r - t)

    def corrupted_scores(self, head: torch.Tensor, relation: torch.Tensor, pos_tail: torch.Tensor,
                         neg_tail: torch.Tensor):
        """Scores of true and corrupted triples sharing head and relation, projecting the three entity
        vectors at once: ``(pos [B], neg [B], (h, r, t_pos, t_neg))`` with the vectors as the distance uses them."""
        stacked = self.project(torch.stack([head, pos_tail, neg_tail], dim=1),
                               relation.unsqueeze(1).expand(-1, 3))
        r = self.relation(relation)
        h, tp, tn = stacked.unbind(1)
        if self.normalize:
            h, r, tp, tn = (F.normalize(x, p=2, dim=-1) for x in (h, r, tp, tn))
        return self.distance_score(h + r - tp), self.distance_score(h + r - tn), (h, r, tp, tn)

    def extra_repr(self) -> str:
        return f"num_relations={self.num_relations}, dim={self.dim}, p={self.p}, squared={self.squared}, " \
               f"normalize={self.normalize}"


class TransR(TransE):
    """``score(h, r, t) = -||h W_r + r - t W_r||_p``: entities projected per relation (Lin et al., 2015).

    Args:
        num_relations: relation ids including the padding id 0.
        dim: entity vector size.
        relation_dim: relation vector size (``W_r`` is ``dim x relation_dim``); default ``dim``.
        p, squared, normalize: as in :class:`TransE`.

    ``W_r`` starts Xavier-normal per relation (as RecBole's ``trans_w``); the padding relation's is zero.
    """

    def __init__(self, num_relations: int, dim: int, relation_dim: int = None, p: int = 2, squared: bool = False,
                 normalize: bool = False):
        self.relation_dim = int(relation_dim or dim)
        super().__init__(num_relations, dim, p=p, squared=squared, normalize=normalize)
        self.proj = IdEmbedding(num_relations, dim * self.relation_dim, init="xavier")

    def _relation_dim(self) -> int:
        return self.relation_dim

    def matrices(self, relation: torch.Tensor) -> torch.Tensor:
        """``W_r`` ``[*, dim, relation_dim]`` of relation ids ``[*]``."""
        return self.proj(relation).view(*relation.shape, self.dim, self.relation_dim)

    def project(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``entity W_r`` ``[*, relation_dim]`` of entity vectors ``[*, dim]`` and relation ids ``[*]``:
        one matrix product per relation present (grouping the rows by relation), not one per row."""
        flat, rel = entity.reshape(-1, self.dim), relation.reshape(-1)
        order = torch.argsort(rel, stable=True)
        counts = torch.bincount(rel, minlength=self.num_relations).tolist()
        W = self.proj.weight.view(self.num_relations, self.dim, self.relation_dim)
        chunks = torch.split(flat[order], counts)
        out = torch.cat([c @ W[r] for r, c in enumerate(chunks) if len(c)] or [flat.new_zeros(0, self.relation_dim)])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return out[inverse].view(*entity.shape[:-1], self.relation_dim)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", relation_dim={self.relation_dim}"


class TransH(TransE):
    """``score(h, r, t) = -||h_r + d_r - t_r||_p`` with ``e_r = e - (w_r . e) w_r``: entities projected onto
    the relation's hyperplane of unit normal ``w_r`` (Wang et al., AAAI 2014, "Knowledge Graph Embedding by
    Translating on Hyperplanes").

    Args:
        num_relations: relation ids including the padding id 0.
        dim: entity and relation vector size.
        p, squared, normalize: as in :class:`TransE`.

    The normals ``w_r`` start Xavier-normal and are unit-normalised when used (the paper's ``||w_r|| = 1``
    constraint, as RecBole's KTUP does); the padding relation's normal is zero (no projection).
    """

    def __init__(self, num_relations: int, dim: int, p: int = 2, squared: bool = False, normalize: bool = False):
        super().__init__(num_relations, dim, p=p, squared=squared, normalize=normalize)
        self.normal = IdEmbedding(num_relations, dim, init="xavier")

    def project(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``e - (w_r . e) w_r`` ``[*, dim]`` of entity vectors ``[*, dim]`` and relation ids ``[*]``."""
        w = F.normalize(self.normal(relation), p=2, dim=-1)
        return entity - (entity * w).sum(-1, keepdim=True) * w


class TransD(TransE):
    """``score(h, r, t) = -||h_r + r - t_r||_p`` with ``e_r = I e + (e_p . e) r_p`` (Ji et al., ACL 2015,
    "Knowledge Graph Embedding via Dynamic Mapping Matrix"): the mapping matrix ``M_re = r_p e_p^T + I``
    is built from a projection vector of the entity (``e_p``) and one of the relation (``r_p``).

    The entity's projection vector travels with its embedding: entity vectors are ``[*, 2 * dim]``,
    ``[e ; e_p]`` (a model keeps an entity table of width ``2 * dim``, or concatenates two tables).
    ``I`` is the ``relation_dim x dim`` identity (truncating or zero-padding ``e``).

    Args:
        num_relations: relation ids including the padding id 0.
        dim: entity vector size (the input is ``2 * dim``: embedding and projection vector).
        relation_dim: relation vector size; default ``dim``.
        p, squared, normalize: as in :class:`TransE`.

    Example:
        >>> scorer = TransD(num_relations=3, dim=4)
        >>> scorer(torch.zeros(2, 8), torch.tensor([1, 2]), torch.zeros(2, 8)).shape
        torch.Size([2])
    """

    def __init__(self, num_relations: int, dim: int, relation_dim: int = None, p: int = 2, squared: bool = False,
                 normalize: bool = False):
        self.relation_dim = int(relation_dim or dim)
        super().__init__(num_relations, dim, p=p, squared=squared, normalize=normalize)
        self.relation_proj = IdEmbedding(num_relations, self.relation_dim, init="xavier")

    def _relation_dim(self) -> int:
        return self.relation_dim

    def project(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """``I e + (e_p . e) r_p`` ``[*, relation_dim]`` of entity vectors ``[*, 2 * dim]`` (``[e ; e_p]``)."""
        if entity.shape[-1] != 2 * self.dim:
            raise ConfigError(f"TransD takes entity vectors [e ; e_p] of size 2 * dim = {2 * self.dim}, "
                              f"got {entity.shape[-1]}.")
        e, e_p = entity[..., :self.dim], entity[..., self.dim:]
        m = self.relation_dim
        base = e[..., :m] if m <= self.dim else F.pad(e, (0, m - self.dim))
        return base + (e_p * e).sum(-1, keepdim=True) * self.relation_proj(relation)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", relation_dim={self.relation_dim}"


def kg_bpr_loss(pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
    """``mean(-ln sigma(pos - neg))`` over the batch (``softplus(neg - pos)``, numerically stable).

    Example:
        >>> round(float(kg_bpr_loss(torch.tensor([0.0]), torch.tensor([0.0]))), 4)
        0.6931
    """
    return F.softplus(neg_score - pos_score).mean()


def kg_margin_loss(pos_score: torch.Tensor, neg_score: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """``mean(max(0, margin - pos + neg))``: the margin ranking loss of TransE / TransR.

    Example:
        >>> float(kg_margin_loss(torch.tensor([0.0]), torch.tensor([-3.0]), margin=1.0))
        0.0
    """
    return F.relu(margin - pos_score + neg_score).mean()


def embedding_norm(*tensors: torch.Tensor) -> torch.Tensor:
    """``sum_k ||X_k||_F / B``: RecBole's ``EmbLoss`` regulariser over batch tensors ``[B, ...]``
    (B from the last tensor)."""
    if not tensors:
        raise ConfigError("embedding_norm needs at least one tensor.")
    total = sum(torch.linalg.vector_norm(x) for x in tensors)
    return total / max(1, tensors[-1].shape[0])


KG_SCORERS = {"transe": TransE, "transr": TransR, "transh": TransH, "transd": TransD}
KG_LOSSES = ("bpr", "margin")

__all__ = ["TransE", "TransR", "TransH", "TransD", "kg_bpr_loss", "kg_margin_loss", "embedding_norm", "KG_SCORERS",
           "KG_LOSSES"]
