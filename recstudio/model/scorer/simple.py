"""Parameter-free decomposable score functions: inner product, cosine, (negative) euclidean distance."""
from typing import Optional

import torch.nn.functional as F

from recstudio.model.scorer.base import ScoreFunction, register_scorer
from recstudio.utils.errors import ConfigError


@register_scorer("inner_product", summary="q . v (matrix factorisation)")
class InnerProductScorer(ScoreFunction):
    """``score = q . v``. Decomposable, metric ``'ip'``; query/item vectors are the inputs.

    Args:
        item_chunk_size: see :meth:`ScoreFunction.score_all` (default: no chunking).

    Example:
        >>> s = InnerProductScorer()
        >>> s(torch.ones(2, 4), torch.ones(2, 3, 4)).shape, s.score_all(torch.ones(2, 4), torch.ones(5, 4)).shape
        (torch.Size([2, 3]), torch.Size([2, 5]))
    """

    decomposable = True
    metric = "ip"

    def pair_score(self, query, items):
        return (query * items).sum(-1)

    def _score_matrix(self, query, items):
        return query @ items.t()


@register_scorer("cosine", summary="cos(q, v) / temperature")
class CosineScorer(ScoreFunction):
    """``score = cos(q, v) / temperature``. Decomposable, metric ``'cosine'``.

    ``query_vector`` / ``item_vector`` L2-normalise, so an inner-product index over them ranks
    like this scorer too (its scores are ``temperature`` times ours).

    Args:
        temperature: divides the cosine (> 0); 1 = plain cosine.
        eps: lower bound on the norms (zero vectors score 0).
        item_chunk_size: see :meth:`ScoreFunction.score_all`.

    Example:
        >>> CosineScorer(temperature=0.5)(torch.tensor([[1., 0.]]), torch.tensor([[2., 0.]]))
        tensor([2.])
    """

    decomposable = True
    metric = "cosine"

    def __init__(self, temperature: float = 1.0, eps: float = 1e-8, item_chunk_size: Optional[int] = None):
        super().__init__(item_chunk_size)
        if temperature <= 0:
            raise ConfigError(f"cosine temperature must be > 0, got {temperature}.")
        self.temperature, self.eps = float(temperature), eps

    def _normalize(self, x):
        return F.normalize(x, dim=-1, eps=self.eps)

    def pair_score(self, query, items):
        return (self._normalize(query) * self._normalize(items)).sum(-1) / self.temperature

    def _score_matrix(self, query, items):
        return self._normalize(query) @ self._normalize(items).t() / self.temperature

    def query_vector(self, query):
        return self._normalize(query)

    def item_vector(self, items):
        return self._normalize(items)

    def extra_repr(self):
        return super().extra_repr() + f", temperature={self.temperature}"


@register_scorer("euclidean", summary="-||q - v|| (higher = closer)")
class EuclideanScorer(ScoreFunction):
    """``score = -||q - v||`` (or ``-||q - v||^2`` with ``squared=True``): higher = closer.

    Decomposable, metric ``'l2'`` (an L2 index returns the nearest, i.e. highest-scoring, items);
    query/item vectors are the inputs. The distance is ``sqrt(max(d^2, eps))`` so the gradient stays
    finite when ``q == v``. ``score_all`` expands ``|q|^2 - 2 q.v + |v|^2`` (a matrix product).

    Args:
        squared: score with the negative squared distance (same ranking, smoother gradient).
        eps: floor of the squared distance before the square root.
        item_chunk_size: see :meth:`ScoreFunction.score_all`.

    Example:
        >>> EuclideanScorer()(torch.tensor([[0., 0.]]), torch.tensor([[3., 4.]]))
        tensor([-5.])
    """

    decomposable = True
    metric = "l2"

    def __init__(self, squared: bool = False, eps: float = 1e-12, item_chunk_size: Optional[int] = None):
        super().__init__(item_chunk_size)
        self.squared, self.eps = bool(squared), eps

    def _from_sq(self, d2):
        d2 = d2.clamp(min=0.0)
        return -d2 if self.squared else -d2.clamp(min=self.eps).sqrt()

    def pair_score(self, query, items):
        return self._from_sq(((query - items) ** 2).sum(-1))

    def _score_matrix(self, query, items):
        d2 = (query ** 2).sum(-1, keepdim=True) - 2 * query @ items.t() + (items ** 2).sum(-1)
        return self._from_sq(d2)

    def extra_repr(self):
        return super().extra_repr() + f", squared={self.squared}"
