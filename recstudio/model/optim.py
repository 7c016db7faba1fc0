"""Optimizers and learning-rate schedulers, each behind a registry like the other blocks.

A builder takes the trainable parameters (or the optimizer) and the resolved config and returns the torch
object; a model needs no patch of its own (SASRec's Adam betas are the ``adam_betas`` key). Register more
with ``@OPTIMIZERS.register("name")`` / ``@SCHEDULERS.register("name")``.

Example:
    >>> import torch
    >>> p = [torch.nn.Parameter(torch.zeros(2))]
    >>> cfg = {"learning_rate": 0.1, "weight_decay": 0.0, "adam_betas": [0.9, 0.98]}
    >>> OPTIMIZERS.get("Adam")(p, cfg).param_groups[0]["betas"]
    (0.9, 0.98)
"""
from typing import Any, Dict, Mapping

import torch

from recstudio.utils.errors import ConfigError
from recstudio.utils.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")


def _betas(cfg: Mapping[str, Any]):
    betas = cfg.get("adam_betas") or (0.9, 0.999)
    if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
        raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {betas}.")
    return tuple(float(b) for b in betas)


@OPTIMIZERS.register("adam")
def adam(params, cfg):
    """Adam with the fused kernel (about 1.7x faster steps on CPU) where torch supports it for these
    parameters (dense gradients, floating point); the standard implementation otherwise."""
    kw = dict(lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"], betas=_betas(cfg))
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, **kw)


@OPTIMIZERS.register("adamw")
def adamw(params, cfg):
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"], betas=_betas(cfg))


@OPTIMIZERS.register("sgd")
def sgd(params, cfg):
    return torch.optim.SGD(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])


@OPTIMIZERS.register("adagrad")
def adagrad(params, cfg):
    return torch.optim.Adagrad(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, cfg):
    return torch.optim.RMSprop(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])


@OPTIMIZERS.register("sparse_adam", aliases=("sparseadam",))
def sparse_adam(params, cfg):
    """SparseAdam: every trainable parameter must be a sparse embedding table (checked by the model)."""
    if cfg["weight_decay"]:
        raise ConfigError("sparse_adam has no weight decay; set weight_decay=0 or use adam.")
    return torch.optim.SparseAdam(params, lr=cfg["learning_rate"], betas=_betas(cfg))


class SparseDenseAdam(torch.optim.Optimizer):
    """One optimizer over sparse and dense parameters: torch's ``SparseAdam`` for the param groups marked
    ``sparse=True`` (tables with sparse gradients, e.g. ``nn.Embedding(sparse=True)``) and ``Adam`` for the
    others. The inner optimizers share this optimizer's param groups and state, so learning-rate
    schedulers, ``state_dict`` and checkpoints see one optimizer. Weight decay applies to the dense groups
    only (SparseAdam has none).

    Example:
        >>> emb, lin = torch.nn.Embedding(5, 2, sparse=True), torch.nn.Linear(2, 1)
        >>> opt = SparseDenseAdam([{"params": list(emb.parameters()), "sparse": True},
        ...                        {"params": list(lin.parameters())}], lr=0.1)
        >>> lin(emb(torch.tensor([1, 2]))).sum().backward(); opt.step()
        >>> bool(emb.weight.grad.is_sparse), sorted(len(opt.state[p]) > 0 for p in [emb.weight, lin.weight])
        (True, [True, True])
    """

    def __init__(self, groups, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0):
        parts, shared = [], []
        for group in groups:
            group = dict(group) if isinstance(group, dict) else {"params": [group]}
            sparse = bool(group.pop("sparse", False))
            params = list(group.pop("params"))
            if not params:
                continue
            if sparse:
                opt = torch.optim.SparseAdam(params, lr=lr, betas=betas)
            else:
                opt = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
            opt.param_groups[0]["sparse"] = sparse
            parts.append(opt)
            shared.append(opt.param_groups[0])
        if not parts:
            raise ConfigError("sparse_dense_adam got no parameters to optimise.")
        self._parts = parts
        super().__init__(shared, {"lr": lr})
        self._share()

    def _share(self) -> None:
        for opt, group in zip(self._parts, self.param_groups):
            opt.param_groups = [group]
            opt.state = self.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._parts:
            opt.step()
        return loss

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._share()


@OPTIMIZERS.register("sparse_dense_adam", aliases=("mixed_adam",))
def sparse_dense_adam(params, cfg):
    """:class:`SparseDenseAdam`: SparseAdam for param groups given as ``{"params": ..., "sparse": True}``,
    Adam for the rest (plain tensors included); a model with sparse embedding tables passes such groups
    from its ``configure_optimizers``."""
    groups, dense = [], []
    for p in params:
        (groups.append(p) if isinstance(p, dict) else dense.append(p))
    if dense:
        groups.append({"params": dense})
    return SparseDenseAdam(groups, lr=cfg["learning_rate"], betas=_betas(cfg), weight_decay=cfg["weight_decay"])


@SCHEDULERS.register("step", aliases=("steplr",))
def step(opt, cfg):
    return torch.optim.lr_scheduler.StepLR(opt, cfg["scheduler_step_size"], cfg["scheduler_gamma"])


@SCHEDULERS.register("exponential", aliases=("exponentiallr",))
def exponential(opt, cfg):
    return torch.optim.lr_scheduler.ExponentialLR(opt, cfg["scheduler_gamma"])


@SCHEDULERS.register("cosine", aliases=("cosineannealinglr", "cosineannealing"))
def cosine(opt, cfg):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg["epochs"], 1))


@SCHEDULERS.register("plateau", aliases=("reducelronplateau",), monitored=True)
def plateau(opt, cfg):
    """Decay when the early-stopping metric stops improving (its direction from the metric registry)."""
    from recstudio.eval import higher_is_better
    mode = "max" if higher_is_better(cfg["early_stop_metric"]) else "min"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg["scheduler_gamma"], patience=2)


@SCHEDULERS.register("plateau_fuxictr", aliases=("fuxictr",), monitored=True)
def plateau_fuxictr(opt, cfg):
    """FuxiCTR's (and so BARS's) schedule: multiply the learning rate by ``scheduler_gamma`` (FuxiCTR: 0.1)
    at *every* validation whose early-stopping metric does not improve on the best so far (torch's
    ``ReduceLROnPlateau`` with patience 0, no cooldown), never below 1e-6 (FuxiCTR's ``lr_decay`` floor).
    "Improves" is the strict comparison that early stopping and the best checkpoint use (threshold 0;
    FuxiCTR's ``min_delta`` is 1e-6). With ``early_stop_patience: 2`` training stops after two consecutive
    non-improving validations, as FuxiCTR's ``_stopping_steps >= early_stop_patience``
    (``fuxictr/pytorch/models/rank_model.py``, ``checkpoint_and_earlystop``)."""
    from recstudio.eval import higher_is_better
    mode = "max" if higher_is_better(cfg["early_stop_metric"]) else "min"
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg["scheduler_gamma"], patience=0,
                                                      threshold=0.0, threshold_mode="abs", cooldown=0, min_lr=1e-6)


def registered_spelling(registry: Registry):
    """An option's ``canonical`` hook: a registered name or alias (any case) -> the registered name; an
    unknown name is returned unchanged, for the option's own error with suggestions."""
    return lambda name: registry.canonical(name) if name in registry else name


def configure(params, cfg: Mapping[str, Any], monitor: str):
    """What Lightning's ``configure_optimizers`` returns for ``cfg``'s optimizer and scheduler."""
    opt = OPTIMIZERS.get(cfg["optimizer"])(params, cfg)
    name = cfg.get("scheduler")
    if name is None:
        return opt
    sched = SCHEDULERS.get(name)(opt, cfg)
    entry: Dict[str, Any] = {"scheduler": sched, "interval": "epoch"}
    if SCHEDULERS.info[SCHEDULERS.canonical(name)].get("monitored"):
        entry.update(monitor=monitor, strict=False)
    return {"optimizer": opt, "lr_scheduler": entry}
