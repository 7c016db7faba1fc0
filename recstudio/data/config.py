"""The data configuration: every key the data layer understands, its default and meaning.

Values come, in increasing priority, from :data:`DATA_DEFAULTS`, the dataset's registry
YAML (its ``config`` section), and the caller's overrides. An unknown key is an error
naming the closest valid key; a value of the wrong type is an error too.
"""
import os
from typing import Any, Dict, Mapping, Optional

from recstudio.utils.errors import ConfigError
from recstudio.utils.options import NUMBER as _NUM
from recstudio.utils.options import Option, resolve_options


#: every data-layer key. ``preprocess`` keys enter the processed-cache key; split keys do not.
DATA_OPTIONS: Dict[str, Option] = {
    # where
    "data_dir": Option(None, (str, os.PathLike), "cache folder for downloads and processed data "
                       "(default: $RECSTUDIO_DATA_DIR, else ~/.cache/recstudio)", nullable=True),
    "cache": Option(True, (bool,), "read and write the processed-data cache"),
    # reading
    "field_separator": Option("\t", (str,), "column separator of atomic files"),
    "seq_separator": Option(" ", (str,), "separator inside token_seq / float_seq cells"),
    "encoding": Option("utf-8", (str,), "text encoding of the atomic files"),
    "load_fields": Option(None, (dict,), "suffix -> list of fields to load (e.g. {'item': ['item_id', 'genre']}); "
                          "null loads every field", nullable=True),
    # field roles
    "user_field": Option("user_id", (str,), "the user id field of .inter / .user"),
    # [session-data] anonymous sessions: the session field takes the user role (see recstudio/data/sessions.py)
    "session_field": Option(None, (str,), "session id field of .inter for session data (anonymous sessions, no "
                            "user id): it takes the user role (user_field is set to it), splits are session-wise "
                            "and models that learn per-user parameters refuse the data; null: user data",
                            nullable=True),
    "item_field": Option("item_id", (str,), "the item id field of .inter / .item"),
    "rating_field": Option("rating", (str,), "the rating field (null when the data has none)", nullable=True),
    "time_field": Option("timestamp", (str,), "the time field (null when the data has none)", nullable=True),
    "time_format": Option(None, (str,), "strptime format for a text time field; null reads numbers as "
                          "seconds and text as ISO-8601", nullable=True),
    # preprocessing
    "rating_threshold": Option(None, _NUM, "drop interactions whose rating is below this value", nullable=True),
    "binarize": Option(False, (bool,), "after the threshold, set every kept rating to 1.0 (implicit feedback)"),
    "dedup": Option("first", (str,), "repeated (user, item) pairs: keep the 'first' or 'last' (by time, else "
                    "file order) or 'all'", choices=("first", "last", "all")),
    "min_user_inter": Option(0, (int,), "k-core: drop users with fewer interactions (iterated with items)"),
    "min_item_inter": Option(0, (int,), "k-core: drop items with fewer interactions (iterated with users)"),
    "float_scaling": Option({}, (dict,), "float field -> 'standard' | 'minmax' | 'log' (log1p)"),
    "discretize": Option({}, (dict,), "float field -> number of equal-frequency bins; the field becomes a token"),
    # splitting
    "split_mode": Option("user_entry", (str,), "'user_entry': each user's interactions by ratio; 'entry': all "
                         "interactions by ratio; 'user': disjoint users; 'loo': leave-one-out (last = test, "
                         "second-to-last = valid, by time); 'session' (session data): whole sessions to train / "
                         "valid / test, each held-out session's items after its first are the targets (on session "
                         "data 'loo' is session-wise too: the last item of each held-out session is the target)",
                         choices=("user_entry", "entry", "user", "loo", "session")),  # [session-data] 'session'
    "split_ratio": Option([0.8, 0.1, 0.1], (list, tuple), "train / valid / test shares (two values: no valid)"),
    "split_order": Option("random", (str,), "order within the split: 'random' (seeded) or 'time'",
                          choices=("random", "time")),
    "fold_in_ratio": Option(0.8, _NUM, "split_mode 'user': share of a held-out user's interactions given as "
                            "input history; the rest are the targets"),
    "seed": Option(2022, (int,), "seed of every random choice in splitting and sampling"),
    # seq-eval: leave-N-out (additive)
    "loo_last_n": Option(1, (int,), "split_mode 'loo': each user's last N interactions are the test targets and "
                         "the N before them the valid targets (3-value split_ratio); 1 = leave-one-out. A user "
                         "keeps at least one train interaction (shorter users get fewer targets)"),
    # [session-data] session-wise splits (split_mode 'session', or 'loo' on session data)
    "session_test_days": Option(None, _NUM, "session data: the test sessions are those ending in the last this many "
                                "days (by their last event), the valid ones (3-value split_ratio) those ending in the "
                                "same span before; null: split_ratio shares of the sessions in split_order",
                                nullable=True),
}

#: keys that change the processed arrays (and so the cache key)
PREPROCESS_KEYS = (
    "field_separator", "seq_separator", "encoding", "load_fields", "user_field", "item_field", "rating_field",
    "time_field", "time_format", "rating_threshold", "binarize", "dedup", "min_user_inter", "min_item_inter",
    "float_scaling", "discretize", "session_field",
)
SPLIT_KEYS = ("split_mode", "split_ratio", "split_order", "fold_in_ratio", "seed", "loo_last_n",
              "session_test_days")  # [session-data] session_test_days


def resolve_data_config(*layers: Optional[Mapping[str, Any]], where: str = "data config") -> Dict[str, Any]:
    """Merge config layers (later wins) over the defaults and validate every key.

    Args:
        *layers: dicts of overrides, lowest priority first (e.g. dataset YAML, user kwargs).
        where: a label for error messages.

    Returns:
        A complete dict with every key of :data:`DATA_OPTIONS`.

    Raises:
        ConfigError: an unknown key (the message names the closest keys) or a bad value.

    Example:
        >>> resolve_data_config({"min_user_inter": 5})["min_user_inter"]
        5
    """
    config = resolve_options(DATA_OPTIONS, *layers, where=where)
    if config.get("session_field") is not None:  # [session-data] the session takes the user role
        config["user_field"] = config["session_field"]
    check_data_config(config)
    return config


def check_data_config(config: Mapping[str, Any]) -> None:
    """Cross-key checks of a data config (ratios, bins, scaling names)."""
    ratio = config["split_ratio"]
    if len(ratio) not in (2, 3) or any(not isinstance(r, _NUM) or r < 0 for r in ratio) \
            or abs(sum(ratio) - 1.0) > 1e-6:
        raise ConfigError(f"split_ratio must be 2 or 3 non-negative numbers summing to 1, got {ratio}.")
    if not 0.0 < config["fold_in_ratio"] < 1.0:
        raise ConfigError(f"fold_in_ratio must be in (0, 1), got {config['fold_in_ratio']}.")
    if config.get("loo_last_n", 1) < 1:
        raise ConfigError(f"loo_last_n must be an integer >= 1 (targets per user and phase), got {config['loo_last_n']}.")
    # [session-data]
    days = config.get("session_test_days")
    if days is not None and not days > 0:
        raise ConfigError(f"session_test_days must be a positive number of days or null, got {days}.")
    for key in ("min_user_inter", "min_item_inter"):
        if config[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {config[key]}.")
    for field, how in config["float_scaling"].items():
        if how not in ("standard", "minmax", "log"):
            raise ConfigError(f"float_scaling[{field!r}] must be 'standard', 'minmax' or 'log', got {how!r}.")
    for field, bins in config["discretize"].items():
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
            raise ConfigError(f"discretize[{field!r}] must be an integer number of bins >= 2, got {bins!r}.")


def preprocess_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The part of a resolved config that determines the processed arrays."""
    return {k: config[k] for k in PREPROCESS_KEYS}
