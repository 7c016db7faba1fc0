"""Multi-task feature (CTR) rankers: several 0/1 labels per row, one logit per task.

A :class:`MultiTaskFeatureRecommender` is a :class:`~recstudio.model.family.feature.FeatureRecommender`
(the same field embeddings, data and top-k machinery) whose rows carry **several labels**, declared in
order by the ``tasks`` key::

    tasks:
      - {name: like, field: rating, threshold: 4}        # label = rating >= 4
      - {name: love, field: rating, threshold: 5, weight: 0.5}
      - click                                            # shorthand: the 0/1 column 'click', named 'click'

Each entry is a mapping with ``field`` (an interaction column), optional ``threshold`` (label =
``field >= threshold``; without it the column must hold 0/1 labels), ``name`` (default: the field; the
names must be unique) and ``weight`` (default 1), or a column name. The order matters for the models that
chain their tasks (ESMM: ``p(task t) = prod_{s<=t} p(s | s-1)``; AITM: information flows from task t-1 to
task t): list them from the earliest / widest event (impression -> click -> conversion).

The hook of the models is

``task_logits(emb)``
    ``[*, F, d] -> [*, T]``: one logit per task (``build_interaction()`` creates the blocks;
    ``self.num_fields``, ``self.embed_dim``, ``self.num_tasks`` are known by then). Each logit is the
    task's label over **every** row (ESMM and AITM compose their towers so that this holds).

Training minimises ``sum_t weight_t * BCE(logit_t, y_t)`` over the rows (``loss: pointwise_bce`` per task),
plus the model's :meth:`~MultiTaskFeatureRecommender.extra_loss` (AITM's calibrator) and ``embed_reg``.
There is no first-order term and the base's scalar ``bias`` is frozen at zero (the task towers have their
own biases).

Evaluation reports every metric per task as ``<metric>@<task>`` (``auc@like``, ``logloss@love``) and the
mean over the tasks under the plain name (``auc``); ``early_stop_metric`` may be any of them
(``auc@love`` stops on one task). Ranking (``recommend()``, ``score_all_candidates``) orders items by the
logit of ``rank_task`` (default: the last task).

Example:
    >>> import recstudio                                                   # doctest: +SKIP
    >>> model, metrics = recstudio.run(model="MMoE", dataset="ml-1m")      # doctest: +SKIP
    >>> sorted(metrics)[:3]                                                # doctest: +SKIP
    ['auc', 'auc@like', 'auc@love']
"""
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from recstudio.model.base.context import ModelContext
from recstudio.model.base.metrics import CTRAccumulator
from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import MLP
from recstudio.utils.errors import ConfigError, DataError
from recstudio.utils.suggest import did_you_mean

MULTITASK_HELP = {k: v for k, v in FEATURE_HELP.items() if k not in ("label_field", "label_threshold")}
MULTITASK_HELP.update({
    "tasks": "the labels, in task order (earliest event first): a list of {name, field, threshold, weight} "
             "(label = field >= threshold, or the 0/1 column field; weight of the task's BCE, default 1) or of "
             "0/1 column names; at least two",
    "rank_task": "name of the task whose logit ranks items in recommend() / full ranking (null: the last task)",
    "loss": "training loss of every task, a pointwise one (pointwise_bce); the total is sum_t weight_t * loss_t",
})
_TASK_KEYS = ("name", "field", "threshold", "weight")


class Task:
    """One label: ``name``, source column ``field``, optional ``threshold`` and loss ``weight``."""

    def __init__(self, name: str, field: str, threshold: Optional[float], weight: float):
        self.name, self.field, self.threshold, self.weight = name, field, threshold, float(weight)

    def labels(self, values: torch.Tensor) -> torch.Tensor:
        return (values >= self.threshold).float() if self.threshold is not None else values.float()

    def __repr__(self) -> str:
        rule = f"{self.field} >= {self.threshold}" if self.threshold is not None else self.field
        return f"Task({self.name}: {rule}, weight {self.weight})"


def parse_tasks(spec: Any) -> List[Task]:
    """The ``tasks`` config value as :class:`Task` objects (ConfigError on a bad entry).

    Example:
        >>> parse_tasks([{"name": "like", "field": "rating", "threshold": 4}, "click"])
        [Task(like: rating >= 4, weight 1.0), Task(click: click, weight 1.0)]
    """
    if not isinstance(spec, (list, tuple)) or len(spec) < 2:
        raise ConfigError(f"tasks must list at least two labels (e.g. [{{name: like, field: rating, threshold: 4}}, "
                          f"{{name: love, field: rating, threshold: 5}}] or [click, buy]), got {spec!r}.")
    out = []
    for i, entry in enumerate(spec):
        if isinstance(entry, str):
            entry = {"field": entry}
        if not isinstance(entry, dict) or "field" not in entry:
            raise ConfigError(f"tasks[{i}] must be a column name or a mapping with a 'field' key "
                              f"(and optional name, threshold, weight), got {entry!r}.")
        unknown = [k for k in entry if k not in _TASK_KEYS]
        if unknown:
            raise ConfigError(f"tasks[{i}] has unknown keys {unknown}; a task has {list(_TASK_KEYS)}."
                              + did_you_mean(str(unknown[0]), list(_TASK_KEYS)))
        field, threshold = entry["field"], entry.get("threshold")
        name = entry.get("name") or field
        weight = entry.get("weight", 1.0)
        if not isinstance(field, str) or not isinstance(name, str) or "@" in name:
            raise ConfigError(f"tasks[{i}]: field and name must be strings and the name must not contain '@', "
                              f"got field {field!r}, name {name!r}.")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise ConfigError(f"tasks[{i}] ({name}): threshold must be a number or null, got {threshold!r}.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0 \
                or not math.isfinite(weight):
            raise ConfigError(f"tasks[{i}] ({name}): weight must be a finite number >= 0, got {weight!r}.")
        out.append(Task(name, field, None if threshold is None else float(threshold), float(weight)))
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"task names must be unique, {dup} repeat; give the tasks names "
                          "(e.g. {name: like, field: rating, threshold: 4}).")
    if not any(t.weight > 0 for t in out):
        raise ConfigError("every task weight is 0: nothing would be trained; give some task a weight > 0.")
    return out


class MultiTaskCTRAccumulator:
    """Per-task click metrics: one :class:`~recstudio.model.base.metrics.CTRAccumulator` per task; results
    ``<metric>@<task>`` and, under the plain name, their mean over the tasks (NaN tasks left out).

    Example:
        >>> acc = MultiTaskCTRAccumulator(["auc"], ["a", "b"])
        >>> acc.add_predictions(torch.tensor([[2.0, 1.0], [-1.0, 3.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        ...                     torch.tensor([1, 2]))
        >>> acc.compute()
        {'auc': 1.0, 'auc@a': 1.0, 'auc@b': 1.0}
    """

    def __init__(self, metrics: Sequence[str], task_names: Sequence[str]):
        self.metrics = [str(m).lower() for m in metrics]
        self.task_names = list(task_names)
        self.parts = [CTRAccumulator(self.metrics) for _ in self.task_names]

    @staticmethod
    def names(metrics: Sequence[str], task_names: Sequence[str]) -> List[str]:
        """Every result key: the means, then ``<metric>@<task>`` task by task."""
        ms = [str(m).lower() for m in metrics]
        return ms + [f"{m}@{t}" for t in task_names for m in ms]

    def add_predictions(self, logits: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> None:
        """``logits`` and ``labels`` ``[B, T]``, ``users`` ``[B]``."""
        for t, part in enumerate(self.parts):
            part.add_predictions(logits[:, t], labels[:, t], users)

    def compute(self, strategy: Optional[object] = None) -> Dict[str, float]:
        per_task = [part.compute(strategy) for part in self.parts]
        out = {}
        for m in self.metrics:
            values = [r[m] for r in per_task if not math.isnan(r[m])]
            out[m] = float(np.mean(values)) if values else float("nan")
        for name, r in zip(self.task_names, per_task):
            out.update({f"{m}@{name}": r[m] for m in self.metrics})
        return out


def expert_mlp(dims: Sequence[int], cfg) -> MLP:
    """A hidden-layer stack (activation after every layer, also the last): an expert, a bottom or a tower body."""
    return MLP(list(dims), activation=cfg("activation"), dropout=float(cfg("dropout")),
               batch_norm=bool(cfg("batch_norm")), last_activation=True)


class MultiTaskFeatureRecommender(FeatureRecommender):
    """Base of the multi-task CTR models (see the module docstring): ``tasks`` labels, per-task BCE with
    weights, per-task metrics, ranking by ``rank_task``.

    Subclasses implement :meth:`task_logits` (and create blocks in :meth:`build_interaction`).
    """

    base_name = "Feature"
    option_help = dict(MULTITASK_HELP)
    use_first_order = False

    # ---- hooks for the models ----------------------------------------------------------------
    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """``emb [*, F, d] -> [*, T]``: each task's logit (its label over every row)."""
        raise ConfigError(f"{type(self).__name__} is a MultiTaskFeatureRecommender and must define task_logits(emb).")

    def extra_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A term added to the training loss (``logits``, ``labels`` ``[B, T]``): none by default."""
        return logits.new_zeros(())

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return self.task_logits(emb)[..., self.rank_index]

    # ---- tasks, metrics --------------------------------------------------------------------------
    @property
    def tasks(self) -> List[Task]:
        if getattr(self, "_tasks", None) is None:
            self._tasks = parse_tasks(self.cfg("tasks"))
        return self._tasks

    @property
    def task_names(self) -> List[str]:
        return [t.name for t in self.tasks]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def rank_index(self) -> int:
        name = self.cfg("rank_task")
        if name is None:
            return self.num_tasks - 1
        if name not in self.task_names:
            raise ConfigError(f"rank_task {name!r} is not a task; the tasks are {self.task_names}."
                              + did_you_mean(str(name), self.task_names))
        return self.task_names.index(name)

    def _check_metrics(self) -> None:
        cfg = self.config
        self._tasks = parse_tasks(cfg["tasks"])
        CTRAccumulator.check(cfg["metrics"])
        _ = self.rank_index
        names = MultiTaskCTRAccumulator.names(cfg["metrics"], self.task_names)
        if cfg["early_stop_metric"] not in names:
            raise ConfigError(f"early_stop_metric {cfg['early_stop_metric']!r} is not among the evaluated metrics "
                              f"{names} (a plain name is the mean over the tasks, <metric>@<task> one task)."
                              + did_you_mean(cfg["early_stop_metric"], names))

    def _new_accumulator(self):
        return MultiTaskCTRAccumulator(self.config["metrics"], self.task_names)

    def _accumulate(self, acc, batch, batch_number: Optional[int] = None) -> None:
        acc.add_predictions(self.forward(batch), self.ctr_labels(batch), batch[self.meta.uid_field])

    # ---- labels and data -------------------------------------------------------------------------
    def ctr_labels(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """0/1 float labels ``[B, T]`` of a batch's rows, one column per task."""
        return torch.stack([t.labels(batch[t.field]) for t in self.tasks], -1)

    def context_from(self, split) -> ModelContext:
        """As the single-label base, with every task's label column left out of the context fields and each
        task's training labels checked (0/1, both classes present)."""
        from recstudio.model.base.context import check_needs
        ds = split.dataset
        columns = list(ds.inter.names)
        for t in self.tasks:
            if t.field not in columns:
                raise ConfigError(f"task {t.name!r}: field {t.field!r} is not an interaction column; columns are "
                                  f"{sorted(columns)}." + did_you_mean(t.field, columns))
        needs = set(self.needs) | {"context_features"}
        for owner, table, key in (("user", ds.user_feat, ds.uid_field), ("item", ds.item_feat, ds.iid_field)):
            if table is not None and any(n != key for n in table.names):
                needs.add(f"{owner}_features")
        ctx = ModelContext.from_split(split, check_needs(needs, type(self).__name__),
                                      content_field=self.cfg("content_field"))
        for t in self.tasks:
            ctx.context_fields.pop(t.field, None)
            values = np.asarray(ds.inter[t.field][split.train], dtype=np.float64)
            if t.threshold is not None:
                values = (values >= t.threshold).astype(np.float64)
            elif len(values) and (values.min() < 0 or values.max() > 1):
                raise DataError(f"task {t.name!r}: column {t.field!r} must hold 0/1 labels; its train values lie in "
                                f"[{values.min()}, {values.max()}]. Give the task a threshold for ratings.")
            if len(values) == 0 or values.min() == values.max():
                raise DataError(f"task {t.name!r}: every training label is {values[:1].tolist()}; each task needs "
                                "both positive and negative rows.")
        return ctx

    def _batch_columns(self) -> List[str]:
        cols = [f.source for f in self.fields if f.owner == "context"]
        cols += [self.weight_source[k] for k in self.weight_source if self.field_by_key[k].owner == "context"]
        cols += [t.field for t in self.tasks]
        return list(dict.fromkeys(cols))

    # ---- building and scoring ----------------------------------------------------------------------
    def build_blocks(self) -> None:
        super().build_blocks()
        self.bias.requires_grad_(False)  # no first-order term: the towers carry the biases

    def _task_logits(self, q_emb: torch.Tensor, i_emb: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(q_emb.shape[:-2], i_emb.shape[:-2])
        d = self.embed_dim
        emb = torch.cat([q_emb.expand(*shape, q_emb.shape[-2], d), i_emb.expand(*shape, i_emb.shape[-2], d)], -2)
        return self.task_logits(emb)

    def _logits(self, q_emb, q_lin, i_emb, i_lin) -> torch.Tensor:
        """The ranking score: the ``rank_task`` logit."""
        return self._task_logits(q_emb, i_emb)[..., self.rank_index]

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[B, T]`` of every task for the batch's rows."""
        q_emb, _ = self.prepare_scoring(batch)
        i_emb, _ = self._item_part(batch[self.meta.iid_field])
        return self._task_logits(q_emb, i_emb)

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_t weight_t * loss(logit_t, y_t)`` + :meth:`extra_loss` + the ``embed_reg`` penalty."""
        logits, labels = self.forward(batch), self.ctr_labels(batch)
        loss = sum(t.weight * self.loss_fn(pos_score=logits[:, i], label=labels[:, i])
                   for i, t in enumerate(self.tasks) if t.weight > 0)
        loss = loss + self.extra_loss(logits, labels)
        reg = float(self.cfg("embed_reg", 0.0))
        if reg:
            loss = loss + reg / 2 * sum(p.pow(2).sum() for p in self.embedding.parameters())
        return loss


class Towers(nn.Module):
    """One tower per task: a list of ``T`` inputs ``[*, d_in]`` (task t's input to tower t) -> logits
    ``[*, T]``; each tower a hidden stack ``hidden`` (none: a linear layer) then a linear output."""

    def __init__(self, num_tasks: int, d_in: int, hidden: Sequence[int], cfg):
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(expert_mlp([d_in, *hidden], cfg), nn.Linear(int(hidden[-1]), 1)) if hidden
            else nn.Linear(d_in, 1) for _ in range(num_tasks))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([tower(x).squeeze(-1) for tower, x in zip(self.towers, inputs)], -1)


def mixture(experts: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
    """``experts [*, E, h]``, ``gate_logits [*, E]`` -> ``sum_e softmax(gate)_e * expert_e`` ``[*, h]``."""
    return (torch.softmax(gate_logits, -1).unsqueeze(-1) * experts).sum(-2)
