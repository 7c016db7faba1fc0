"""The score-function contract, its registry, and the decomposability check.

A score function maps a query vector (a tower output) and an item vector to a scalar, higher =
more relevant. It is *decomposable* when ``score(q, v)`` ranks items exactly like an ANN index
of metric ``metric`` built over ``item_vector(v)`` and searched with ``query_vector(q)``; only
decomposable score functions allow ANN retrieval and sampling from item vectors.
"""
import inspect
from typing import Optional, Union

import torch
from torch import nn

from recstudio.utils.errors import ConfigError
from recstudio.utils.registry import Registry

SCORERS = Registry("score function")

METRICS = ("ip", "l2", "cosine")


class ScoreFunction(nn.Module):
    """Base class of score functions.

    Shapes (``d`` = vector size, ``*`` = any leading shape, typically ``[B]`` or ``[B, L]``):

    - ``forward(query [*, d], items [*, d]) -> [*]``: one item per query (pairs);
    - ``forward(query [*, d], items [*, K, d]) -> [*, K]``: ``K`` candidates per query;
    - ``score_all(query [*, d], item_vectors [N, d]) -> [*, N]``: every item (full ranking).

    Subclasses implement :meth:`pair_score` on broadcastable ``[..., d]`` inputs; decomposable
    ones also override :meth:`_score_matrix` with a matrix product and set ``decomposable = True``
    and ``metric``. ``score_all`` is chunked over items by ``item_chunk_size`` (default: no
    chunking for decomposable scorers, 1024 items otherwise) so memory stays bounded.

    Attributes:
        decomposable: whether ANN retrieval / sampling from item vectors is exact for this scorer.
        metric: ``'ip' | 'l2' | 'cosine'`` (decomposable) or ``None``: the ANN metric whose
            ranking of ``item_vector(v)`` for ``query_vector(q)`` equals this scorer's ranking.
        needs_dim: the constructor takes the vector size ``dim`` (learned parameters).
        registry_name: the name it is registered under.
    """

    decomposable: bool = False
    metric: Optional[str] = None
    needs_dim: bool = False
    registry_name: str = ""
    default_item_chunk_size: Optional[int] = 1024

    def __init__(self, item_chunk_size: Optional[int] = None):
        super().__init__()
        if item_chunk_size is not None and item_chunk_size < 1:
            raise ConfigError(f"item_chunk_size must be a positive int or None, got {item_chunk_size}.")
        self.item_chunk_size = item_chunk_size if item_chunk_size is not None else (
            None if self.decomposable else self.default_item_chunk_size)

    # -- to implement ---------------------------------------------------------------------------
    def pair_score(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of broadcastable ``query [..., d]`` and ``items [..., d]`` -> ``[...]``."""
        raise TypeError(f"{type(self).__name__} must implement pair_score() of its base class.")

    def _score_matrix(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``query [M, d]`` x ``items [C, d]`` -> ``[M, C]`` (default: broadcast :meth:`pair_score`)."""
        return self.pair_score(query.unsqueeze(1), items.unsqueeze(0))

    # -- the contract ---------------------------------------------------------------------------
    def forward(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Score ``items [*, d]`` (one per query) or ``[*, K, d]`` (K candidates per query)."""
        if items.dim() == query.dim() + 1:
            query = query.unsqueeze(-2)
        elif items.dim() != query.dim():
            raise ConfigError(
                f"{self._name()}: query {tuple(query.shape)} and items {tuple(items.shape)} do not match; "
                f"items must be [*, d] (pairs) or [*, K, d] (candidates) for query [*, d]. "
                f"To score every item use score_all(query, item_vectors).")
        try:
            if query.shape != items.shape:  # broadcast_shapes costs ~0.1 ms a call: only when the shapes differ
                torch.broadcast_shapes(query.shape, items.shape)
        except RuntimeError:
            raise ConfigError(
                f"{self._name()}: query {tuple(query.shape)} and items {tuple(items.shape)} have different "
                f"batch shapes. To score every item for every query use score_all(query, item_vectors)."
            ) from None
        return self.pair_score(query, items)

    def score_all(self, query: torch.Tensor, item_vectors: torch.Tensor,
                  item_chunk_size: Optional[int] = None) -> torch.Tensor:
        """Scores of every item: ``query [*, d]``, ``item_vectors [N, d]`` -> ``[*, N]``.

        Args:
            item_chunk_size: items scored at a time; default ``self.item_chunk_size``
                (``None`` = all at once).
        """
        chunk = item_chunk_size if item_chunk_size is not None else self.item_chunk_size
        lead, d = query.shape[:-1], query.shape[-1]
        q = query.reshape(-1, d)
        n = item_vectors.size(0)
        if chunk is None or chunk >= n:
            scores = self._score_matrix(q, item_vectors)
        else:
            scores = torch.cat([self._score_matrix(q, item_vectors[i:i + chunk]) for i in range(0, n, chunk)], 1)
        return scores.reshape(*lead, n)

    def query_vector(self, query: torch.Tensor) -> torch.Tensor:
        """The vector to search an ANN index with (decomposable scorers only)."""
        require_decomposable(self, "query_vector()")
        return query

    def item_vector(self, items: torch.Tensor) -> torch.Tensor:
        """The vector to store in an ANN index (decomposable scorers only)."""
        require_decomposable(self, "item_vector()")
        return items

    def _name(self) -> str:
        return self.registry_name or type(self).__name__

    def extra_repr(self) -> str:
        return f"decomposable={self.decomposable}, metric={self.metric!r}"


def decomposable_names():
    """Registered score functions that are decomposable."""
    return [n for n in SCORERS.names() if SCORERS.info[n].get("decomposable")]


def require_decomposable(scorer: nn.Module, what: str = "ANN retrieval") -> None:
    """Raise :class:`ConfigError` unless ``scorer`` is decomposable.

    The framework calls it before ANN retrieval, model-based sampling, or anything that searches
    item vectors instead of scoring every item.

    Example:
        >>> require_decomposable(SCORERS.get("mlp")(dim=8), "ANN retrieval")   # doctest: +SKIP
        ConfigError: ANN retrieval needs a decomposable score function (...); 'mlp' is not ...
    """
    if getattr(scorer, "decomposable", False):
        return
    name = getattr(scorer, "registry_name", "") or type(scorer).__name__
    raise ConfigError(
        f"{what} needs a decomposable score function ({', '.join(decomposable_names())}); {name!r} is not "
        f"— use exact ranking (score every item with score_all), a sampler that does not read item "
        f"vectors (uniform, popularity, in-batch), or a decomposable score function.")


def get_score_func(spec: Union[str, type, nn.Module], dim: Optional[int] = None, **kwargs) -> nn.Module:
    """A score function from a registry name, a class, or an instance.

    Args:
        spec: ``'inner_product'`` (any case), a :class:`ScoreFunction` subclass, or an instance
            (returned as is; then no ``kwargs`` are allowed).
        dim: the query / item vector size, passed to scorers with learned parameters.
        **kwargs: constructor arguments (e.g. ``temperature=0.1``, ``hidden=(64, 32)``).

    Raises:
        ConfigError: unknown name, a missing ``dim``, or an argument the scorer does not take.

    Example:
        >>> get_score_func("cosine", temperature=0.2).metric
        'cosine'
    """
    if isinstance(spec, nn.Module):
        if kwargs:
            raise ConfigError(f"get_score_func: got an instance {type(spec).__name__} and arguments "
                              f"{sorted(kwargs)}; configure the instance instead.")
        return spec
    cls = SCORERS.get(spec) if isinstance(spec, str) else spec
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"score function must be a name, an nn.Module class or instance, got {spec!r}.")
    params = inspect.signature(cls.__init__).parameters
    name = getattr(cls, "registry_name", "") or cls.__name__
    if "dim" in params:
        if dim is None and "dim" not in kwargs and params["dim"].default is inspect.Parameter.empty:
            raise ConfigError(f"score function {name!r} has learned parameters and needs dim (the vector size).")
        if dim is not None:
            kwargs.setdefault("dim", dim)
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params or k == "self"]
    if unknown and not accepts_any:
        allowed = [p for p in params if p not in ("self",)]
        raise ConfigError(f"score function {name!r} does not take {unknown}; it takes {allowed}.")
    return cls(**kwargs)


def register_scorer(name: str, summary: str = "", **info):
    """Class decorator: register a :class:`ScoreFunction` in :data:`SCORERS` under ``name``.

    The registry entry records ``decomposable``, ``metric`` and ``summary``; the class gets
    ``registry_name = name``.
    """
    def deco(cls):
        cls.registry_name = name
        SCORERS.register(name, decomposable=cls.decomposable, metric=cls.metric, summary=summary, **info)(cls)
        return cls
    return deco
