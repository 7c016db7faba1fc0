"""xDeepFM: a linear part, a compressed interaction network (CIN) and an MLP over the field embeddings."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import CIN, MLP_HELP, flatten_rows, mlp_tower
from recstudio.model.registry import register_model


@register_model("xDeepFM", category="ctr",
                paper="J. Lian, X. Zhou, F. Zhang, Z. Chen, X. Xie, G. Sun. xDeepFM: Combining Explicit and Implicit "
                      "Feature Interactions for Recommender Systems. KDD 2018.")
class xDeepFM(FeatureRecommender):
    """xDeepFM (Lian et al., KDD 2018): ``logit = w_0 + sum_f w_f + w_c^T p^+ + MLP([v_1; ...; v_F])``, where
    ``p^+`` concatenates the sum-pooled feature maps of every layer of the compressed interaction network
    (``X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j)``,
    :class:`~recstudio.model.module.interaction.CIN`, ``cin_layer_units`` maps per layer).
    ``mlp_hidden: []`` leaves the MLP out (the CIN-only model).

    Departures from the paper: identity activation and no split-half in the CIN (as FuxiCTR), batch norm and
    dropout in the MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid
    AUC. Defaults follow BARS / FuxiCTR xDeepFM_frappe_x1_005 (embedding 10, CIN [64], MLP [400, 400, 400] +
    batch norm, dropout 0.2, embedding regularizer 0.1, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``cin_layer_units``, ``mlp_hidden``, ``dropout``, ``batch_norm``,
    ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``xdeepfm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="xDeepFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "cin_layer_units": "feature maps of each CIN layer",
                   "mlp_hidden": "hidden layer sizes of the MLP ([]: no MLP, the CIN and linear parts only)"}

    def build_interaction(self) -> None:
        self.cin = CIN(self.num_fields, self.embed_dim, self.cfg("cin_layer_units"))
        self.cin_out = nn.Linear(self.cin.out_dim, 1)
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim) if self.cfg("mlp_hidden") else None

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        out = self.cin_out(self.cin(x)).squeeze(-1)
        if self.mlp is not None:
            out = out + self.mlp(x.flatten(1)).squeeze(-1)
        return out.reshape(lead)
