"""Static negative items: drawn for whole arrays of users at once, never a known positive.

``uniform`` draws are *exact*: the ``r``-th item a user has not interacted with is found by
one ``searchsorted`` over the sorted positives, so there is no rejection loop at all
(uniform over the user's non-positives, however few there are). ``popularity`` draws take
items with probability ``count^alpha`` and resample the collisions with the user's positives,
vectorised, until none remain (an exact per-user draw finishes the rare stragglers).
"""
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
import torch

from recstudio.utils.errors import ConfigError, DataError

MODES = ("uniform", "popularity")


class NegativeSampler:
    """Draws negatives for users, excluding each user's items in ``exclude``.

    Args:
        exclude: ``num_users x num_items`` sparse matrix of the positives to avoid.
        mode: ``'uniform'`` over items ``1..num_items-1`` or ``'popularity'``.
        popularity: per-item counts (length ``num_items``; entry 0 ignored) for ``'popularity'``.
        alpha: exponent of the popularity (``0`` = uniform); items with count 0 are never drawn.
        describe_user: maps an inner user id to a readable name for error messages.

    Example:
        >>> m = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 1, 0, 1]]))
        >>> s = NegativeSampler(m)
        >>> set(s.draw(np.array([1] * 50), 1, torch.Generator().manual_seed(0)).ravel().tolist())
        {2}
    """

    def __init__(self, exclude: sp.spmatrix, mode: str = "uniform", popularity: Optional[np.ndarray] = None,
                 alpha: float = 1.0, describe_user: Optional[Callable[[int], str]] = None):
        if mode not in MODES:
            raise ConfigError(f"neg_sampling must be one of {MODES}, got {mode!r}.")
        m = sp.csr_matrix(exclude, dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        self.mode = mode
        self.num_users, self.num_items = m.shape
        self.describe_user = describe_user or (lambda u: f"inner id {u}")
        self.indptr = torch.from_numpy(m.indptr.astype(np.int64))
        pos = m.indices.astype(np.int64)
        if (pos == 0).any():
            raise DataError("the positives to exclude contain item 0 (padding); expected inner ids 1..n.")
        deg = np.diff(m.indptr)
        row = np.repeat(np.arange(self.num_users, dtype=np.int64), deg)
        n = self.num_items
        self.pos_keys = torch.from_numpy(row * n + pos)  # sorted: by user, then item
        if mode == "uniform":
            self.allowed = torch.from_numpy((n - 1) - deg.astype(np.int64))  # non-positive items per user
            # for positive j (0-based within its user): how many non-positives lie below it
            rank = np.arange(len(pos)) - np.repeat(m.indptr[:-1].astype(np.int64), deg)
            self.gap_keys = torch.from_numpy(row * n + (pos - 1 - rank))
        else:
            if popularity is None or len(popularity) != n:
                raise ConfigError(f"popularity sampling needs per-item counts of length {n}.")
            w = np.asarray(popularity, dtype=np.float64).clip(min=0) ** float(alpha)
            w[np.asarray(popularity) <= 0] = 0.0
            w[0] = 0.0
            self.total = w.sum()
            if self.total <= 0:
                raise DataError("popularity sampling: no item has a positive count.")
            self.weights = w
            cdf = np.cumsum(w) / self.total
            cdf[np.flatnonzero(w)[-1]:] = 2.0  # rounding never pushes a draw past the last drawable item
            self.cdf = torch.from_numpy(cdf)
            self.allowed_mass = torch.from_numpy(1.0 - (m.astype(bool).astype(np.float64) @ (w / self.total)))

    def _check(self, users: torch.Tensor) -> None:
        if self.mode == "uniform":
            bad = users[self.allowed[users] <= 0]
            what = f"has interacted with all {self.num_items - 1} items"
        else:
            bad = users[self.allowed_mass[users] <= 1e-9]
            what = "has interacted with every item that has a non-zero popularity"
        if len(bad):
            u = int(bad[0])
            raise DataError(f"cannot draw a negative item for user {self.describe_user(u)}: the user {what} "
                            f"({len(torch.unique(bad))} such users in these rows). Filter such users out, use "
                            "neg_sampling='uniform', or set num_neg=0.")

    def draw(self, users: np.ndarray, num_neg: int, generator: torch.Generator) -> torch.Tensor:
        """``[len(users), num_neg]`` int64 negatives (independent draws, with replacement per row)."""
        u = torch.as_tensor(np.asarray(users), dtype=torch.long)
        if num_neg < 1 or len(u) == 0:
            return torch.zeros(len(u), max(num_neg, 0), dtype=torch.long)
        self._check(u)
        uu = u.repeat_interleave(num_neg)
        if self.mode == "uniform":
            out = self._uniform(uu, generator)
        else:
            out = self._popularity(uu, generator)
        return out.view(len(u), num_neg)

    def _uniform(self, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        r = (torch.rand(len(u), generator=g, dtype=torch.float64) * self.allowed[u]).long()
        r = torch.minimum(r, self.allowed[u] - 1)
        below = torch.searchsorted(self.gap_keys, u * self.num_items + r, right=True) - self.indptr[u]
        return r + 1 + below

    def is_positive(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each ``(u, item)`` pair is in the excluded matrix."""
        keys = u * self.num_items + items
        if len(self.pos_keys) == 0:
            return torch.zeros(len(keys), dtype=torch.bool)
        at = torch.searchsorted(self.pos_keys, keys).clamp_(max=len(self.pos_keys) - 1)
        return self.pos_keys[at] == keys

    def _popularity(self, u: torch.Tensor, g: torch.Generator, max_rounds: int = 64) -> torch.Tensor:
        out = torch.searchsorted(self.cdf, torch.rand(len(u), generator=g, dtype=torch.float64), right=True)
        todo = torch.nonzero(self.is_positive(u, out)).view(-1)
        for _ in range(max_rounds):
            if len(todo) == 0:
                return out
            fresh = torch.searchsorted(self.cdf, torch.rand(len(todo), generator=g, dtype=torch.float64), right=True)
            out[todo] = fresh
            todo = todo[self.is_positive(u[todo], fresh)]
        # stragglers: users whose non-positives carry very little mass; draw exactly per user
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=g))
        rng = np.random.default_rng(seed)
        for user in torch.unique(u[todo]).tolist():
            rows = todo[u[todo] == user]
            w = self.weights.copy()
            pos = (self.pos_keys[self.indptr[user]:self.indptr[user + 1]] - user * self.num_items).numpy()
            w[pos] = 0.0
            out[rows] = torch.from_numpy(rng.choice(self.num_items, size=len(rows), p=w / w.sum()))
        return out
