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
    from recstudio.model.zoo import discover
    discover()


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


#: sections a model's YAML may hold
YAML_SECTIONS = ("model", "train", "data", "search_space", "conformance", "results")


def model_yaml(cls) -> Dict[str, Any]:
    """The YAML beside a model's file (``<module>.yaml``), one dict per section (missing ones empty):

    - ``model``: the model's own keys and defaults; ``train`` / ``data``: defaults of training / data keys;
    - ``search_space``: its NNI search space (``train.learning_rate: {_type: loguniform, _value: [...]}``);
    - ``conformance``: ``config`` (tiny settings for the conformance suite) and ``skip`` (checks it cannot
      pass, each explained in the model's docstring);
    - ``results``: its measured test metrics and protocol, for the generated ``docs/models.md``.
    """
    import inspect
    path = Path(inspect.getfile(cls)).with_suffix(".yaml")
    if not path.is_file():
        raise ConfigError(f"model {cls.__name__} has no defaults file {path}.")
    return _read_yaml(str(path))


def _read_yaml(path: str) -> Dict[str, Any]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    bad = [k for k in doc if k not in YAML_SECTIONS]
    if bad:
        raise ConfigError(f"{path}: unknown sections {bad}; use {', '.join(YAML_SECTIONS)}.")
    return {s: dict(doc.get(s) or {}) for s in YAML_SECTIONS}


def conformance_settings(cls) -> Dict[str, Any]:
    """``{'config': {...}, 'skip': set()}`` for the conformance suite: the YAML's ``conformance`` section
    merged with the registry entry's ``conformance`` info."""
    doc = model_yaml(cls)["conformance"]
    info = MODELS.info.get(cls.model_name, {}).get("conformance", {})
    return {"config": {**doc.get("config", {}), **info.get("config", {})},
            "skip": set(doc.get("skip", ())) | set(info.get("skip", ()))}
