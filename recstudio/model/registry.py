"""The model registry: every zoo model with its category, base class, dataset type and paper.

Example:
    >>> import recstudio
    >>> [m["name"] for m in recstudio.list_models()][:2]          # doctest: +SKIP
    ['BPR', 'EASE']
"""
from typing import Any, Dict, List

from recstudio.model.base.defaults import YAML_SECTIONS, model_yaml  # noqa: F401 (re-exported)
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
    from recstudio.model.zoo import discover
    discover()


def get_model(name: str):
    """The model class registered as ``name`` (case-insensitive; close names are suggested).

    Only the model's own module is imported when it follows the file-naming convention
    (``zoo/<category>/<name>.py``); otherwise, or for an unknown name, the whole zoo is discovered."""
    if isinstance(name, str) and name not in MODELS:
        from recstudio.model.zoo import import_named
        if not (import_named(name) and name in MODELS):
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


def conformance_settings(cls) -> Dict[str, Any]:
    """``{'config': {...}, 'skip': set()}`` for the conformance suite: the YAML's ``conformance`` section
    merged with the registry entry's ``conformance`` info."""
    doc = model_yaml(cls)["conformance"]
    info = MODELS.info.get(cls.model_name, {}).get("conformance", {})
    return {"config": {**doc.get("config", {}), **info.get("config", {})},
            "skip": set(doc.get("skip", ())) | set(info.get("skip", ()))}
