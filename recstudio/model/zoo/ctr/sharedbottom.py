"""Shared-Bottom: one MLP over the field embeddings shared by every task, a tower per task."""
import torch

from recstudio.model.family.multitask import MULTITASK_HELP, MultiTaskFeatureRecommender, Towers, expert_mlp
from recstudio.model.registry import register_model

DEEP_HELP = {
    "dropout": "dropout after each hidden layer (bottom, experts and towers)",
    "batch_norm": "batch norm before each hidden activation",
    "activation": "activation of the hidden layers (relu, tanh, ...)",
    "tower_hidden": "hidden layer sizes of each task's tower (then a linear output); [] for a linear tower",
}


@register_model("SharedBottom", category="ctr",
                paper="R. Caruana. Multitask Learning. Machine Learning 28(1), 1997 (the hard parameter sharing "
                      "baseline of J. Ma et al., Modeling Task Relationships in Multi-task Learning with "
                      "Multi-gate Mixture-of-Experts, KDD 2018).")
class SharedBottom(MultiTaskFeatureRecommender):
    """Shared-Bottom multi-task ranker (hard parameter sharing, the baseline of Ma et al., KDD 2018):
    ``h = f([v_1; ...; v_F])`` one MLP shared by every task, ``logit_t = tower_t(h)``, trained with
    ``sum_t weight_t * BCE(logit_t, y_t)`` on the rows' labels (``tasks``).

    Departures: none in the structure; batch norm / dropout in the MLPs and the defaults (embedding 16,
    bottom [256, 128], towers [64]) are ours, chosen as MMoE's so that the two compare at similar size.

    Args (config keys): ``tasks``, ``rank_task``, ``embed_dim``, ``bottom_hidden``, ``tower_hidden``,
    ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``loss``; see
    ``sharedbottom.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SharedBottom", dataset="ml-1m")   # doctest: +SKIP
        >>> metrics["auc@like"], metrics["auc@love"]                                 # doctest: +SKIP
    """

    option_help = {**MULTITASK_HELP, **DEEP_HELP,
                   "bottom_hidden": "hidden layer sizes of the bottom MLP shared by the tasks"}

    def build_interaction(self) -> None:
        dims = [self.num_fields * self.embed_dim, *self.cfg("bottom_hidden")]
        self.bottom = expert_mlp(dims, self.cfg)
        self.towers = Towers(self.num_tasks, dims[-1], self.cfg("tower_hidden"), self.cfg)

    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        h = self.bottom(emb.flatten(-2))
        return self.towers([h] * self.num_tasks)
