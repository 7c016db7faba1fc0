"""The training engine: a model wired to a Lightning Trainer (loaders, callbacks, loggers, early stopping,
atomic checkpoints, resume, DDP), beside :mod:`recstudio.model`.

- :mod:`~recstudio.train.trainer`: :func:`fit_model` (train, early-stop, test the best checkpoint) and
  :func:`make_trainer`; callers pass their own reporting callbacks in (an NNI trial passes
  ``recstudio.tune.trial.TrialReporter``), so training never imports ``tune``.
- :mod:`~recstudio.train.checkpoint`: writing, finding, reading and resuming checkpoints; :func:`load_model`.
- :mod:`~recstudio.train.callbacks`: the Trainer callbacks that make a resumed run identical.
- :mod:`~recstudio.train.distributed`: sharded loaders and run folders under several processes.

Example:
    >>> from recstudio.train import fit_model, load_model                   # doctest: +SKIP
    >>> metrics = fit_model(recstudio.get_model("BPR")(), split)            # doctest: +SKIP
    >>> model = load_model("runs/BPR-ml-100k-...")                          # doctest: +SKIP
"""
from recstudio.train.checkpoint import load_model, plan_resume
from recstudio.train.trainer import fit_model, make_trainer

__all__ = ["fit_model", "make_trainer", "load_model", "plan_resume"]
