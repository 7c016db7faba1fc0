"""Close-name suggestions for error messages."""
import difflib
from typing import Iterable, List


def closest(name: str, choices: Iterable[str], n: int = 3) -> List[str]:
    """Return up to ``n`` choices closest to ``name`` (case-insensitive).

    Example:
        >>> closest("ml-100", ["ml-100k", "ml-1m", "gowalla"])
        ['ml-100k', 'ml-1m']
    """
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A sentence fragment like ``" Did you mean 'ml-100k'?"``, or ``""``."""
    hits = closest(name, choices)
    if not hits:
        return ""
    return " Did you mean " + " or ".join(repr(h) for h in hits) + "?"
