"""Command-line helpers: ``--key value`` overrides parsed into typed config values."""
from typing import Any, Callable, Dict, List, Sequence

import yaml

from recstudio.utils.errors import ConfigError


def parse_value(text: str) -> Any:
    """Parse a command-line value as YAML: ``5`` -> 5, ``[0.8,0.1,0.1]`` -> list, ``null`` -> None.

    Example:
        >>> parse_value("0.5"), parse_value("true"), parse_value("ml-1m")
        (0.5, True, 'ml-1m')
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def choice_type(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse ``type=`` giving the canonical spelling of a choice written in any case
    (see :func:`recstudio.utils.options.canonical_choice`); argparse then checks ``choices``.

    Example:
        >>> choice_type(("exact", "ivf"))("IVF")
        'ivf'
    """
    from recstudio.utils.options import canonical_choice
    return lambda text: canonical_choice(text, tuple(choices))


def parse_overrides(args: List[str]) -> Dict[str, Any]:
    """Turn ``["--min_user_inter", "5", "--binarize=true"]`` into ``{"min_user_inter": 5, "binarize": True}``.

    Raises:
        ConfigError: a token that is not ``--key``, or a key without a value.
    """
    out: Dict[str, Any] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ConfigError(f"unexpected argument {tok!r}; options are written --key value.")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise ConfigError(f"option --{key} needs a value.")
            value = args[i + 1]
            i += 2
        out[key.replace("-", "_")] = parse_value(value)
    return out


def exit_process(code: int) -> None:
    """End the process with ``code`` without the interpreter's slow teardown.

    A training run imports torch, Lightning and their dependencies; finalising those modules at exit
    takes about a second of a ten-second ``python run.py``. The command line has nothing left to do
    by then: every file is written and closed (checkpoints and reports atomically). So this flushes
    the standard streams, runs the ``atexit`` handlers (logging's shutdown, multiprocessing's
    finalisers, ...) as a normal exit would, and calls ``os._exit`` — as mypy does for the same reason.
    Only the entry points call it (``run.py``, ``python -m recstudio``, the ``recstudio`` script), never
    library code.

    Args:
        code: the exit status.
    """
    import atexit
    import os
    import sys
    try:
        atexit._run_exitfuncs()  # noqa: SLF001 - the handlers a normal exit runs; CPython's own entry point
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):  # closed or replaced streams: nothing to flush
                pass
        os._exit(code)
