"""FINT: field-aware interaction layers (each field re-weighted by a learned mix of all fields)."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("FINT", category="ctr",
                paper="Z. Zhao, S. Yang, G. Liu, D. Feng, K. Xu. FINT: Field-aware INTeraction Neural Network For "
                      "CTR Prediction. ICASSP 2022.")
class FINT(FeatureRecommender):
    """FINT (Zhao et al., ICASSP 2022): ``interaction_layers`` field-aware interaction layers
    ``v^l_i = v^{l-1}_i * (sum_j W^l_ij v^0_j) + u^l_i v^{l-1}_i`` (``W^l`` an ``F x F`` field-mixing matrix,
    ``u^l`` a per-field residual weight) keep each field's vector while raising its interaction order by one
    per layer; ``logit = w_0 + sum_f w_f + MLP([v^L_1; ...; v^L_F])``.

    Departures from the paper: the first-order term is the base's; batch norm and dropout in the MLP, an L2
    penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC. No BARS Frappe setting
    exists: 3 layers (the paper's choice) with BARS' DNN_frappe_x1 MLP settings (embedding 10, MLP
    [400, 400, 400] + batch norm, dropout 0.2, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``interaction_layers``, ``mlp_hidden``, ``dropout``, ``batch_norm``,
    ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``fint.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FINT", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP, "interaction_layers": "number of field-aware interaction layers"}

    def build_interaction(self) -> None:
        layers = int(self.cfg("interaction_layers"))
        if layers < 1:
            raise ConfigError(f"interaction_layers must be >= 1, got {layers}.")
        F_ = self.num_fields
        self.mix = nn.ParameterList(nn.Parameter(nn.init.xavier_uniform_(torch.empty(F_, F_))) for _ in range(layers))
        self.res = nn.ParameterList(nn.Parameter(torch.ones(F_, 1)) for _ in range(layers))
        self.mlp = mlp_tower(self, F_ * self.embed_dim)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x0, lead = flatten_rows(emb)
        x = x0
        for mix, res in zip(self.mix, self.res):
            x = x * torch.einsum("ij,njd->nid", mix, x0) + res * x
        return self.mlp(x.flatten(1)).reshape(lead)
