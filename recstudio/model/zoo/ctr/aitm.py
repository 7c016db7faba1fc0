"""AITM: adaptive information transfer from each task to the next, with a behavioural expectation calibrator."""
import math

import torch
from torch import nn

from recstudio.model.family.multitask import MULTITASK_HELP, MultiTaskFeatureRecommender, expert_mlp
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.sharedbottom import DEEP_HELP
from recstudio.utils.errors import ConfigError


class AIT(nn.Module):
    """Adaptive Information Transfer: attention over ``u in {p_{t-1}, q_t}``,
    ``z_t = sum_u softmax_u(<h2(u), h3(u)> / sqrt(k)) h1(u)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.h1, self.h2, self.h3 = (nn.Linear(dim, dim) for _ in range(3))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, transferred: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        u = torch.stack([transferred, own], -2)                         # [*, 2, k]
        w = torch.softmax((self.h2(u) * self.h3(u)).sum(-1) * self.scale, -1)
        return (w.unsqueeze(-1) * self.h1(u)).sum(-2)


@register_model("AITM", category="ctr",
                paper="D. Xi, Z. Chen, P. Yan, Y. Zhang, Y. Zhu, F. Zhuang, Y. Chen. Modeling the Sequential "
                      "Dependence among Audience Multi-step Conversions with Multi-task Learning in Targeted "
                      "Display Advertising. KDD 2021.")
class AITM(MultiTaskFeatureRecommender):
    """Adaptive Information Transfer Multi-task (Xi et al., KDD 2021) for sequentially dependent tasks
    (``tasks`` in the order of the conversion steps, e.g. click -> purchase). Every task t has a tower
    ``q_t = f_t([v_1; ...; v_F])`` over the shared embeddings; task 1 uses ``z_1 = q_1``, and task t > 1
    mixes what the previous task passes on, ``p_{t-1} = g_t(z_{t-1})`` (a ReLU layer), with its own
    ``q_t`` by the attention of :class:`AIT`; ``logit_t = w_t^T z_t + b_t``. The loss is
    ``sum_t weight_t * BCE(logit_t, y_t)`` plus the behavioural expectation calibrator
    ``alpha * sum_{t>1} mean(max(sigmoid(logit_t) - sigmoid(logit_{t-1}), 0))`` (a later step should not be
    likelier than an earlier one; ``calibrator_weight`` is alpha).

    Departures: the calibrator is averaged over the batch's rows (the paper's formula is a sum over
    samples), which makes ``alpha`` independent of the batch size; batch norm optional in the towers.
    Defaults follow the authors' code as we recall it (towers [128, 64, 32], dropout 0.1 after the
    information layer, alpha 0.6); the embedding size 16 is ours.

    Args (config keys): ``tasks``, ``rank_task``, ``embed_dim``, ``tower_hidden``, ``calibrator_weight``,
    ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``loss``; see
    ``aitm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="AITM", dataset="ml-1m")   # doctest: +SKIP
    """

    option_help = {**MULTITASK_HELP, **DEEP_HELP,
                   "tower_hidden": "hidden layer sizes of each task's tower; the last size is the width k of the "
                                   "transferred information and of the attention",
                   "calibrator_weight": "alpha of the behavioural expectation calibrator (0: none)"}

    def build_interaction(self) -> None:
        hidden = list(self.cfg("tower_hidden"))
        if not hidden:
            raise ConfigError("AITM: tower_hidden must list at least one layer size (the last is the width k).")
        if float(self.cfg("calibrator_weight")) < 0:
            raise ConfigError(f"calibrator_weight must be >= 0, got {self.cfg('calibrator_weight')}.")
        d_in, k, t = self.num_fields * self.embed_dim, int(hidden[-1]), self.num_tasks
        self.towers = nn.ModuleList(expert_mlp([d_in, *hidden], self.cfg) for _ in range(t))
        self.info = nn.ModuleList(nn.Sequential(nn.Linear(k, k), nn.ReLU(), nn.Dropout(float(self.cfg("dropout"))))
                                  for _ in range(t - 1))
        self.ait = nn.ModuleList(AIT(k) for _ in range(t - 1))
        self.heads = nn.ModuleList(nn.Linear(k, 1) for _ in range(t))

    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.flatten(-2)
        z = self.towers[0](x)
        logits = [self.heads[0](z).squeeze(-1)]
        for t in range(1, self.num_tasks):
            z = self.ait[t - 1](self.info[t - 1](z), self.towers[t](x))
            logits.append(self.heads[t](z).squeeze(-1))
        return torch.stack(logits, -1)

    def extra_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        alpha = float(self.cfg("calibrator_weight"))
        p = torch.sigmoid(logits)
        return alpha * (p[:, 1:] - p[:, :-1]).clamp(min=0).mean(0).sum()
