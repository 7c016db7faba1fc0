"""``ServingEngine``: a trained model behind a lock, answering in JSON-ready Python lists.

The HTTP layer (:mod:`recstudio.serving.app`) only parses and validates; everything that touches
the model goes through here, one request at a time (torch modules, the lazily built ANN index and
the model's caches are not meant for concurrent use, and on a few CPU cores running two torch
calls at once is not faster than running them in turn).
"""
import threading
from typing import Any, Dict, List, Optional, Sequence

import torch


class ServingEngine:
    """Thread-safe inference on one model.

    Args:
        model: a fitted or loaded :class:`~recstudio.model.base.recommender.Recommender`. If its
            ``ann`` key names an index, the index is built here, once (not on the first request).

    Example:
        >>> engine = ServingEngine(recstudio.load("bpr.pt"))                       # doctest: +SKIP
        >>> engine.recommend(["196"], k=3)
        [{'user': '196', 'items': ['1449', '408', '1122'], 'scores': [...], 'fallback': None}]
    """

    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()
        model._require_meta()
        model.eval()
        if model.config.get("ann") is not None:
            model.configure_ann(model.config["ann"])  # build the index now, not on the first request
        from recstudio.model.family.feature import FeatureRecommender
        from recstudio.serving.features import RawFeatureEncoder
        #: raw feature values -> model inputs, for feature (CTR) models (``None`` for the others)
        self.features = RawFeatureEncoder(model) if isinstance(model, FeatureRecommender) else None

    def health(self) -> Dict[str, Any]:
        m = self.model
        return {"status": "ok", "model": m.model_name, "base": m.base_name, "num_users": m.meta.num_users - 1,
                "num_items": m.meta.num_items - 1, "ann": m.config.get("ann"),
                "similar_items": m.supports_similar_items()}

    def recommend(self, users: Sequence, k: int, exclude_seen: bool = True, unknown: str = "error"
                  ) -> List[Dict[str, Any]]:
        """One ``{user, items, scores, fallback}`` per user (padding dropped); errors as in
        :meth:`~recstudio.model.base.inference.InferenceMixin.recommend`."""
        with self.lock, torch.no_grad():
            items, scores = self.model.recommend(users, k, exclude_seen=exclude_seen, unknown=unknown)
            known = self.model.known_users(users) if unknown == "popular" else None
        fallback = [None] * len(users) if known is None else [None if ok else "popular" for ok in known.tolist()]
        return [{"user": user, **_row(row_items, row_scores), "fallback": fb}
                for user, row_items, row_scores, fb in zip(users, items.tolist(), scores.tolist(), fallback)]

    def similar_items(self, items: Sequence, k: int) -> List[Dict[str, Any]]:
        """One ``{item, items, scores}`` per item; errors as in
        :meth:`~recstudio.model.base.inference.InferenceMixin.similar_items`."""
        with self.lock, torch.no_grad():
            neighbours, scores = self.model.similar_items(items, k)
        return [{"item": item, **_row(row_items, row_scores)}
                for item, row_items, row_scores in zip(items, neighbours.tolist(), scores.tolist())]

    # ---- feature (CTR) models -------------------------------------------------------------------
    def _encoder(self):
        if self.features is None:
            from recstudio.serving.features import RawFeatureEncoder
            RawFeatureEncoder(self.model)  # raises the ConfigError saying which models /score and /rank serve
        return self.features

    def _logits(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.model.device
        with self.lock, torch.no_grad():
            logits = self.model.forward({k: v.to(device) for k, v in batch.items()})
        return logits.double().cpu()

    def fields(self) -> Dict[str, Any]:
        """The raw fields ``/score`` and ``/rank`` take (``GET /fields``)."""
        return self._encoder().describe()

    def score(self, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Click probabilities of raw feature rows, and each row's out-of-vocabulary fields (see
        :class:`~recstudio.serving.features.RawFeatureEncoder`)."""
        batch, oov = self._encoder().encode_rows(rows)
        probs = torch.sigmoid(self._logits(batch)).tolist() if rows else []
        return {"probabilities": probs, "oov": oov}

    def rank(self, user, context: Dict[str, Any], items: Sequence, k: Optional[int] = None) -> Dict[str, Any]:
        """Candidate ``items`` of ``user`` (in ``context``) by click probability, best first (ties keep the
        request order); the first ``k`` when given."""
        batch, oov = self._encoder().encode_candidates(user, context, items)
        logits = self._logits(batch)
        probs = torch.sigmoid(logits)
        order = torch.sort(logits, descending=True, stable=True).indices[:k].tolist()
        return {"user": user, "items": [items[j] for j in order], "scores": [float(probs[j]) for j in order],
                "oov": oov}


def _row(items: List[Optional[Any]], scores: List[float]) -> Dict[str, list]:
    """A result row without its padding (item ``None``, score ``-inf``: always at the end)."""
    n = len(items)
    while n and items[n - 1] is None:
        n -= 1
    return {"items": items[:n], "scores": scores[:n]}


__all__ = ["ServingEngine"]
