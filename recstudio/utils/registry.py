"""A small name -> object registry with case-insensitive lookup and close-name suggestions.

Used for models, losses, samplers, score functions and ANN indexes, so that every block can
be given by name (``loss="bpr"``) as well as by instance.
"""
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, TypeVar

from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered objects of one kind (e.g. ``"loss"``), looked up case-insensitively.

    Args:
        kind: what the registry holds, used in error messages.

    Example:
        >>> losses = Registry("loss")
        >>> @losses.register("bpr", summary="Bayesian personalised ranking")
        ... class BPRLoss: ...
        >>> losses.get("BPR") is BPRLoss
        True
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._names: Dict[str, str] = {}
        self.info: Dict[str, Dict[str, Any]] = {}

    def register(self, name: Optional[str] = None, **info) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``) with metadata."""
        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key.lower() in self._names:
                raise ConfigError(f"{self.kind} {key!r} is already registered.")
            self._items[key] = obj
            self._names[key.lower()] = key
            self.info[key] = dict(info)
            return obj
        return deco

    def get(self, name: str) -> T:
        """The object registered as ``name`` (any case).

        Raises:
            ConfigError: unknown name; the message suggests close names and lists all.
        """
        key = self._names.get(str(name).lower())
        if key is None:
            raise ConfigError(f"unknown {self.kind} {name!r}." + did_you_mean(str(name), self._items)
                              + f" Available: {', '.join(sorted(self._items))}.")
        return self._items[key]

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name``."""
        self.get(name)
        return self._names[str(name).lower()]

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
