"""Checking (and re-targeting) an NNI experiment config before ``tune.sh`` starts it.

``python -m recstudio.tune prepare config.yaml [-m MODEL] [-o OUT]`` reads the experiment config,
finds the model its ``trialCommand`` trains (``-m`` / ``--model``, default BPR like ``run.py``),
and checks before anything starts that the trial command runs ``--mode tune``, that every
search-space key is a config key of that model (with valid ``choice`` values) and that the
tuner's ``optimize_mode`` matches the direction of the model's early-stopping metric.
With ``-m MODEL`` it writes a copy (to ``OUT``) whose trial command, search space (the model's
bundled one), tuner direction and experiment name are those of ``MODEL``, with every path made
absolute. It prints the path of the config to hand to ``nnictl create``.
"""
import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from recstudio.utils.errors import ConfigError, RecStudioError
from recstudio.utils.io import atomic_path


def read_experiment_config(path) -> Dict[str, Any]:
    """An NNI experiment config (YAML) as a dict.

    Raises:
        ConfigError: a missing file, or one without a mapping and a ``trialCommand``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config {path} does not exist; see config.yaml at the repository root.")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("trialCommand"), str):
        raise ConfigError(f"experiment config {path} must be a mapping with a trialCommand, like config.yaml at "
                          "the repository root (see docs/tuning.md).")
    return doc


def _option(words: List[str], names, default: Optional[str] = None) -> Optional[str]:
    """The value of ``--name value`` / ``--name=value`` in a split command line (last one wins)."""
    value = default
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                value = words[i + 1]
            elif word.startswith(name + "="):
                value = word.split("=", 1)[1]
    return value


def trial_model(command: str) -> str:
    """The model a trial command trains: its ``-m`` / ``--model`` value, or BPR (``run.py``'s default).

    Example:
        >>> trial_model("python run.py --mode tune -m SASRec -d ml-1m")
        'SASRec'
    """
    return _option(shlex.split(command), ("-m", "--model"), "BPR")


def metric_direction(cls, command: str) -> str:
    """``'maximize'`` or ``'minimize'``: the direction of the early-stopping metric the trial reports
    (its ``--early_stop_metric``, else the model's default)."""
    from recstudio.model.base.config import resolve_config
    from recstudio.model.base.metrics import monitor_mode
    metric = _option(shlex.split(command), ("--early_stop_metric",)) or resolve_config(cls)["early_stop_metric"]
    return "minimize" if monitor_mode(metric) == "min" else "maximize"


def check_experiment(doc: Dict[str, Any], base_dir: Path, where: str) -> None:
    """Check an experiment config read from a file in ``base_dir`` (see the module docstring).

    Raises:
        ConfigError: what is wrong, and what to write instead.
    """
    from recstudio.model.registry import get_model
    from recstudio.tune.params import check_search_space, load_search_space
    command = doc["trialCommand"]
    words = shlex.split(command)
    if _option(words, ("--mode",)) != "tune":
        raise ConfigError(f"{where}: the trialCommand {command!r} must run --mode tune (e.g. "
                          "`python run.py --mode tune -m BPR -d ml-100k`), or its trials report nothing to NNI.")
    cls = get_model(trial_model(command))
    if doc.get("searchSpaceFile"):
        space_file = Path(doc["searchSpaceFile"]).expanduser()
        space_file = space_file if space_file.is_absolute() else base_dir / space_file
        space = load_search_space(space_file)
        check_search_space(cls, space, where=str(space_file))
    elif isinstance(doc.get("searchSpace"), dict):
        check_search_space(cls, doc["searchSpace"], where=f"the searchSpace of {where}")
    else:
        raise ConfigError(f"{where} has neither searchSpaceFile nor searchSpace; give one, or let prepare() "
                          f"take {cls.model_name}'s own (the search_space section of its YAML).")
    args = (doc.get("tuner") or {}).get("classArgs") or {}
    wanted = metric_direction(cls, command)
    if "optimize_mode" in args and args["optimize_mode"] != wanted:
        raise ConfigError(f"{where}: tuner optimize_mode is {args['optimize_mode']!r}, but {cls.model_name}'s "
                          f"early-stopping metric (the one trials report) should be {wanted}d; set "
                          f"optimize_mode: {wanted}.")


def retarget(doc: Dict[str, Any], base_dir: Path, model: str) -> Dict[str, Any]:
    """A copy of experiment config ``doc`` (read from ``base_dir``) that tunes ``model`` with its bundled
    search space, paths made absolute.

    Example:
        >>> doc = retarget(read_experiment_config("config.yaml"), Path("."), "SASRec")   # doctest: +SKIP
        >>> doc["trialCommand"]
        'python run.py --mode tune -m SASRec -d ml-100k'
    """
    from recstudio.model.registry import get_model
    from recstudio.tune.params import model_search_space
    cls = get_model(model)
    old = trial_model(doc["trialCommand"])
    words = shlex.split(doc["trialCommand"])
    for i, word in enumerate(words):
        if word in ("-m", "--model") and i + 1 < len(words):
            words[i + 1] = cls.model_name
        elif word.startswith("--model="):
            words[i] = f"--model={cls.model_name}"
    if not any(w in ("-m", "--model") or w.startswith("--model=") for w in words):
        words += ["-m", cls.model_name]
    out = dict(doc)
    out["trialCommand"] = shlex.join(words)
    out.pop("searchSpaceFile", None)
    out["searchSpace"] = model_search_space(cls.model_name)
    for key, default in (("trialCodeDirectory", "."), ("experimentWorkingDirectory", None)):
        value = out.get(key, default)
        if value is not None:
            path = Path(value).expanduser()
            out[key] = str(path if path.is_absolute() else (base_dir / path).resolve())
    if isinstance(out.get("experimentName"), str) and old in out["experimentName"]:
        out["experimentName"] = out["experimentName"].replace(old, cls.model_name)
    tuner = dict(out.get("tuner") or {})
    args = dict(tuner.get("classArgs") or {})
    if "optimize_mode" in args:
        args["optimize_mode"] = metric_direction(cls, out["trialCommand"])
        tuner["classArgs"] = args
        out["tuner"] = tuner
    return out


def prepare(config, model: Optional[str] = None, output=None) -> Path:
    """Check experiment config ``config`` (after re-targeting it to ``model``, written to ``output``)
    and return the path of the config to start.

    Raises:
        ConfigError: a bad config, search space, model or output path.

    Example:
        >>> prepare("config.yaml")                                   # doctest: +SKIP
        PosixPath('config.yaml')
        >>> prepare("config.yaml", "EASE", "/tmp/ease.yaml")          # doctest: +SKIP
        PosixPath('/tmp/ease.yaml')
    """
    config = Path(config)
    doc = read_experiment_config(config)
    base_dir = config.resolve().parent
    if model is None:
        check_experiment(doc, base_dir, str(config))
        return config
    if output is None:
        raise ConfigError("re-targeting an experiment config to another model needs an output path (-o FILE).")
    doc = retarget(doc, base_dir, model)
    check_experiment(doc, base_dir, f"{config} re-targeted to {model}")
    output = Path(output)
    with atomic_path(output) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000), encoding="utf-8")
    return output


def main(argv=None) -> int:
    """``python -m recstudio.tune prepare CONFIG [-m MODEL] [-o OUT]`` (used by ``tune.sh``)."""
    parser = argparse.ArgumentParser(prog="python -m recstudio.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="check an experiment config (optionally re-targeted to -m MODEL); "
                                       "print the path of the config to start")
    p.add_argument("config", help="NNI experiment config (YAML), e.g. config.yaml")
    p.add_argument("-m", "--model", default=None, help="tune this registered model instead (uses its bundled "
                                                       "search space)")
    p.add_argument("-o", "--output", default=None, help="where to write the re-targeted config (with -m)")
    args = parser.parse_args(argv)
    try:
        print(prepare(args.config, args.model, args.output))
    except RecStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
