"""Score functions: ``score(query vector, item vector) -> scalar``, higher = more relevant.

Registry :data:`SCORERS` (names ``inner_product``, ``cosine``, ``euclidean``, ``gmf``, ``mlp``,
``neumf``); :func:`get_score_func` builds one from a name, a class or an instance;
:func:`require_decomposable` guards ANN retrieval and model-based sampling. See ``docs/blocks.md``.
"""
from recstudio.model.scorer.base import (SCORERS, ScoreFunction, decomposable_names, get_score_func,
                                         register_scorer, require_decomposable)
from recstudio.model.scorer.simple import CosineScorer, EuclideanScorer, InnerProductScorer
from recstudio.model.scorer.neural import GMFScorer, MLPScorer, NeuMFScorer, PairMLP

__all__ = ["SCORERS", "ScoreFunction", "decomposable_names", "get_score_func", "register_scorer",
           "require_decomposable", "InnerProductScorer", "CosineScorer", "EuclideanScorer", "GMFScorer",
           "MLPScorer", "NeuMFScorer", "PairMLP"]
