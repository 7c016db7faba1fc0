"""The model registry: every zoo model with its category, base class, dataset type and paper.

Example:
    >>> import recstudio
    >>> [m["name"] for m in recstudio.list_models()][:2]          # doctest: +SKIP
    ['BPR', 'EASE']
"""
from pathlib import Path
from typing import Any, Dict, List

import yaml

from recstudio.utils.errors import ConfigError
from recstudio.utils.registry import Registry

MODELS: Registry = Registry("model")


def register_model(name: str, category: str, paper: str, aliases=(), **info):
    """Class decorator adding a model to :data:`MODELS`.

    The base class and dataset type are read from the class; ``info`` may carry
    conformance-test exceptions (e.g. ``conformance={"gradients": False}`` for closed-form models).

    Example:
        >>> @register_model("BPR", category="general", paper="Rendle et al., UAI 2009")  # doctest: +SKIP
        ... class BPR(TwoTowerRecommender): ...
    """
    def deco(cls):
        cls.model_name = name
        cls.category = category
        cls.paper = paper
        return MODELS.register(name, aliases=aliases, category=category, paper=paper, **info)(cls)
    return deco


def _ensure_zoo() -> None:
    import recstudio.model.zoo  # noqa: F401  (importing registers every model)


def get_model(name: str):
    """The model class registered as ``name`` (case-insensitive; close names are suggested)."""
    _ensure_zoo()
    return MODELS.get(name)


def list_models() -> List[Dict[str, Any]]:
    """One dict per registered model: name, category, base, dataset_type, paper."""
    _ensure_zoo()
    out = []
    for name in MODELS.names():
        cls = MODELS.get(name)
        out.append({"name": name, "category": cls.category, "base": cls.base_name,
                    "dataset_type": cls.dataset_type, "paper": cls.paper})
    return out


def model_yaml(cls) -> Dict[str, Any]:
    """The defaults YAML beside a model's file (``<module>.yaml``): ``{'model': {...}, 'train': {...},
    'data': {...}}``; missing sections are empty."""
    import inspect
    path = Path(inspect.getfile(cls)).with_suffix(".yaml")
    if not path.is_file():
        raise ConfigError(f"model {cls.__name__} has no defaults file {path}.")
    doc = yaml.safe_load(path.read_text()) or {}
    bad = [k for k in doc if k not in ("model", "train", "data")]
    if bad:
        raise ConfigError(f"{path}: unknown sections {bad}; use model, train and data.")
    return {s: dict(doc.get(s) or {}) for s in ("model", "train", "data")}
