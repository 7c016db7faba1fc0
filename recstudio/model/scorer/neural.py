"""Learned score functions: MLP over [q, v], GMF, and NeuMF fusion (He et al., WWW 2017).

The MLP parts compute their first layer as ``W_q q + W_v v + b`` (the same as ``W [q, v] + b``)
so ``score_all`` never materialises ``[B, N, 2d]`` concatenations; it is still chunked over items
(``item_chunk_size``, default 1024) because the hidden activations are ``[B, chunk, hidden]``.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.module.mlp import MLP, get_activation
from recstudio.model.scorer.base import ScoreFunction, register_scorer
from recstudio.utils.errors import ConfigError


class PairMLP(nn.Module):
    """``MLP([q, v])`` with every layer activated, computed without concatenating ``q`` and ``v``.

    Args:
        q_dim, v_dim: input sizes; the first layer is ``Linear(q_dim + v_dim, hidden[0])`` on ``[q, v]``.
        hidden: layer sizes (at least one).
        activation, dropout: as in :class:`~recstudio.model.module.mlp.MLP`.

    Example:
        >>> PairMLP(4, 4, [8, 6])(torch.randn(2, 1, 4), torch.randn(1, 5, 4)).shape
        torch.Size([2, 5, 6])
    """

    def __init__(self, q_dim: int, v_dim: int, hidden: Sequence[int], activation="relu", dropout: float = 0.0):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if not hidden:
            raise ConfigError("an MLP score function needs at least one hidden layer (hidden=[...]).")
        self.q_dim = q_dim
        self.first = nn.Linear(q_dim + v_dim, hidden[0])
        self.act = get_activation(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.rest = (MLP(hidden, activation, dropout, last_activation=True) if len(hidden) > 1
                     else nn.Identity())
        self.out_dim = hidden[-1]

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Broadcastable ``q [..., q_dim]``, ``v [..., v_dim]`` -> ``[..., hidden[-1]]``."""
        w = self.first.weight
        h = F.linear(q, w[:, :self.q_dim]) + F.linear(v, w[:, self.q_dim:], self.first.bias)
        return self.rest(self.dropout(self.act(h)))


@register_scorer("mlp", summary="MLP([q, v]) -> scalar (not decomposable)")
class MLPScorer(ScoreFunction):
    """``score = w^T MLP([q, v]) + b``: a learned interaction; not decomposable (no ANN).

    Args:
        dim: query and item vector size ``d``.
        hidden: hidden layer sizes of the MLP over the ``2d`` concatenation.
        activation, dropout: of the hidden layers.
        item_chunk_size: items per chunk in :meth:`score_all` (default 1024).

    Example:
        >>> s = MLPScorer(dim=4, hidden=(8,))
        >>> s(torch.randn(2, 4), torch.randn(2, 3, 4)).shape
        torch.Size([2, 3])
    """

    needs_dim = True

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 32), activation="relu", dropout: float = 0.0,
                 item_chunk_size: Optional[int] = None):
        super().__init__(item_chunk_size)
        self.dim = int(dim)
        self.tower = PairMLP(dim, dim, hidden, activation, dropout)
        self.out = nn.Linear(self.tower.out_dim, 1)

    def pair_score(self, query, items):
        return self.out(self.tower(query, items)).squeeze(-1)


@register_scorer("gmf", summary="h^T (q * v), learnable h (decomposable: ip of h*q and v)")
class GMFScorer(ScoreFunction):
    """Generalized matrix factorisation (He et al., WWW 2017): ``score = h^T (q ⊙ v)``.

    ``h`` is learned (initialised to ones, i.e. plain inner product). Since
    ``h^T (q ⊙ v) = (h ⊙ q) . v``, GMF *is* decomposable: metric ``'ip'``,
    ``query_vector(q) = h ⊙ q``, ``item_vector(v) = v``.

    Args:
        dim: vector size ``d``.
        item_chunk_size: see :meth:`ScoreFunction.score_all` (default: no chunking).

    Example:
        >>> GMFScorer(dim=2)(torch.tensor([[1., 2.]]), torch.tensor([[3., 4.]]))
        tensor([11.], grad_fn=<SumBackward1>)
    """

    decomposable = True
    metric = "ip"
    needs_dim = True

    def __init__(self, dim: int, item_chunk_size: Optional[int] = None):
        super().__init__(item_chunk_size)
        self.h = nn.Parameter(torch.ones(int(dim)))

    def pair_score(self, query, items):
        return (query * self.h * items).sum(-1)

    def _score_matrix(self, query, items):
        return (query * self.h) @ items.t()

    def query_vector(self, query):
        return query * self.h

    def item_vector(self, items):
        return items


@register_scorer("neumf", summary="NeuMF fusion of a GMF and an MLP branch over separate halves")
class NeuMFScorer(ScoreFunction):
    """NeuMF fusion (He et al., "Neural Collaborative Filtering", WWW 2017). Not decomposable.

    **Convention**: the GMF and MLP branches use *separate* embeddings, carried in one vector:
    ``q = [q_gmf | q_mlp]`` and ``v = [v_gmf | v_mlp]`` with the first ``gmf_dim`` entries for
    GMF (default ``dim // 2``, i.e. two halves) and the rest for the MLP. So a NeuMF tower outputs
    ``dim``-sized vectors whose halves are two independent embeddings.

    ``score = w^T [q_gmf ⊙ v_gmf, MLP([q_mlp, v_mlp])] + b``.

    Args:
        dim: full vector size ``d``.
        hidden: hidden sizes of the MLP branch (its input is ``2 * (d - gmf_dim)``).
        activation, dropout: of the MLP branch.
        gmf_dim: size of the GMF part; default ``dim // 2`` (``dim`` must then be even).
        item_chunk_size: items per chunk in :meth:`score_all` (default 1024).

    Example:
        >>> s = NeuMFScorer(dim=8, hidden=(8, 4))       # q[:, :4] -> GMF, q[:, 4:] -> MLP
        >>> s(torch.randn(2, 8), torch.randn(2, 5, 8)).shape
        torch.Size([2, 5])
    """

    needs_dim = True

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 32), activation="relu", dropout: float = 0.0,
                 gmf_dim: Optional[int] = None, item_chunk_size: Optional[int] = None):
        super().__init__(item_chunk_size)
        dim = int(dim)
        if gmf_dim is None:
            if dim % 2:
                raise ConfigError(f"neumf splits vectors into [gmf | mlp] halves; dim={dim} is odd. "
                                  f"Use an even dim or set gmf_dim.")
            gmf_dim = dim // 2
        if not 0 < gmf_dim < dim:
            raise ConfigError(f"neumf gmf_dim must be in 1..{dim - 1}, got {gmf_dim}.")
        self.dim, self.gmf_dim = dim, int(gmf_dim)
        mlp_dim = dim - self.gmf_dim
        self.mlp = PairMLP(mlp_dim, mlp_dim, hidden, activation, dropout)
        self.out = nn.Linear(self.gmf_dim + self.mlp.out_dim, 1)

    def split(self, x: torch.Tensor):
        """``[..., d] -> ([..., gmf_dim], [..., d - gmf_dim])``."""
        if x.size(-1) != self.dim:
            raise ConfigError(f"neumf expects vectors of size {self.dim} ([gmf | mlp]), got {x.size(-1)}.")
        return x[..., :self.gmf_dim], x[..., self.gmf_dim:]

    def pair_score(self, query, items):
        qg, qm = self.split(query)
        vg, vm = self.split(items)
        # out([gmf, mlp]) computed as w_g . gmf + w_m . mlp + b (broadcasts without concatenating)
        w = self.out.weight
        score = F.linear(qg * vg, w[:, :self.gmf_dim]) + F.linear(self.mlp(qm, vm), w[:, self.gmf_dim:], self.out.bias)
        return score.squeeze(-1)
