"""LR: logistic regression over the fields' first-order weights."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.registry import register_model


@register_model("LR", category="ctr",
                paper="M. Richardson, E. Dominowska, R. Ragno. Predicting Clicks: Estimating the Click-Through Rate "
                      "for New Ads. WWW 2007.")
class LR(FeatureRecommender):
    """Logistic regression: ``logit = w_0 + sum_f w_f(x_f)`` with one learned weight per feature value (the
    base's first-order term), trained with pointwise binary cross-entropy on click labels.

    The base builds a ``d``-vector per feature value as well; LR does not read them, so they are frozen
    (``requires_grad=False``) and stay at their initialisation (``embed_dim`` only sizes those unused tables).

    Departures from the paper: mini-batch Adam with early stopping on valid AUC instead of the paper's
    optimiser; one weight per (field, value) as in FuxiCTR's LR. Defaults follow BARS / FuxiCTR
    LR_frappe_x1 (Adam 1e-3, batch 4096, no regularizer).

    Args (config keys): ``embed_dim``, ``embed_reg``, ``feature_fields``, ``label_field``,
    ``label_threshold``, ``loss``; see ``lr.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="LR", dataset="frappe")   # doctest: +SKIP
    """

    option_help = dict(FEATURE_HELP)

    def build_interaction(self) -> None:
        for p in self.embedding.embed.parameters():
            p.requires_grad_(False)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return emb.new_zeros(emb.shape[:-2])
