"""Mapping NNI trial parameters and search spaces onto RecStudio's flat config keys.

NNI hands a trial a dict such as ``{"train.learning_rate": 0.003, "model.embed_dim": 128}``.
A key is either a plain config key (``learning_rate``) or ``<section>.<key>`` with the section
being ``data``, ``train`` or ``model`` (the sections of a model YAML / ``--config`` file). Every
key and value is validated like a command-line override: an unknown key is a
:class:`~recstudio.utils.errors.ConfigError` naming the closest keys.
"""
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean

#: folder of the bundled search spaces, one ``<model name in lower case>.yaml`` per registered model

#: keys a trial sets itself: a search space may not tune them
RESERVED_KEYS = ("mode", "quiet")

#: NNI search-space types that sample numbers, and those that can sample integers
NUMERIC_TYPES = ("randint", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal",
                 "qlognormal")
INTEGER_TYPES = ("randint", "quniform", "qloguniform", "qnormal", "qlognormal")


def section_options(cls) -> Dict[str, Dict[str, Any]]:
    """The options of model class ``cls`` by config section: ``{"data": ..., "train": ..., "model": ...}``."""
    from recstudio.data.config import DATA_OPTIONS
    from recstudio.model.base.config import model_options
    from recstudio.model.base.options import TRAIN_OPTIONS
    return {"data": DATA_OPTIONS, "train": TRAIN_OPTIONS, "model": model_options(cls)}


def flat_key(cls, name: str, where: str = "the trial parameters") -> str:
    """The flat config key that parameter ``name`` of model class ``cls`` stands for.

    Args:
        cls: a registered model class.
        name: ``"learning_rate"``, or a sectioned name such as ``"train.learning_rate"``.
        where: what holds the name (for error messages), e.g. a search-space file.

    Raises:
        ConfigError: an unknown section or key (with the closest valid names), a key given
            under the wrong section, or a reserved key (``mode``, ``quiet``).

    Example:
        >>> from recstudio.model.registry import get_model
        >>> flat_key(get_model("BPR"), "model.embed_dim")
        'embed_dim'
    """
    sections = section_options(cls)
    everything = {k for opts in sections.values() for k in opts}
    section, dot, key = name.rpartition(".")
    if not dot:
        if key not in everything:
            raise ConfigError(f"unknown config key {name!r} in {where} for {cls.model_name}."
                              + did_you_mean(name, everything)
                              + f" See python run.py -m {cls.model_name} --help.")
    elif section not in sections:
        raise ConfigError(f"{name!r} in {where}: unknown section {section!r}; write a plain config key or "
                          f"one of {[s + '.<key>' for s in sections]}." + did_you_mean(section, sections))
    elif key not in sections[section]:
        owner = [s for s, opts in sections.items() if key in opts]
        if owner:
            raise ConfigError(f"{name!r} in {where}: {key!r} is a {owner[0]} key of {cls.model_name}, not a "
                              f"{section} key; write {owner[0]}.{key} or just {key}.")
        raise ConfigError(f"unknown config key {name!r} in {where} for {cls.model_name}."
                          + did_you_mean(key, sections[section])
                          + f" See python run.py -m {cls.model_name} --help.")
    if key in RESERVED_KEYS:
        raise ConfigError(f"{name!r} in {where}: a tuning trial sets {key!r} itself; remove it.")
    return key


def map_parameters(cls, params: Mapping[str, Any], where: str = "the trial parameters") -> Dict[str, Any]:
    """Trial parameters as validated flat config overrides of model class ``cls``.

    Args:
        cls: a registered model class.
        params: what ``nni.get_next_parameter()`` returned.
        where: what holds the parameters (for error messages).

    Raises:
        ConfigError: an unknown or misplaced key, the same key given twice (``lr`` and
            ``train.lr``), or a value of the wrong type.

    Example:
        >>> from recstudio.model.registry import get_model
        >>> map_parameters(get_model("BPR"), {"train.learning_rate": 0.01, "model.embed_dim": 32.0})
        {'learning_rate': 0.01, 'embed_dim': 32}
    """
    from recstudio.model.base.config import all_options
    options = all_options(cls)
    out: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    for name, value in params.items():
        key = flat_key(cls, name, where)
        if key in out:
            raise ConfigError(f"{where} set {key!r} twice (as {origin[key]!r} and {name!r}); keep one.")
        out[key] = options[key].check(key, _plain(value))
        origin[key] = name
    return out


def _plain(value: Any) -> Any:
    """numpy scalars (some tuners return them) as Python numbers."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", None) == 0 else value


def model_search_space(model: str) -> Dict[str, Dict[str, Any]]:
    """The search space in a registered model's YAML (its ``search_space`` section; case-insensitive name).

    Raises:
        ConfigError: an unknown model, or a model whose YAML has no search space.

    Example:
        >>> sorted(model_search_space("bpr"))[0]
        'model.embed_dim'
    """
    from recstudio.model.registry import get_model, model_yaml
    cls = get_model(model)
    space = model_yaml(cls)["search_space"]
    if not space and not model_yaml(cls)["model"]:
        raise ConfigError(f"{cls.model_name} has no hyperparameters of its own, so there is nothing to tune; "
                          "give a search_space file of training or data keys to tune those.")
    if not space:
        raise ConfigError(f"{cls.model_name} has no search space; add a search_space section to its YAML "
                          "(like the one in recstudio/model/zoo/general/bpr.yaml).")
    return _check_entries(space, f"the search_space of {cls.model_name}")


def load_search_space(path) -> Dict[str, Dict[str, Any]]:
    """An NNI search space (YAML or JSON): ``{parameter: {"_type": ..., "_value": [...]}}``.

    Raises:
        ConfigError: a missing file, or content that is not a mapping of such entries.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file {path} does not exist.")
    space = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} must be a non-empty mapping of parameter -> "
                          "{_type: ..., _value: [...]}.")
    return _check_entries(space, f"search space {path}")


def _check_entries(space, where: str):
    for name, spec in space.items():
        if not isinstance(spec, dict) or "_type" not in spec or "_value" not in spec:
            raise ConfigError(f"{where}: parameter {name!r} needs _type and _value "
                              "(see https://nni.readthedocs.io/en/stable/hpo/search_space.html).")
    return space


def check_search_space(cls, space: Mapping[str, Mapping[str, Any]], where: str = "the search space") -> None:
    """Check that every parameter of ``space`` is a config key of ``cls`` and that every ``choice``
    value is valid for it (ranges are sampled numbers, checked when a trial maps them).

    Raises:
        ConfigError: the first bad key or choice.

    Example:
        >>> from recstudio.model.registry import get_model
        >>> check_search_space(get_model("EASE"), model_search_space("EASE"))
    """
    from recstudio.model.base.config import all_options
    options = all_options(cls)
    for name, spec in space.items():
        key = flat_key(cls, name, where)
        kind = spec["_type"]
        if kind == "choice":
            for value in spec["_value"]:
                options[key].check(key, value)
        elif kind not in NUMERIC_TYPES:
            raise ConfigError(f"{name!r} in {where}: _type {kind!r} is not one RecStudio maps; use one of "
                              f"{['choice', *NUMERIC_TYPES]}.")
        elif options[key].types == (int,) and kind not in INTEGER_TYPES:
            raise ConfigError(f"{name!r} in {where}: {key!r} is an integer but _type {kind!r} samples "
                              f"fractions; use choice, randint or {' / '.join(INTEGER_TYPES[1:])} with an "
                              "integer q.")
        elif float not in options[key].types and int not in options[key].types:
            raise ConfigError(f"{name!r} in {where}: {key!r} is not a number; tune it with _type choice.")
