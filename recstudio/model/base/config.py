"""Resolving a model's full configuration from its layers.

Priority, lowest first: global defaults (data, training and the model's own keys) <- the
dataset's registry YAML <- the model's YAML (``<model>.yaml`` beside its file) <- a config
file <- keyword arguments / command-line options. Keys are one flat namespace; an unknown key
is an error naming the closest valid keys.
"""
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

from torch import nn

from recstudio.data.config import DATA_OPTIONS, check_data_config
from recstudio.model.base.defaults import model_yaml
from recstudio.model.base.options import TRAIN_OPTIONS
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import Option, option_from_default, resolve_options


def model_options(cls) -> Dict[str, Option]:
    """The model's own keys: defaults from its YAML ``model`` section, help from ``cls.option_help``."""
    section = model_yaml(cls)["model"]
    family = dict(getattr(cls, "family_options", {}) or {})  # keys a family base gives each of its models
    missing = [k for k in section if k not in cls.option_help and k not in family]
    if missing:
        raise ConfigError(f"{cls.__name__}.option_help lacks the meaning of {missing}.")
    clash = [k for k in section if k in DATA_OPTIONS or k in TRAIN_OPTIONS]
    if clash:
        raise ConfigError(f"{cls.__name__}'s model keys {clash} clash with data/training keys; put them in the "
                          "YAML's data or train section instead.")
    # a family key is typed by the family's Option (the model's YAML may set its default), the others by their default
    options = {k: replace(family[k], default=family[k].check(k, v), help=cls.option_help.get(k, family[k].help))
               if k in family
               else option_from_default(v, cls.option_help[k]) for k, v in section.items()}
    options.update({k: o for k, o in family.items() if k not in options})
    for key in BLOCK_KEYS:  # blocks may also be given as instances; names are stored in their registered spelling
        if key in options:
            o = options[key]
            options[key] = Option(o.default, (str, nn.Module), o.help + "; a name or an instance", nullable=True,
                                  canonical=_registered_spelling(key))
    return options


def portable_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The config with block instances replaced by their registered names (for YAML and checkpoints;
    an instance's constructor options are not kept)."""
    from recstudio.model.loss import LOSSES
    from recstudio.model.sampler import SAMPLERS
    from recstudio.model.scorer import SCORERS
    out = dict(config)
    for key, registry in (("loss", LOSSES), ("sampler", SAMPLERS), ("score_func", SCORERS)):
        value = out.get(key)
        if isinstance(value, nn.Module):
            names = [n for n in registry.names() if registry.get(n) is type(value)]
            if not names:
                raise ConfigError(f"cannot save a model whose {key} is an unregistered {type(value).__name__}; "
                                  f"register it (register_{key}) or pass a registered name.")
            out[key] = names[0]
    return out


def _registered_spelling(key: str):
    """``name -> registered spelling`` for block key ``key`` (an unknown name is returned as given, so the
    block's own lookup reports it with suggestions)."""
    def canonical(name: str) -> str:
        from recstudio.model.loss import LOSSES
        from recstudio.model.sampler import SAMPLERS
        from recstudio.model.scorer import SCORERS
        registry = {"loss": LOSSES, "sampler": SAMPLERS, "score_func": SCORERS}[key]
        return registry.canonical(name) if name in registry else name
    return canonical


#: model keys whose value is a block: a registered name or an instance
BLOCK_KEYS = ("loss", "sampler", "score_func")


def all_options(cls) -> Dict[str, Option]:
    """Every key a model accepts: data, training and the model's own."""
    return {**DATA_OPTIONS, **TRAIN_OPTIONS, **model_options(cls)}


def read_config_file(path) -> Dict[str, Any]:
    """A YAML config file as a flat dict (sections ``data`` / ``train`` / ``model`` are flattened)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values.")
    flat = {}
    for k, v in doc.items():
        if k in ("data", "train", "model") and isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def resolve_config(cls, dataset_config: Optional[Mapping[str, Any]] = None,
                   config_file=None, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The complete flat config of model class ``cls``.

    Args:
        cls: a registered model class.
        dataset_config: the dataset YAML's ``config`` section (data keys).
        config_file: a YAML file path, or ``None``.
        overrides: keyword arguments / command-line options.

    Raises:
        ConfigError: unknown keys (with suggestions) and bad values.
    """
    options = all_options(cls)
    doc = model_yaml(cls)
    layers = [dataset_config or {}, doc["data"], doc["train"], doc["model"],
              read_config_file(config_file) if config_file else {}, overrides or {}]
    config = resolve_options(options, *layers, where=f"the config of {cls.__name__}")
    check_data_config(config)
    return config


def data_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The data-layer keys of a flat config."""
    return {k: config[k] for k in DATA_OPTIONS if k in config}
