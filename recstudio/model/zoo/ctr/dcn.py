"""DCN: a cross network and an MLP in parallel over the concatenated field embeddings."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, CrossNet, mlp_tower
from recstudio.model.registry import register_model


@register_model("DCN", category="ctr",
                paper="R. Wang, B. Fu, G. Fu, M. Wang. Deep & Cross Network for Ad Click Predictions. ADKDD 2017.")
class DCN(FeatureRecommender):
    """Deep & Cross Network (Wang et al., ADKDD 2017). With ``x_0 = [v_1; ...; v_F]`` (``D = F d``), the cross
    network ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l`` (``cross_layers`` layers,
    :class:`~recstudio.model.module.interaction.CrossNet`) and the deep network ``h = MLP(x_0)`` run in
    parallel; ``logit = w^T [x_L; h] + b``. No first-order term (``use_first_order = False``), as in the
    paper; ``mlp_hidden: []`` gives the cross network alone.

    Departures from the paper: batch norm and dropout in the MLP, an L2 penalty on the embeddings
    (``embed_reg``), Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR DCN_frappe_x1_013
    (embedding 10, 3 cross layers, MLP [400, 400, 400] + batch norm, dropout 0.2, embedding regularizer 0.05,
    Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``cross_layers``, ``mlp_hidden``, ``dropout``, ``batch_norm``,
    ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``dcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DCN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP, "cross_layers": "number of cross layers"}

    def build_interaction(self) -> None:
        dim = self.num_fields * self.embed_dim
        self.cross = CrossNet(dim, int(self.cfg("cross_layers")))
        self.mlp = mlp_tower(self, dim, out_dim=None) if self.cfg("mlp_hidden") else None
        self.out = nn.Linear(dim + (self.mlp.out_dim if self.mlp is not None else 0), 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x0 = emb.flatten(-2)
        lead = x0.shape[:-1]
        x0 = x0.reshape(-1, x0.shape[-1])
        parts = [self.cross(x0)] + ([self.mlp(x0)] if self.mlp is not None else [])
        return self.out(torch.cat(parts, -1)).reshape(lead)
