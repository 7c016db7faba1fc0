"""MMoE: experts shared by every task, mixed per task by a softmax gate."""
import torch
from torch import nn

from recstudio.model.family.multitask import (MULTITASK_HELP, MultiTaskFeatureRecommender, Towers, expert_mlp,
                                              mixture)
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.sharedbottom import DEEP_HELP
from recstudio.utils.errors import ConfigError


@register_model("MMoE", category="ctr",
                paper="J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi. Modeling Task Relationships in Multi-task "
                      "Learning with Multi-gate Mixture-of-Experts. KDD 2018.")
class MMoE(MultiTaskFeatureRecommender):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): ``x = [v_1; ...; v_F]``, experts
    ``f_e(x)`` (e = 1..E, MLPs), per task a gate ``g_t(x) = softmax(W_t x)`` over the experts and
    ``logit_t = tower_t(sum_e g_t(x)_e f_e(x))``; loss ``sum_t weight_t * BCE(logit_t, y_t)``.

    Departures: the experts are MLPs with batch norm / dropout (the paper: one ReLU layer each); the
    defaults (embedding 16, 8 experts [256, 128], towers [64]) are ours.

    Args (config keys): ``tasks``, ``rank_task``, ``embed_dim``, ``num_experts``, ``expert_hidden``,
    ``tower_hidden``, ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``,
    ``loss``; see ``mmoe.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="MMoE", dataset="ml-1m")   # doctest: +SKIP
        >>> metrics["auc@like"], metrics["auc@love"]                         # doctest: +SKIP
    """

    option_help = {**MULTITASK_HELP, **DEEP_HELP,
                   "num_experts": "number of experts shared by the tasks",
                   "expert_hidden": "hidden layer sizes of each expert MLP"}

    def build_interaction(self) -> None:
        n = int(self.cfg("num_experts"))
        if n < 1:
            raise ConfigError(f"num_experts must be >= 1, got {n}.")
        d_in = self.num_fields * self.embed_dim
        hidden = list(self.cfg("expert_hidden"))
        if not hidden:
            raise ConfigError("expert_hidden must list at least one layer size.")
        self.experts = nn.ModuleList(expert_mlp([d_in, *hidden], self.cfg) for _ in range(n))
        self.gates = nn.Linear(d_in, n * self.num_tasks)
        self.towers = Towers(self.num_tasks, hidden[-1], self.cfg("tower_hidden"), self.cfg)

    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.flatten(-2)
        experts = torch.stack([e(x) for e in self.experts], -2)                 # [*, E, h]
        gates = self.gates(x).unflatten(-1, (self.num_tasks, len(self.experts)))  # [*, T, E]
        return self.towers([mixture(experts, gates[..., t, :]) for t in range(self.num_tasks)])
