"""Wide & Deep: a linear (wide) part and an MLP (deep) part over the field embeddings."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, mlp_tower
from recstudio.model.registry import register_model


@register_model("WideDeep", category="ctr",
                paper="H.-T. Cheng et al. Wide & Deep Learning for Recommender Systems. DLRS @ RecSys 2016.")
class WideDeep(FeatureRecommender):
    """Wide & Deep (Cheng et al., DLRS 2016): ``logit = w_0 + sum_f w_f + MLP([v_1; ...; v_F])``, the wide part
    the base's first-order term over the raw feature values, the deep part an MLP over the concatenated field
    embeddings, trained jointly with pointwise binary cross-entropy.

    Departures from the paper: the wide part has no hand-made cross-product features (as in FuxiCTR's
    WideDeep); one Adam optimiser for both parts instead of FTRL + AdaGrad; batch norm and dropout in the
    MLP; an L2 penalty on the embeddings (``embed_reg``). Defaults follow BARS / FuxiCTR
    WideDeep_frappe_x1_030 (embedding 10, MLP [400, 400, 400] + batch norm, dropout 0.6, embedding
    regularizer 0.1, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``widedeep.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="WideDeep", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP}

    def build_interaction(self) -> None:
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(emb.flatten(-2)).squeeze(-1)
