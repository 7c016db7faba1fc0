"""The model zoo: one module per model under ``<category>/``, discovered (there is no import list).

:func:`discover` imports every module below this package once; each registers its model with
``@register_model``. A module that registers no model is an error caught by the test suite
(``tests/model/test_zoo.py``).
"""
import importlib
import pkgutil
from typing import List

_DISCOVERED: List[str] = []


def zoo_modules() -> List[str]:
    """Dotted names of every model module of the zoo (packages themselves excluded), sorted."""
    names = []
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        if not info.ispkg and not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return sorted(names)


def discover() -> List[str]:
    """Import every zoo module (once); returns their names."""
    if not _DISCOVERED:
        names = zoo_modules()
        for name in names:
            importlib.import_module(name)
        _DISCOVERED.extend(names)
    return list(_DISCOVERED)
