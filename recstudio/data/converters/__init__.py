"""Converters: original dataset files -> RecBole-style atomic tables.

A converter is a function ``convert(source: Path, **converter_args) -> {suffix: AtomicTable}``.
``source`` is the folder holding the raw files (the bundled folder, or the dataset's
``raw/`` folder with archives extracted below it; use :func:`find_file` to locate a file
at any depth). It returns tables keyed by atomic suffix (``inter``, ``user``, ``item``,
``net``, ...); the registry writes them.

Converters are registered by name (``@register_converter("movielens_dat")``). A registry
YAML may also name any importable function as ``"package.module:function"``.

Example:
    >>> from recstudio.data.converters import get_converter
    >>> tables = get_converter("movielens_100k")("datasets/ml-100k")   # doctest: +SKIP
    >>> len(tables["inter"])                                          # doctest: +SKIP
    100000
"""
import importlib
import inspect
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Dict, List

from recstudio.data.atomic import write_atomic_folder
from recstudio.data.converters._common import find_file
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

_CONVERTERS: Dict[str, Callable] = {}


def register_converter(name: str, overwrite: bool = False):
    """Decorator registering a converter function under ``name``.

    Example:
        >>> @register_converter("my_csv", overwrite=True)
        ... def convert_my_csv(source, **args):
        ...     ...
    """
    def deco(fn: Callable) -> Callable:
        if name in _CONVERTERS and _CONVERTERS[name] is not fn and not overwrite:
            raise ConfigError(f"a converter named {name!r} is already registered; pass overwrite=True.")
        _CONVERTERS[name] = fn
        return fn
    return deco


def list_converters() -> List[str]:
    """Names of the registered converters, sorted."""
    return sorted(_CONVERTERS)


def get_converter(name: str) -> Callable:
    """The converter function for a registered name or ``"package.module:function"``.

    Raises:
        ConfigError: an unknown name (with close names) or a path that does not import.
    """
    if name in _CONVERTERS:
        return _CONVERTERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"converter {name!r} cannot be imported ({e}); give 'package.module:function' "
                              "of an importable function.") from e
        if not callable(fn):
            raise ConfigError(f"converter {name!r} is not callable.")
        return fn
    raise ConfigError(f"unknown converter {name!r}." + did_you_mean(name, _CONVERTERS)
                      + f" Registered converters: {list_converters()}; or give 'package.module:function'.")


@register_converter("with_atomic_files")
def convert_with_atomic_files(source, base: str, files: Dict[str, str], base_args: Dict = None):
    """Run converter ``base`` and add ready RecBole atomic files from another source (e.g. a ``.kg`` and
    ``.link`` published for the same item ids): ``files`` maps an atomic suffix to a raw file name, found
    under ``source`` like any raw file (list the file in the spec's ``extra_files`` to download it).

    Example (a registry YAML):
        ``converter: with_atomic_files``,
        ``converter_args: {base: movielens_100k, files: {kg: ml-100k.kg, link: ml-100k.link}}``
    """
    from recstudio.data.atomic import SUFFIXES, read_atomic
    tables = get_converter(base)(Path(source), **(base_args or {}))
    for suffix, filename in files.items():
        if suffix not in SUFFIXES or suffix in tables:
            raise ConfigError(f"with_atomic_files: suffix {suffix!r} must be one of {list(SUFFIXES)} not already "
                              f"made by converter {base!r} (it makes {sorted(tables)}).")
        tables[suffix] = read_atomic(find_file(source, filename))
    return tables


# register the built-in converters
from recstudio.data.converters import amazon, gowalla, lastfm, movielens  # noqa: E402
from recstudio.data.converters import ciao_epinions  # noqa: E402
from recstudio.data.converters import frappe  # noqa: E402

_BUILTIN_MODULES = (amazon, gowalla, lastfm, movielens, ciao_epinions, frappe)



def convert_into(converter: str, converter_args: Dict, source, out, name: str, manifest: Dict,
                 is_complete: Callable[[], bool] = lambda: False) -> Path:
    """Run a converter and write its tables as ``out/<name>.<suffix>``, all or nothing.

    The tables and ``manifest.json`` (``manifest`` plus row counts) are written to a
    temporary folder beside ``out`` that is renamed to ``out`` at the end; a stale ``out``
    is replaced. On any error the temporary folder is removed and ``out`` is untouched.

    Args:
        converter: a converter name or ``'package.module:function'``.
        converter_args: its keyword arguments.
        source: the folder with the raw files.
        out: the atomic folder to create.
        name: the dataset name (file stem).
        manifest: provenance to record (converter, source digests, ...).
        is_complete: tells whether ``out`` is complete, when another process renamed first.

    Returns:
        ``out``.

    Raises:
        ConfigError: the converter is unknown or ``converter_args`` do not fit it.
        DataError: the converter found malformed or missing raw data.

    Example:
        >>> convert_into("movielens_100k", {}, "datasets/ml-100k", "/tmp/ml-100k/atomic", "ml-100k",
        ...              {"dataset": "ml-100k"})                         # doctest: +SKIP
    """
    fn = get_converter(converter)
    try:
        inspect.signature(fn).bind(Path(source), **converter_args)
    except TypeError as e:
        raise ConfigError(f"dataset {name!r}: converter_args {converter_args} do not fit converter "
                          f"{converter!r}: {e}.") from e
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tables = fn(Path(source), **converter_args)
        if not isinstance(tables, dict) or "inter" not in tables:
            raise DataError(f"converter {converter!r} returned no 'inter' table for {name!r}.")
        write_atomic_folder(tmp, name, tables)
        record = dict(manifest, rows={suffix: len(t) for suffix, t in tables.items()})
        (tmp / "manifest.json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():  # stale (older converter or arguments): move aside, then delete
            stale = out.parent / f".{out.name}-stale-{uuid.uuid4().hex[:8]}"
            os.replace(out, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            if not is_complete():  # otherwise another process finished the same work first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["register_converter", "get_converter", "list_converters", "find_file", "convert_into"]
