"""A model's YAML file beside its module: defaults, search space, conformance settings and results.

The base layer reads it (a model's defaults are part of its config); the registry re-exports it.
"""
import inspect
from pathlib import Path
from typing import Any, Dict

import yaml

from recstudio.utils.errors import ConfigError

#: sections a model's YAML may hold
YAML_SECTIONS = ("model", "train", "data", "search_space", "conformance", "results", "card")


def model_yaml(cls) -> Dict[str, Any]:
    """The YAML beside a model's file (``<module>.yaml``), one dict per section (missing ones empty):

    - ``model``: the model's own keys and defaults; ``train`` / ``data``: defaults of training / data keys;
    - ``search_space``: its NNI search space (``train.learning_rate: {_type: loguniform, _value: [...]}``);
    - ``conformance``: ``config`` (tiny settings for the conformance suite) and ``skip`` (checks it cannot
      pass, each explained in the model's docstring);
    - ``results``: its measured test metrics and protocol, for the generated ``docs/models.md``;
    - ``card``: how ``benchmarks/zoo.py`` measures its reproducibility card (``recbole_model``: RecBole's name
      of the model or null when RecBole lacks it; ``datasets``; ``seeds``; ``ours`` / ``recbole``: overrides).
    """
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
