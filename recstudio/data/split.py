"""Train / valid / test splits over one id space.

Modes (``split_mode``), all seeded by ``seed``:

- ``user_entry``: each user's interactions are split by ``split_ratio`` (random or temporal
  order, ``split_order``). Counts follow RecBole: valid/test get ``floor(ratio * n)``, train
  the rest, and a split whose share rounds to zero still gets one interaction while train keeps
  at least two.
- ``entry``: all interactions split by ratio (random, or globally by time).
- ``user``: users are split by ratio into disjoint groups; a valid/test user's interactions are
  split into fold-in history (``fold_in_ratio``) and targets, as for MultiVAE's held-out users.
- ``loo``: leave-one-out by time: test = each user's last interaction, valid = the
  second-to-last (with a 3-value ``split_ratio``; none with 2 values), train = the rest;
  the ratio values themselves are not used. ``loo_last_n = N`` makes it leave-N-out: test = the
  last ``min(N, n - 1)`` interactions, valid = the ``min(N, n - 1 - test)`` before them, so every
  user keeps at least one train interaction (N = 1 is leave-one-out exactly).
- ``session`` [session-data]: session data only (``session_field`` set): whole sessions per phase, every
  item after a held-out session's first a target; on session data ``loo`` is session-wise too (the last
  item of a held-out session is the target). See :mod:`recstudio.data.sessions`.

Evaluation history (what a model sees and what is masked from its ranking): for ``valid`` the
train interactions, for ``test`` train + valid; in ``user`` mode the fold-in part of each
held-out user. Users without a target in a phase are left out of that phase's evaluation.
"""
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import scipy.sparse as sp

from recstudio.data.config import SPLIT_KEYS, resolve_data_config
from recstudio.data.dataset import RecDataset
from recstudio.utils.errors import ConfigError, DataError

PHASES = ("train", "valid", "test")


@dataclass
class DataSplit:
    """Interaction row indices of each phase of a :class:`RecDataset`.

    Args:
        dataset: the dataset the indices point into.
        train, valid, test: interaction rows (ascending, so user/time order is kept).
        valid_history, test_history: rows forming each evaluation phase's history.
        config: the split keys used.

    Example:
        >>> split = dataset.split(split_mode="loo")               # doctest: +SKIP
        >>> split.target_matrix("test").sum(axis=1).max()
        1.0
    """

    dataset: RecDataset
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_history: np.ndarray
    test_history: np.ndarray
    config: Dict[str, Any] = field(default_factory=dict)

    def rows(self, phase: str) -> np.ndarray:
        """Interaction rows of ``phase`` (the targets, for valid / test)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}.")
        return getattr(self, phase)

    def history_rows(self, phase: str) -> np.ndarray:
        """Rows a model may see (and that are masked) when evaluating ``phase``."""
        if phase == "train":
            return self.train
        return self.valid_history if phase == "valid" else self.test_history

    def matrix(self, phase: str, value: str = None) -> sp.csr_matrix:
        """``num_users x num_items`` CSR of a phase's interactions (values: ``value`` field or 1)."""
        return self.dataset.interaction_matrix(self.rows(phase), value)

    def history_matrix(self, phase: str) -> sp.csr_matrix:
        """CSR of the history of ``phase`` (binary)."""
        return self.dataset.interaction_matrix(self.history_rows(phase))

    def target_matrix(self, phase: str) -> sp.csr_matrix:
        """CSR of the targets of ``phase`` (binary)."""
        return self.dataset.interaction_matrix(self.rows(phase))

    def eval_users(self, phase: str) -> np.ndarray:
        """Inner ids of users with at least one target in ``phase`` (ascending)."""
        users = self.dataset.users[self.rows(phase)]  # rows ascend and interactions are user-sorted
        return users[np.r_[True, users[1:] != users[:-1]]] if len(users) else users

    def summary(self) -> Dict[str, int]:
        """Interactions and evaluated users per phase."""
        out = {f"{p}_interactions": len(self.rows(p)) for p in PHASES}
        out.update({f"{p}_users": len(self.eval_users(p)) for p in PHASES})
        return out


def ratio_counts(n: np.ndarray, ratios) -> np.ndarray:
    """Per-group counts for each phase (RecBole's rule); shape ``(len(n), len(ratios))``.

    Example:
        >>> ratio_counts(np.array([10, 3]), [0.8, 0.1, 0.1]).tolist()
        [[8, 1, 1], [1, 1, 1]]
    """
    n = np.asarray(n, dtype=np.int64)
    r = np.asarray(ratios, dtype=np.float64)
    cnt = np.floor(r[None, :] * n[:, None]).astype(np.int64)
    cnt[:, 0] = n - cnt[:, 1:].sum(axis=1)
    for k in range(len(r) - 1, 0, -1):
        share = r[k] * n
        bump = (cnt[:, 0] > 1) & (share > 0) & (share < 1)
        cnt[bump, k] += 1
        cnt[bump, 0] -= 1
    return cnt


def _phase_of_rank(rank: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """0/1/2 = train/valid/test for each row given its rank and its group's counts."""
    bounds = np.cumsum(counts, axis=1)
    phase = np.zeros(len(rank), dtype=np.int8)
    for k in range(1, counts.shape[1]):
        phase[rank >= bounds[:, k - 1]] = k
    if counts.shape[1] == 2:  # no valid phase: index 1 means test
        phase[phase == 1] = 2
    return phase


def _rank_within_user(ds: RecDataset, order: str, rng: np.random.Generator) -> np.ndarray:
    users, offsets = ds.users, ds.user_offsets
    pos = np.arange(len(users)) - offsets[users]
    if order == "time":
        return pos
    perm = np.argsort(users + rng.random(len(users)), kind="stable")
    rank = np.empty(len(users), dtype=np.int64)
    rank[perm] = np.arange(len(users)) - offsets[users[perm]]
    return rank


def split_dataset(dataset: RecDataset, **overrides) -> DataSplit:
    """Split a dataset into train / valid / test (see the module docstring for the modes).

    Args:
        dataset: a preprocessed dataset.
        **overrides: split keys (``split_mode``, ``split_ratio``, ``split_order``,
            ``fold_in_ratio``, ``seed``, ``loo_last_n``) overriding ``dataset.config``.

    Raises:
        ConfigError: a non-split key, or a temporal split on data without a time field.

    Example:
        >>> split = split_dataset(ds, split_mode="user_entry", split_ratio=[0.8, 0.1, 0.1])  # doctest: +SKIP
    """
    bad = [k for k in overrides if k not in SPLIT_KEYS]
    if bad:
        raise ConfigError(f"split_dataset takes only the split keys {list(SPLIT_KEYS)}, got {bad}.")
    base = {k: dataset.config[k] for k in SPLIT_KEYS if k in dataset.config}
    cfg = {k: resolve_data_config(base, overrides)[k] for k in SPLIT_KEYS}
    mode, ratio, order = cfg["split_mode"], cfg["split_ratio"], cfg["split_order"]
    if order == "time" and dataset.time_field is None and mode not in ("loo", "session"):
        raise ConfigError(f"split_order='time' needs a time field, and dataset {dataset.name!r} has none; "
                          "use split_order='random' or set time_field.")
    rng = np.random.default_rng(cfg["seed"])
    from recstudio.data.sessions import is_session_data, session_split  # [session-data]
    if is_session_data(dataset) or mode == "session":  # [session-data] whole sessions per phase
        if not is_session_data(dataset):
            raise ConfigError(f"split_mode='session' splits anonymous sessions, but dataset {dataset.name!r} has no "
                              "session_field; load it with session_field set to its session id field.")
        return session_split(dataset, cfg, rng)
    users, offsets = dataset.users, dataset.user_offsets
    n_per_user = np.diff(offsets)
    if mode == "user_entry":
        rank = _rank_within_user(dataset, order, rng)
        phase = _phase_of_rank(rank, ratio_counts(n_per_user, ratio)[users])
    elif mode == "entry":
        n = dataset.num_interactions
        if order == "time":
            ordering = np.argsort(dataset.inter[dataset.time_field], kind="stable")
        else:
            ordering = rng.permutation(n)
        rank = np.empty(n, dtype=np.int64)
        rank[ordering] = np.arange(n)
        phase = _phase_of_rank(rank, np.repeat(ratio_counts(np.array([n]), ratio), n, axis=0))
    elif mode == "loo":  # leave-N-out (loo_last_n = N): test = last min(N, n-1), valid = the min(N, rest-1) before
        pos = np.arange(len(users)) - offsets[users]
        from_end = n_per_user[users] - pos  # 1 = last
        last_n = int(cfg.get("loo_last_n", 1))
        n_test = np.minimum(last_n, n_per_user - 1)
        n_valid = np.minimum(last_n, np.maximum(n_per_user - 1 - n_test, 0)) if len(ratio) == 3 else 0 * n_test
        phase = np.zeros(len(users), dtype=np.int8)
        phase[from_end <= n_test[users]] = 2
        phase[(from_end > n_test[users]) & (from_end <= (n_test + n_valid)[users])] = 1
    elif mode == "user":
        return _user_split(dataset, cfg, rng)
    else:  # resolve_data_config already checks choices
        raise ConfigError(f"unknown split_mode {mode!r}")
    train = np.flatnonzero(phase == 0)
    valid = np.flatnonzero(phase == 1)
    test = np.flatnonzero(phase == 2)
    if len(train) == 0:
        raise DataError(f"the {mode} split left no training interaction; check split_ratio {ratio}.")
    return DataSplit(dataset, train, valid, test, train, np.flatnonzero(phase <= 1), cfg)


def _user_split(dataset: RecDataset, cfg: Dict[str, Any], rng: np.random.Generator) -> DataSplit:
    ratio = cfg["split_ratio"]
    users = dataset.users
    n_users = dataset.num_users - 1
    perm = rng.permutation(np.arange(1, n_users + 1))
    counts = ratio_counts(np.array([n_users]), ratio)[0]
    group = np.zeros(dataset.num_users, dtype=np.int8)
    bounds = np.cumsum(counts)
    for k in range(1, len(counts)):
        group[perm[bounds[k - 1]:bounds[k]]] = k if len(counts) == 3 else 2
    n_per_user = np.diff(dataset.user_offsets)
    rank = _rank_within_user(dataset, cfg["split_order"], rng)
    n_hist = np.minimum(np.floor(cfg["fold_in_ratio"] * n_per_user).astype(np.int64), n_per_user - 1)
    is_target = rank >= n_hist[users]
    g = group[users]
    train = np.flatnonzero(g == 0)
    if len(train) == 0:
        raise DataError(f"the user split left no training user; check split_ratio {ratio}.")
    return DataSplit(dataset, train,
                     np.flatnonzero((g == 1) & is_target), np.flatnonzero((g == 2) & is_target),
                     np.flatnonzero((g == 1) & ~is_target), np.flatnonzero((g == 2) & ~is_target), cfg)
