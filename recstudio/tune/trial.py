"""Running as an NNI trial (``--mode tune``): parameters in, metrics out, nothing printed.

A trial started by an NNI experiment (``bash tune.sh config.yaml``) calls
:func:`trial_overrides` once, before the model is built: it takes the tuner's parameters from
``nni.get_next_parameter()``, maps them onto config keys (:mod:`recstudio.tune.params`) and
makes the run quiet. :class:`TrialReporter` (added to the Trainer by ``make_trainer`` when
``mode == "tune"``) reports the early-stopping metric after every validation
(``nni.report_intermediate_result``) and the test metrics at the end
(``nni.report_final_result``, ``{"default": <early_stop_metric>, <other test metrics>...}``).
"""
import os
from typing import Any, Dict, Mapping

from pytorch_lightning.callbacks import Callback

from recstudio.utils.errors import ConfigError

#: what to tell someone who runs ``--mode tune`` by hand
HOW_TO_START = ("--mode tune runs only inside an NNI trial, and this process is none (NNI_PLATFORM / "
                "NNI_TRIAL_JOB_ID are not set). Start an experiment with `bash tune.sh config.yaml` "
                "(see docs/tuning.md); to train once, use --mode light or --mode detail.")


def in_nni_trial() -> bool:
    """Whether this process was started by an NNI training service.

    NNI sets ``NNI_PLATFORM`` (and ``NNI_TRIAL_JOB_ID``) in a trial's environment; without it (or
    with ``unittest``) NNI 3 silently runs trial code in "standalone" mode, where
    ``get_next_parameter()`` returns ``{}`` and reports are only logged.

    Example:
        >>> in_nni_trial()   # a plain shell
        False
    """
    platform = os.environ.get("NNI_PLATFORM")
    return bool(platform) and platform != "unittest" and bool(os.environ.get("NNI_TRIAL_JOB_ID"))


def require_trial() -> None:
    """Raise :class:`ConfigError` (saying how to start an experiment) unless inside an NNI trial."""
    if not in_nni_trial():
        raise ConfigError(HOW_TO_START)
    try:
        import nni  # noqa: F401
    except ImportError as e:
        raise ConfigError('--mode tune needs NNI: pip install -e ".[nni]".') from e


def trial_overrides(cls, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The overrides of a tuning trial of model class ``cls``: ``overrides`` (command line /
    keyword arguments, which must include ``mode="tune"``) updated with this trial's parameters.

    Also sets ``quiet=True`` unless ``quiet`` was given, and, unless ``run_dir`` was given, puts the
    run folder under the trial's NNI output folder (``NNI_OUTPUT_DIR``), next to its logs.

    Args:
        cls: the registered model class being tuned.
        overrides: the run's overrides.

    Raises:
        ConfigError: not inside an NNI trial (with how to start one), or a bad key / value in the
            search space (naming the closest key).

    Example:
        >>> overrides = trial_overrides(get_model("BPR"), {"mode": "tune"})   # doctest: +SKIP
        >>> overrides["learning_rate"]   # drawn by the tuner
        0.0031
    """
    require_trial()
    import nni
    params = nni.get_next_parameter() or {}
    out = dict(overrides)
    out.update(map_parameters_for_trial(cls, params))
    out.setdefault("quiet", True)
    if "run_dir" not in out and os.environ.get("NNI_OUTPUT_DIR"):
        out["run_dir"] = os.environ["NNI_OUTPUT_DIR"]
    return out


def map_parameters_for_trial(cls, params: Mapping[str, Any]) -> Dict[str, Any]:
    """:func:`recstudio.tune.params.map_parameters` with the trial's search space named in errors."""
    from recstudio.tune.params import map_parameters
    return map_parameters(cls, params, where=f"the search space of NNI experiment "
                                             f"{os.environ.get('NNI_EXP_ID', '?')}")


class TrialReporter(Callback):
    """Reports a tuning trial's metrics to NNI (global rank 0 only).

    After every validation: ``nni.report_intermediate_result(value of early_stop_metric)``.
    After the test: ``nni.report_final_result({"default": <test early_stop_metric>, **test metrics})``.

    Args:
        metric: the early-stopping metric name, e.g. ``"mrr@10"``.

    Raises:
        ConfigError: at construction, outside an NNI trial or before the trial's parameters were
            fetched (use ``python run.py --mode tune`` or ``recstudio.run(..., mode="tune")``,
            which fetch them).

    Example:
        >>> trainer = pl.Trainer(callbacks=[TrialReporter("mrr@10")])   # doctest: +SKIP
    """

    #: what the training engine looks for when ``mode`` is ``'tune'`` (it never imports this module)
    reports_trial = True

    def __init__(self, metric: str):
        require_trial()
        import nni
        if nni.get_current_parameter() is None:
            raise ConfigError("mode 'tune': this trial's parameters were never fetched, so its results would not "
                              "belong to them. Run it as `python run.py --mode tune ...` or "
                              "recstudio.run(..., mode='tune'), which fetch them before building the model.")
        self.metric = metric
        self.intermediate = []

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = pl_module.eval_phase_results.get("valid", {}).get(self.metric)
        if value is None:
            return
        import nni
        self.intermediate.append(float(value))
        nni.report_intermediate_result(float(value))

    def on_test_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        results = pl_module.eval_phase_results.get("test", {})
        if self.metric not in results:
            raise ConfigError(f"the test phase produced no {self.metric!r} to report to NNI (got {list(results)}).")
        import nni
        nni.report_final_result({"default": float(results[self.metric]),
                                 **{k: float(v) for k, v in results.items()}})
