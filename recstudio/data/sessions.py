"""Session data: anonymous sessions (no user id) and their session-wise splits.

A dataset is *session data* when its data config sets ``session_field`` (the session id field of the
``.inter``; atomic form ``session_id:token`` with no user id, or a DataFrame / CSV column given as
``session_field=`` to :func:`~recstudio.data.sources.from_dataframe`). The session takes the user's
role for sequence building (``user_field`` is set to it, so ``dataset.users`` are session ids and a
session's interactions are consecutive, in time order), but:

- **splits are session-wise** (:func:`session_split`): whole sessions go to train, valid or test, by
  ``split_order`` (``time``: the time of the session's last event, oldest to train; ``random``: seeded),
  in ``split_ratio`` shares of the sessions, or with ``session_test_days: d`` the sessions ending in the
  last ``d`` days are the test (and, with a 3-value ``split_ratio``, those ending in the ``d`` days
  before are the valid). Inside a held-out session the targets are, with ``split_mode: session``, every
  item after the first (each prefix -> its next item, the protocol of NARM / STAMP / SR-GNN; evaluate it
  with ``eval_targets: each``), with ``split_mode: loo`` the last ``loo_last_n`` items (the last item by
  default; ``eval_targets`` ``set`` or ``each``). The rest of the session is its evaluation history.
- **items never seen in a training session are dropped from the valid / test sessions** (targets and
  inputs alike), as is standard in session-based recommendation (SR-GNN's preprocessing); a held-out
  session left with fewer than two items is not evaluated. Those items stay in the catalogue (they are
  still ranked, with the untrained embeddings they have).
- **sessions are anonymous**: a model that learns per-user parameters (a user embedding table, a user
  tower, user nodes of a graph) would meet only unseen "users" at test time, so it refuses session data
  (:func:`check_session_model`, called when training starts) with an error naming the model and the table.

Example:
    >>> import pandas as pd
    >>> from recstudio.data import from_dataframe
    >>> df = pd.DataFrame({"s": [1, 1, 2, 2, 2, 3, 3, 4, 4, 4], "i": list("abbcaabxab"), "t": range(10)})
    >>> ds = from_dataframe(df, item="i", time="t", session_field="s", split_mode="session",
    ...                     split_order="time", split_ratio=[0.5, 0.25, 0.25])
    >>> split = ds.split()     # sessions 1, 2 train; 3 valid; 4 test ('x' unseen in training: dropped)
    >>> ds.decode_items(ds.items[split.test_history]).tolist(), ds.decode_items(ds.items[split.test]).tolist()
    (['a'], ['b'])
"""
from typing import Any, Dict, Optional

import numpy as np

from recstudio.utils.errors import ConfigError, DataError

DAY = 86400.0
#: split modes accepted on session data (both session-wise)
SESSION_SPLIT_MODES = ("session", "loo")


def is_session_data(dataset) -> bool:
    """Whether ``dataset`` holds anonymous sessions (its config sets ``session_field``)."""
    return getattr(dataset, "config", None) is not None and dataset.config.get("session_field") is not None


def _session_phase(dataset, cfg: Dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """0 / 1 / 2 = train / valid / test for each session id (index 0, the padding id, is train)."""
    offsets = dataset.user_offsets
    n = np.diff(offsets)
    sessions = np.flatnonzero(n > 0)
    ratio, order, days = cfg["split_ratio"], cfg["split_order"], cfg.get("session_test_days")
    phase = np.zeros(len(n), dtype=np.int8)
    if days is not None or order == "time":
        if dataset.time_field is None:
            what = f"session_test_days={days}" if days is not None else "split_order='time'"
            raise ConfigError(f"{what} orders sessions by their last event, but dataset {dataset.name!r} has no "
                              "time field; set time_field, or use split_order='random' without session_test_days.")
        end = np.zeros(len(n))
        end[sessions] = dataset.inter[dataset.time_field][offsets[sessions + 1] - 1]  # rows are time-sorted
    if days is not None:
        t_max = end[sessions].max()
        test_from = t_max - float(days) * DAY
        phase[sessions[end[sessions] > test_from]] = 2
        if len(ratio) == 3:
            phase[sessions[(end[sessions] > test_from - float(days) * DAY) & (end[sessions] <= test_from)]] = 1
        return phase
    ordered = sessions[np.argsort(end[sessions], kind="stable")] if order == "time" else rng.permutation(sessions)
    counts = np.floor(np.asarray(ratio, dtype=np.float64) * len(ordered)).astype(np.int64)
    counts[0] = len(ordered) - counts[1:].sum()
    bounds = np.cumsum(counts)
    for k in range(1, len(counts)):
        phase[ordered[bounds[k - 1]:bounds[k]]] = k if len(counts) == 3 else 2
    return phase


def session_split(dataset, cfg: Dict[str, Any], rng: Optional[np.random.Generator] = None):
    """The session-wise :class:`~recstudio.data.split.DataSplit` of session data (see the module docstring).

    Args:
        dataset: a session dataset (``session_field`` set).
        cfg: the resolved split keys (``split_mode`` ``'session'`` or ``'loo'``, ``split_ratio``,
            ``split_order``, ``seed``, ``loo_last_n``, ``session_test_days``).
        rng: the random generator of ``split_order='random'`` (default: seeded by ``cfg['seed']``).

    Returns:
        A split whose ``train`` rows are the training sessions' interactions, ``valid`` / ``test`` the
        targets of the held-out sessions and ``valid_history`` / ``test_history`` their other items.

    Raises:
        ConfigError: a split mode that is not session-wise, or a temporal order without a time field.
        DataError: no training session, or no held-out session with two items seen in training.
    """
    from recstudio.data.split import DataSplit
    mode = cfg["split_mode"]
    if mode not in SESSION_SPLIT_MODES:
        raise ConfigError(f"dataset {dataset.name!r} holds anonymous sessions (session_field="
                          f"{dataset.config['session_field']!r}), which are split session-wise: split_mode must "
                          f"be 'session' (every item after a held-out session's first is a target) or 'loo' (its "
                          f"last item is), got {mode!r}.")
    rng = rng if rng is not None else np.random.default_rng(cfg["seed"])
    sessions = dataset.users
    session_phase = _session_phase(dataset, cfg, rng)
    row_phase = session_phase[sessions]
    train = np.flatnonzero(row_phase == 0)
    if len(train) == 0:
        raise DataError(f"the session split of {dataset.name!r} left no training session; check split_ratio "
                        f"{cfg['split_ratio']} / session_test_days {cfg.get('session_test_days')}.")
    seen = np.zeros(dataset.num_items, dtype=bool)
    seen[dataset.items[train]] = True
    out = {}
    for k, name in ((1, "valid"), (2, "test")):
        rows = np.flatnonzero((row_phase == k) & seen[dataset.items])  # items unseen in training dropped
        if len(rows) == 0:
            out[name] = (rows, rows)
            continue
        s = sessions[rows]
        starts = np.r_[True, s[1:] != s[:-1]]
        group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        size = np.diff(np.r_[first, len(rows)])
        pos = np.arange(len(rows)) - first[group]
        keep = size[group] >= 2
        if mode == "session":
            is_target = pos >= 1
        else:  # loo: the last min(N, n - 1) items
            n_target = np.minimum(int(cfg.get("loo_last_n", 1)), size - 1)
            is_target = pos >= (size - n_target)[group]
        out[name] = (rows[keep & is_target], rows[keep & ~is_target])
    if len(out["test"][0]) == 0:
        raise DataError(f"the session split of {dataset.name!r} left no test session with two items seen in "
                        "training sessions; use more data, a larger test share or more session_test_days.")
    return DataSplit(dataset, train, out["valid"][0], out["test"][0], out["valid"][1], out["test"][1], dict(cfg))


# ---- models on session data -------------------------------------------------------------------------------
def _user_tables(model, num_users: int, num_items: int):
    """Names of the model's parameters and buffers with one row per user id (or per user + item node)."""
    rows = {num_users, num_users + num_items, num_users + num_items - 1}
    if num_users in (num_items, getattr(model, "num_tokens", num_items)):
        return []  # the row count cannot tell users from items
    named = list(model.named_parameters()) + list(model.named_buffers())
    return [n for n, t in named if t.dim() >= 1 and t.shape[0] in rows]


def check_session_model(model, split) -> None:
    """Raise unless ``model`` can be trained and evaluated on the split of session data (a no-op otherwise).

    Sessions are anonymous and the held-out sessions are never seen in training, so a model must encode a
    session from its items: one with per-user parameters (a table with a row per session id, e.g. a user
    embedding / user tower, user nodes of a graph) or that needs user features is refused. With
    ``split_mode: session`` (several targets per held-out session) ``eval_targets`` must be ``'each'``.

    Raises:
        ConfigError: naming the model and why.
    """
    ds = split.dataset
    if not is_session_data(ds):
        return
    name = getattr(model, "model_name", type(model).__name__)
    field = ds.config["session_field"]
    if "user_features" in getattr(model, "needs", ()):
        raise ConfigError(f"{name} needs user features, but {ds.name!r} holds anonymous sessions "
                          f"({field!r}) without users; use a session model (NARM, STAMP, SRGNN, GCSAN, RepeatNet, "
                          "GRU4Rec, SASRec, ...).")
    tables = _user_tables(model, ds.num_users, ds.num_items)
    if tables:
        raise ConfigError(f"{name} learns per-user parameters ({', '.join(tables[:3])}: one row per user id), but "
                          f"{ds.name!r} holds anonymous sessions ({field!r}) and its test sessions never occur in "
                          "training, so those rows would stay untrained. Use a model that encodes a session from "
                          "its items (NARM, STAMP, SRGNN, GCSAN, RepeatNet, GRU4Rec, SASRec, ...).")
    cfg = getattr(model, "config", {}) or {}
    mode = (split.config or {}).get("split_mode")
    if mode == "session" and cfg.get("eval_targets", "set") != "each" and getattr(model, "eval_task",
                                                                                  "ranking") == "ranking":
        raise ConfigError(f"split_mode='session' makes every item after a held-out session's first a target, each "
                          f"ranked from the items before it: set eval_targets='each' for {name} (or use "
                          "split_mode='loo' to evaluate the last item of each session only).")


__all__ = ["is_session_data", "session_split", "check_session_model", "SESSION_SPLIT_MODES"]
