"""The cold-start-item protocol: held-out items that have content but no training interaction.

:func:`cold_item_split` holds out ``cold_ratio`` of the items (seeded): every interaction of a held-out item
leaves the training, validation and test phases and becomes a *cold target*. The warm part is split by the
dataset's usual protocol (``split`` is a normal :class:`~recstudio.data.split.DataSplit`: train on it,
early-stop on its warm validation). :meth:`ColdItemSplit.evaluate` then ranks, for every user with a cold
target, **only the held-out items** (all of them, none seen in training) and reports the usual ranking
metrics: a model that scores items from their content (VBPR, DeepStyle, ContentTwoTower) can rank them; an
id-only model (BPR) ranks untrained vectors, i.e. at chance level or worse.

Caveat: held-out items stay in the catalogue, so the training sampler may draw them as negatives (as it may
draw any item the user has not interacted with in training); no held-out interaction is ever seen.

Example:
    >>> cold = cold_item_split(dataset, cold_ratio=0.2, seed=2022)      # doctest: +SKIP
    >>> model.fit(cold.split)                                          # doctest: +SKIP
    >>> cold.evaluate(model)["ndcg@10"]                                 # doctest: +SKIP
"""
from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from recstudio.data.split import DataSplit
from recstudio.data.types.evaluation import EvalDataset
from recstudio.eval.evaluator import FullRankingEvaluator
from recstudio.utils.errors import ConfigError, DataError


@dataclass
class ColdItemSplit:
    """A warm split plus held-out cold items.

    Args:
        split: the warm train / valid / test split (no row of a cold item).
        cold_items: inner ids of the held-out items (sorted).
        cold_rows: interaction rows of the cold items (the cold targets).
    """

    split: DataSplit
    cold_items: np.ndarray
    cold_rows: np.ndarray

    @property
    def cold_split(self) -> DataSplit:
        """A split whose test phase is the cold targets and whose test history is the warm train + valid
        (what a deployed model knows), for :class:`EvalDataset`."""
        s = self.split
        history = np.union1d(s.train, s.valid)
        return replace(s, test=self.cold_rows, test_history=history)

    def evaluate(self, model, metrics: Optional[Sequence[str]] = None, cutoffs: Optional[Sequence[int]] = None,
                 batch_size: Optional[int] = None) -> Dict[str, float]:
        """Ranking metrics of the cold targets among the cold items only.

        Args:
            model: a trained ranking model (anything with ``score_users(batch)``, ``config`` and ``device``).
            metrics, cutoffs: default the model's ``metrics`` / ``cutoffs``.
            batch_size: users per batch (default the model's ``eval_batch_size``).
        """
        if getattr(model, "eval_task", "ranking") != "ranking":
            raise ConfigError(f"the cold-item protocol ranks items; {type(model).__name__} is a "
                              f"{model.eval_task} model.")
        cfg = model.config
        ev = FullRankingEvaluator(metrics or [m for m in cfg["metrics"] if m != "item_coverage"],
                                  cutoffs or cfg["cutoffs"])
        num_items = self.split.dataset.num_items
        warm = torch.ones(num_items, dtype=torch.bool)
        warm[torch.as_tensor(self.cold_items)] = False   # padding 0 stays masked too
        model.eval()
        loader = EvalDataset(self.cold_split, "test").loader(batch_size or cfg["eval_batch_size"])
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(model.device) for k, v in batch.items()}
                scores = model.score_users(batch).clone()
                scores[:, warm.to(scores.device)] = float("-inf")
                ev.update(batch, scores)
        return ev.compute()

    def summary(self) -> Dict[str, int]:
        users = self.split.dataset.users[self.cold_rows]
        return {**self.split.summary(), "cold_items": int(len(self.cold_items)),
                "cold_interactions": int(len(self.cold_rows)), "cold_users": int(len(np.unique(users)))}


def cold_item_split(dataset, cold_ratio: float = 0.2, seed: int = 2022, **split_kwargs) -> ColdItemSplit:
    """Hold out ``cold_ratio`` of the items that have interactions (drawn with ``seed``) and split the rest.

    Args:
        dataset: a :class:`~recstudio.data.dataset.RecDataset`.
        cold_ratio: share of the items held out, in (0, 1).
        seed: seed of the item draw.
        **split_kwargs: keys of ``dataset.split`` for the warm split (default: the dataset's protocol).

    Raises:
        ConfigError: ``cold_ratio`` outside (0, 1).
        DataError: no warm training interaction or no cold target remains.
    """
    if not 0.0 < cold_ratio < 1.0:
        raise ConfigError(f"cold_ratio must be in (0, 1), got {cold_ratio}.")
    items = np.unique(dataset.items)
    items = items[items > 0]
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(cold_ratio * len(items))))
    cold = np.sort(rng.choice(items, size=n_cold, replace=False))
    base = dataset.split(**split_kwargs)
    is_cold = np.zeros(dataset.num_items, dtype=bool)
    is_cold[cold] = True

    def warm(rows: np.ndarray) -> np.ndarray:
        return rows[~is_cold[dataset.items[rows]]]

    split = replace(base, train=warm(base.train), valid=warm(base.valid), test=warm(base.test),
                    valid_history=warm(base.valid_history), test_history=warm(base.test_history))
    cold_rows = np.nonzero(is_cold[dataset.items])[0]
    if len(split.train) == 0 or len(cold_rows) == 0:
        raise DataError(f"cold_ratio={cold_ratio} leaves {len(split.train)} warm training and {len(cold_rows)} cold "
                        "interactions; pick a ratio that leaves both.")
    return ColdItemSplit(split, cold, cold_rows)
