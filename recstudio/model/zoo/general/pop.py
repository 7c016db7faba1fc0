"""Pop: recommend the most popular items of the train split to everyone."""
from typing import Any, Dict

import numpy as np
import torch

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.registry import register_model


@register_model("Pop", category="general", aliases=("MostPop",),
                paper="P. Cremonesi, Y. Koren, R. Turrin. Performance of Recommender Algorithms on Top-N "
                      "Recommendation Tasks. RecSys 2010 (the MostPopular baseline).")
class Pop(TowerFreeRecommender):
    """Most-popular baseline: ``score(u, i) = c_i / max_j c_j`` for every user, where ``c_i`` is the number of
    train interactions of item ``i`` (every train row counts, so a repeated (user, item) pair counts each
    time; use ``dedup`` in the data config to count users instead). The counts are a buffer set in closed
    form (``fit_mode = 'closed_form'``, no epochs) and saved in checkpoints. Seen items are masked at
    evaluation and in ``recommend`` as for every model.

    Departures from RecBole's Pop: RecBole counts the items of its training batches during one epoch,
    which with its default ``train_neg_sample_args`` (one uniform negative per positive, pointwise input)
    also counts the sampled negatives, so its counts are the train counts plus noise of about
    ``|train| / num_items`` per item; here only the train interactions count.

    Args (config keys): none.

    Example:
        >>> model, metrics = recstudio.run(model="Pop", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    fit_mode = "closed_form"
    option_help: Dict[str, str] = {}

    def build_blocks(self) -> None:
        self.register_buffer("popularity", torch.zeros(self.meta.num_items))

    def fit_closed_form(self, split) -> None:
        counts = np.bincount(split.dataset.items[split.train], minlength=self.meta.num_items).astype(np.float64)
        counts[0] = 0.0
        top = counts.max() if counts.max() > 0 else 1.0
        self.popularity.copy_(torch.as_tensor(counts / top, dtype=torch.float32))

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        return None

    def score(self, batch, items: torch.Tensor) -> torch.Tensor:
        return self.popularity[items.long()]

    def score_all_candidates(self, batch, state: Any) -> torch.Tensor:
        rows = len(batch[self.meta.uid_field])
        return self.popularity[None, :].expand(rows, -1).clone()
