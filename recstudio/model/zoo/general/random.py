"""Random: a random ranking, reproducible per (seed, user, item)."""
from typing import Any, Dict

import torch

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.registry import register_model

_P = 2147483647  # 2^31 - 1: every product below stays under 2^62 in int64


def pair_uniform(users: torch.Tensor, items: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniform ``[0, 1)`` number per (user, item) pair, a fixed hash of ``(seed, user, item)``.

    Example:
        >>> a = pair_uniform(torch.tensor([[3]]), torch.tensor([[5]]), 0)
        >>> bool(a == pair_uniform(torch.tensor([[3]]), torch.tensor([[5]]), 0)), 0 <= float(a) < 1
        (True, True)
    """
    x = (users.long() % _P * 1000003 + items.long() % _P * 7919 + (seed % _P) * 15485863 + 12345) % _P
    for mult in (48271, 16807, 69621):
        x = x ^ (x >> 13)
        x = (x * mult + 1) % _P
    return x.double().div(_P).float()


@register_model("Random", category="general",
                paper="A uniform random ranking: the lower baseline of top-N evaluation (e.g. Cremonesi et al., "
                      "RecSys 2010).")
class Random(TowerFreeRecommender):
    """Random baseline: ``score(u, i) = h(seed, u, i)``, a fixed hash mapped to ``[0, 1)``, so every user gets an
    independent uniform random ranking that is reproducible (pair scores equal full-ranking scores, a saved
    model ranks as before). No fitting (``fit_mode = 'closed_form'`` with nothing to compute).

    Departures from RecBole's Random: RecBole draws one vector of item scores per evaluation batch and gives
    it to every user of the batch (the same random order for ~all users of the batch, fresh at every call);
    here each user has their own order, fixed by ``seed``. Expected metrics are the same (chance level).

    Args (config keys): none (``seed`` picks the hash).

    Example:
        >>> model, metrics = recstudio.run(model="Random", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    fit_mode = "closed_form"
    option_help: Dict[str, str] = {}

    def build_blocks(self) -> None:
        self.register_buffer("hash_seed", torch.tensor(int(self.config["seed"]), dtype=torch.long))

    def fit_closed_form(self, split) -> None:
        self.hash_seed.fill_(int(self.config["seed"]))

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        return None

    def score(self, batch, items: torch.Tensor) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        users = users[:, None].expand_as(items) if items.dim() == 2 else users
        return pair_uniform(users, items, int(self.hash_seed))
