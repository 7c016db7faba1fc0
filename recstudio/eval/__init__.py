"""Evaluation: ranking and pointwise metrics as tensor operations, full / sampled ranking evaluators.

Every metric is registered in :data:`METRICS` by name (``METRICS.get("ndcg")``, case-insensitive);
``METRICS.info[name]`` says its ``kind`` ('ranking', 'coverage', 'pointwise') and whether higher
is better. Definitions: ``docs/metrics.md``. This package never imports ``recstudio.model``.

Example:
    >>> from recstudio.eval import FullRankingEvaluator
    >>> ev = FullRankingEvaluator(["recall", "ndcg", "mrr"], cutoffs=[10, 20])
    >>> res = ev.evaluate(eval_dataset.loader(1024), score_fn)   # doctest: +SKIP
    >>> res["recall@10"]                                           # doctest: +SKIP
"""
from recstudio.eval.evaluator import (FullRankingEvaluator, SampledRankingEvaluator, chunked_topk, parse_metrics,
                                      sample_negatives)
from recstudio.eval.pointwise import PointwiseEvaluator, auc, gauc, logloss, mae, rmse
from recstudio.eval.ranking import (METRICS, RANKING_FUNCTIONS, higher_is_better, hit, in_csr, item_coverage, map_, mask_scores,
                                    merge_topk, mrr, ndcg, precision, ranking_hits, ranking_metrics, recall,
                                    sort_by_score_then_id, topk_exact, topk_masked)

__all__ = [
    "METRICS", "RANKING_FUNCTIONS", "higher_is_better", "FullRankingEvaluator", "SampledRankingEvaluator", "PointwiseEvaluator",
    "chunked_topk", "parse_metrics", "sample_negatives", "topk_masked", "topk_exact", "merge_topk", "mask_scores",
    "ranking_hits", "ranking_metrics", "in_csr", "sort_by_score_then_id", "recall", "precision", "hit", "mrr",
    "ndcg", "map_", "item_coverage", "auc", "gauc", "logloss", "rmse", "mae",
]
