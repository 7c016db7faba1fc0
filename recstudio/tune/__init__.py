"""Hyperparameter tuning with NNI (``bash tune.sh config.yaml``; see docs/tuning.md).

- :mod:`recstudio.tune.params`: trial parameters / search-space keys -> config keys, validated.
- :mod:`recstudio.tune.trial`: ``--mode tune``: fetch parameters, report metrics to NNI.
- :mod:`recstudio.tune.experiment`: checks and prepares an experiment config for ``tune.sh``.
- ``recstudio/tune/search_spaces/<model>.yaml``: a search space for every registered model.
"""
from recstudio.tune.params import (check_search_space, flat_key, load_search_space,
                                   map_parameters, model_search_space)
from recstudio.tune.trial import TrialReporter, in_nni_trial, require_trial, trial_overrides

__all__ = ["check_search_space", "flat_key", "load_search_space", "map_parameters",
           "model_search_space", "TrialReporter", "in_nni_trial", "require_trial", "trial_overrides"]
