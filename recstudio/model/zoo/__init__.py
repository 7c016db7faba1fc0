"""The model zoo: one module per model under ``<category>/``, discovered (there is no import list).

:func:`discover` imports every module below this package once; each registers its model with
``@register_model``. A module that registers no model is an error caught by the test suite
(``tests/model/test_zoo.py``).
"""
import importlib
import pkgutil
from pathlib import Path
from typing import List

_DISCOVERED: List[str] = []


def zoo_modules() -> List[str]:
    """Dotted names of every model module of the zoo (packages themselves excluded), sorted."""
    names = []
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        if not info.ispkg and not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return sorted(names)


def import_named(name: str) -> bool:
    """Import only the module named after model ``name`` (``zoo/<category>/<name lower-cased>.py``, the
    one-model-per-file convention), so that ``get_model("BPR")`` does not import the whole zoo; ``False``
    when there is no such file (the caller then falls back to :func:`discover`)."""
    stem = name.lower().replace("-", "_")
    for path in sorted(Path(__path__[0]).glob(f"*/{stem}.py")):
        importlib.import_module(f"{__name__}.{path.parent.name}.{stem}")
        return True
    return False


def discover() -> List[str]:
    """Import every zoo module (once); returns their names."""
    if not _DISCOVERED:
        names = zoo_modules()
        for name in names:
            importlib.import_module(name)
        _DISCOVERED.extend(names)
    return list(_DISCOVERED)
