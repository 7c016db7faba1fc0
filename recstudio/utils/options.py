"""Typed configuration options: a key's default, accepted types, choices and meaning.

Shared by the data, training and model configs, so that every layer validates keys the
same way: an unknown key is an error naming the closest valid key, and a value of the wrong
type is an error naming the expected type.
"""
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean

NUMBER = (int, float)
#: a number in exponent notation without a decimal point (``1e-5``), which YAML 1.1 (PyYAML) reads as a string
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

def canonical_choice(value: Any, choices: Tuple[Any, ...]) -> Any:
    """The spelling in ``choices`` of a text ``value`` given in any case; other values are returned
    unchanged. (Other names of a registered block, e.g. torch's ``StepLR`` for the ``step`` scheduler, are
    its registry's aliases, applied by the option's ``canonical`` hook.)

    Example:
        >>> canonical_choice("Step", ("step", "cosine")), canonical_choice("IVF", ("flat", "ivf"))
        ('step', 'ivf')
    """
    if not isinstance(value, str) or value in choices:
        return value
    folded = value.strip().lower()
    by_fold = {c.lower(): c for c in choices if isinstance(c, str)}
    if folded in by_fold:
        return by_fold[folded]
    return value


@dataclass(frozen=True)
class Option:
    """One configuration key.

    Args:
        default: the default value.
        types: accepted Python types (``(int, float)`` for numbers).
        help: what the key does (shown by ``run.py --help`` and in errors).
        choices: allowed values, or ``None``.
        nullable: whether ``None`` is allowed.
        canonical: maps a text value to its canonical spelling (e.g. a block registry's
            ``canonical``, so ``loss="BPR"`` is stored as ``'bpr'``); choices are matched in any
            case without it.

    Example:
        >>> Option(64, (int,), "embedding size").check("embed_dim", 32)
        32
    """

    default: Any
    types: Tuple[type, ...]
    help: str
    choices: Optional[Tuple[Any, ...]] = None
    nullable: bool = False
    canonical: Optional[Callable[[str], str]] = None

    def check(self, key: str, value: Any) -> Any:
        """Validate ``value`` for ``key``; returns it normalised (tuples -> lists, 5.0 -> 5 for ints, the text
        ``'1e-5'`` -> 1e-05 for numbers: PyYAML reads exponents without a decimal point as text)."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"config key {key!r} may not be null; {self.help}.")
        if (isinstance(value, str) and str not in self.types and (float in self.types or int in self.types)
                and EXPONENT_NUMBER.fullmatch(value.strip())):
            value = float(value)  # --weight_decay 1e-5, or `learning_rate: 1e-3` in a YAML file
        if self.types == NUMBER and isinstance(value, bool):
            raise ConfigError(f"config key {key!r} expects a number, got {value!r}.")
        if self.types == (int,) and isinstance(value, float) and value.is_integer():
            value = int(value)
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value = value if int in self.types else float(value)
        if not isinstance(value, self.types) or (self.types == (int,) and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in self.types)
            raise ConfigError(f"config key {key!r} expects {names}, got {type(value).__name__} {value!r}; "
                              f"{self.help}.")
        if self.choices is not None:
            value = canonical_choice(value, self.choices)
        if self.canonical is not None and isinstance(value, str):
            value = self.canonical(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"config key {key!r} must be one of {list(self.choices)} (any case), got {value!r}."
                              + did_you_mean(str(value), [str(c) for c in self.choices]))
        if isinstance(value, tuple):
            value = list(value)
        return value

    def fresh_default(self) -> Any:
        """The default, copied when it is mutable."""
        d = self.default
        return list(d) if isinstance(d, list) else dict(d) if isinstance(d, dict) else d


def option_from_default(value: Any, help: str) -> Option:
    """An :class:`Option` whose type is inferred from its default (used for model YAML keys)."""
    if value is None:
        return Option(None, (object,), help, nullable=True)
    if isinstance(value, bool):
        return Option(value, (bool,), help)
    if isinstance(value, (int, float)):
        return Option(value, NUMBER if isinstance(value, float) else (int,), help)
    if isinstance(value, (list, tuple)):
        return Option(list(value), (list, tuple), help)
    if isinstance(value, dict):
        return Option(value, (dict,), help)
    return Option(value, (str, os.PathLike) if isinstance(value, str) else (type(value),), help)


def resolve_options(options: Mapping[str, Option], *layers: Optional[Mapping[str, Any]],
                    where: str = "config") -> Dict[str, Any]:
    """Merge layers (later wins) over the options' defaults, validating every key.

    Raises:
        ConfigError: an unknown key (naming the closest ones) or a bad value.

    Example:
        >>> resolve_options({"lr": Option(0.1, NUMBER, "learning rate")}, {"lr": 0.01})
        {'lr': 0.01}
    """
    config = {k: o.fresh_default() for k, o in options.items()}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in options:
                raise ConfigError(f"unknown key {key!r} in {where}." + did_you_mean(key, options))
            config[key] = options[key].check(key, value)
    return config
