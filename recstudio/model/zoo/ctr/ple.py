"""PLE: progressive layered extraction, task-specific and shared experts per level (CGC blocks)."""
from typing import List

import torch
from torch import nn

from recstudio.model.family.multitask import (MULTITASK_HELP, MultiTaskFeatureRecommender, Towers, expert_mlp,
                                              mixture)
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.sharedbottom import DEEP_HELP
from recstudio.utils.errors import ConfigError


class CGCLevel(nn.Module):
    """One extraction level: per task ``num_task_experts`` experts and a gate over them plus the
    ``num_shared_experts`` shared experts; with ``shared_gate`` (every level but the last) a gate of the
    shared branch over all experts."""

    def __init__(self, num_tasks: int, d_in: int, hidden: List[int], n_task: int, n_shared: int, shared_gate: bool,
                 cfg):
        super().__init__()
        self.num_tasks, self.n_task, self.n_shared = num_tasks, n_task, n_shared
        self.task_experts = nn.ModuleList(nn.ModuleList(expert_mlp([d_in, *hidden], cfg) for _ in range(n_task))
                                          for _ in range(num_tasks))
        self.shared_experts = nn.ModuleList(expert_mlp([d_in, *hidden], cfg) for _ in range(n_shared))
        self.task_gates = nn.ModuleList(nn.Linear(d_in, n_task + n_shared) for _ in range(num_tasks))
        self.shared_gate = nn.Linear(d_in, num_tasks * n_task + n_shared) if shared_gate else None

    def forward(self, task_in: List[torch.Tensor], shared_in: torch.Tensor):
        shared = [e(shared_in) for e in self.shared_experts]
        own = [[e(x) for e in experts] for experts, x in zip(self.task_experts, task_in)]
        task_out = [mixture(torch.stack(own[t] + shared, -2), self.task_gates[t](task_in[t]))
                    for t in range(self.num_tasks)]
        if self.shared_gate is None:
            return task_out, None
        everything = torch.stack([h for hs in own for h in hs] + shared, -2)
        return task_out, mixture(everything, self.shared_gate(shared_in))


@register_model("PLE", category="ctr",
                paper="H. Tang, J. Liu, M. Zhao, X. Gong. Progressive Layered Extraction (PLE): A Novel Multi-Task "
                      "Learning (MTL) Model for Personalized Recommendations. RecSys 2020.")
class PLE(MultiTaskFeatureRecommender):
    """Progressive Layered Extraction (Tang et al., RecSys 2020). Level ``l`` (a Customized Gate Control
    block) has per task ``m_t`` experts and ``m_s`` shared experts; task t's output is
    ``g_t(x_t) . [E_t(x_t); E_s(x_s)]`` (a softmax gate over its own and the shared experts) and, below the
    last level, the shared branch's output is ``g_s(x_s) . [E_1; ...; E_T; E_s]`` (a gate over every
    expert). Level 1 reads ``x = [v_1; ...; v_F]`` in every branch; ``logit_t = tower_t(x_t^L)``; loss
    ``sum_t weight_t * BCE(logit_t, y_t)``. ``num_levels: 1`` is CGC.

    Departures: the experts are MLPs with batch norm / dropout; the paper's loss weighting schedule (a
    per-task weight decayed by epoch) and its per-task sample spaces are not used (every row trains every
    task, fixed ``weight``); defaults (embedding 16, 2 levels, 2 task + 2 shared experts [256, 128], towers
    [64]) are ours.

    Args (config keys): ``tasks``, ``rank_task``, ``embed_dim``, ``num_levels``, ``num_task_experts``,
    ``num_shared_experts``, ``expert_hidden``, ``tower_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``loss``; see ``ple.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="PLE", dataset="ml-1m")   # doctest: +SKIP
    """

    option_help = {**MULTITASK_HELP, **DEEP_HELP,
                   "num_levels": "number of extraction levels (1: a single CGC block)",
                   "num_task_experts": "experts of each task per level",
                   "num_shared_experts": "shared experts per level",
                   "expert_hidden": "hidden layer sizes of each expert MLP (every level)"}

    def build_interaction(self) -> None:
        levels, n_task, n_shared = (int(self.cfg(k)) for k in ("num_levels", "num_task_experts", "num_shared_experts"))
        hidden = list(self.cfg("expert_hidden"))
        if levels < 1 or n_task < 0 or n_shared < 0 or n_task + n_shared < 1 or not hidden:
            raise ConfigError(f"PLE needs num_levels >= 1, num_task_experts, num_shared_experts >= 0 with at least one "
                              f"expert, and a non-empty expert_hidden; got {levels}, {n_task}, {n_shared}, {hidden}.")
        d_in = self.num_fields * self.embed_dim
        self.levels = nn.ModuleList(
            CGCLevel(self.num_tasks, d_in if i == 0 else hidden[-1], hidden, n_task, n_shared, i < levels - 1,
                     self.cfg) for i in range(levels))
        self.towers = Towers(self.num_tasks, hidden[-1], self.cfg("tower_hidden"), self.cfg)

    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.flatten(-2)
        task_in, shared_in = [x] * self.num_tasks, x
        for level in self.levels:
            task_in, shared_in = level(task_in, shared_in)
        return self.towers(task_in)
