"""A small name -> object registry with case-insensitive lookup and close-name suggestions.

Used for models, losses, samplers, score functions and ANN indexes, so that every block can
be given by name (``loss="bpr"``) as well as by instance.
"""
import inspect
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

    def register(self, name: Optional[str] = None, aliases=(), **info) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``) with metadata.

        ``aliases`` are other names that look it up (e.g. ``NeuMF`` for ``NCF``); :meth:`names`
        lists only the main name.
        """
        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            for n in (key, *aliases):
                if n.lower() in self._names:
                    raise ConfigError(f"{self.kind} {n!r} is already registered.")
            self._items[key] = obj
            for n in (key, *aliases):
                self._names[n.lower()] = key
            self.info[key] = dict(info, aliases=tuple(aliases))
            return obj
        return deco

    def get(self, name: str) -> T:
        """The object registered as ``name`` (any case).

        Raises:
            ConfigError: unknown name; the message suggests close names and lists all.
        """
        key = self._names.get(str(name).lower())
        if key is None:
            raise ConfigError(f"unknown {self.kind} {name!r}." + did_you_mean(str(name), self._all_names())
                              + f" Available: {', '.join(sorted(self._items))}.")
        return self._items[key]

    def build(self, spec: Any, base: Optional[type] = None, context: Optional[Dict[str, Any]] = None,
              **kwargs) -> Any:
        """Instantiate ``spec`` (a registered name, a class, or an instance) with strict options.

        ``kwargs`` must all be constructor parameters (a misspelled option is an error naming the
        close ones); ``context`` holds values a block may need (``num_items``, ...) and is passed
        only to the parameters the constructor has and ``kwargs`` does not set.

        Example:
            >>> LOSSES.build("warp", context={"num_items": 100}, margin=0.5)   # doctest: +SKIP
        """
        if base is not None and isinstance(spec, base) or base is None and not isinstance(spec, (str, type)):
            if kwargs:
                raise ConfigError(f"{self.kind} options {sorted(kwargs)} were given with an already built "
                                  f"{type(spec).__name__}; set them when constructing it instead.")
            return spec
        cls = self.get(spec) if isinstance(spec, str) else spec
        if not isinstance(cls, type) or (base is not None and not issubclass(cls, base)):
            expected = f"a {base.__name__} subclass" if base is not None else "a class"
            raise ConfigError(f"a {self.kind} must be a registered name, {expected} or an instance; got {spec!r}.")
        params = inspect.signature(cls.__init__).parameters
        accepted = [p for p in params if p != "self" and params[p].kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if k not in accepted]
        if unknown and not takes_any:
            hints = "".join(did_you_mean(k, accepted) for k in unknown)
            raise ConfigError(f"{self.kind} {cls.__name__} has no option(s) {unknown}.{hints} "
                              f"Its options: {', '.join(accepted) or '(none)'}.")
        args = {k: v for k, v in (context or {}).items() if k in accepted and k not in kwargs}
        args.update(kwargs)
        missing = [p for p in accepted if params[p].default is inspect.Parameter.empty and p not in args]
        if missing:
            raise ConfigError(f"{self.kind} {cls.__name__} needs {missing}; pass them as options "
                              f"(or in the context, e.g. num_items from the dataset).")
        return cls(**args)

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name``."""
        self.get(name)
        return self._names[str(name).lower()]

    def _all_names(self) -> List[str]:
        """Main names and aliases, as registered (for suggestions)."""
        return list(self._items) + [a for key in self._items for a in self.info[key].get("aliases", ())]

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
