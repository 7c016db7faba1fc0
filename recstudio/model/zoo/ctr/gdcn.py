"""GDCN: a gated cross network, stacked with or parallel to an MLP."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, GatedCrossNet, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("GDCN", category="ctr",
                paper="F. Wang, H. Gu, D. Li, T. Lu, P. Zhang, N. Gu. Towards Deeper, Lighter and Interpretable Cross "
                      "Network for CTR Prediction. CIKM 2023.")
class GDCN(FeatureRecommender):
    """Gated Deep Cross Network (Wang et al., CIKM 2023): the gated cross layer
    ``x_{l+1} = x_0 * (W_l x_l + b_l) * sigmoid(W^g_l x_l) + x_l``
    (:class:`~recstudio.model.module.interaction.GatedCrossNet`) over ``x_0 = [v_1; ...; v_F]``;
    ``model_structure: stacked`` (GDCN-S): ``logit = w^T MLP(x_L)``; ``parallel`` (GDCN-P):
    ``logit = w^T [x_L; MLP(x_0)]``. No first-order term.

    Departures from the paper: the field-level dimension optimisation (per-field embedding sizes) is not
    done; batch norm and dropout in the MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early
    stopping on valid AUC. No BARS Frappe setting exists: the defaults are GDCN-P with 3 cross layers and
    BARS' DCN_frappe_x1 MLP settings (embedding 10, MLP [400, 400, 400] + batch norm, dropout 0.2, embedding
    regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``model_structure``, ``cross_layers``, ``mlp_hidden``, ``dropout``,
    ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``,
    ``loss``; see ``gdcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="GDCN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "model_structure": "stacked (GDCN-S: the MLP on the cross output) or parallel (GDCN-P)",
                   "cross_layers": "number of gated cross layers"}

    def build_interaction(self) -> None:
        structure = self.cfg("model_structure")
        if structure not in ("stacked", "parallel"):
            raise ConfigError(f"model_structure must be stacked or parallel, got {structure!r}.")
        self.parallel = structure == "parallel"
        dim = self.num_fields * self.embed_dim
        self.cross = GatedCrossNet(dim, int(self.cfg("cross_layers")))
        self.mlp = mlp_tower(self, dim, out_dim=None)
        self.out = nn.Linear(self.mlp.out_dim + (dim if self.parallel else 0), 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x0 = emb.flatten(-2)
        lead = x0.shape[:-1]
        x0 = x0.reshape(-1, x0.shape[-1])
        h = self.cross(x0)
        h = torch.cat([h, self.mlp(x0)], -1) if self.parallel else self.mlp(h)
        return self.out(h).reshape(lead)
