"""``TowerFreeRecommender``: any interaction between user and item inputs, scored pair by pair."""
from typing import Any, Dict

import torch

from recstudio.model.base.recommender import COMMON_HELP, Recommender
from recstudio.utils.errors import ConfigError


class TowerFreeRecommender(Recommender):
    """A model that scores (user, item) pairs jointly, so items have no standalone vectors.

    Subclasses implement :meth:`score` for a batch's rows and candidate item ids. Ranking all
    items scores every item in chunks of ``item_chunk_size`` (memory ``B x chunk``), and no ANN
    index or model-based sampler can be used.

    Example:
        >>> class Dot(TowerFreeRecommender):                           # doctest: +SKIP
        ...     def score(self, batch, items):
        ...         return (self.u(batch["user_id"])[:, None] * self.v(items.view(len(items), -1))).sum(-1)
    """

    base_name = "TowerFree"
    option_help = dict(COMMON_HELP)
    item_chunk_size = 2048

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` ``[B]`` or ``[B, K]`` for the batch's rows (same shape as ``items``)."""
        raise ConfigError(f"{type(self).__name__} is a TowerFreeRecommender and must define score(batch, items).")

    def score_candidates(self, batch, state: Any, items: torch.Tensor) -> torch.Tensor:
        return self.score(batch, items)

    def score_all_candidates(self, batch, state: Any) -> torch.Tensor:
        rows = len(next(iter(batch.values())))
        n = self.meta.num_items
        out = torch.empty(rows, n, device=self.device)
        for lo in range(0, n, self.item_chunk_size):
            hi = min(lo + self.item_chunk_size, n)
            items = torch.arange(lo, hi, device=self.device).expand(rows, hi - lo)
            out[:, lo:hi] = self.score(batch, items)
        return out
