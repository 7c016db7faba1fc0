"""FiBiNET: squeeze-excitation re-weighting and bilinear interactions of the field embeddings, then an MLP."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, BilinearInteraction, SENet, flatten_rows, mlp_tower
from recstudio.model.registry import register_model


@register_model("FiBiNET", category="ctr",
                paper="T. Huang, Z. Zhang, J. Zhang. FiBiNET: Combining Feature Importance and Bilinear feature "
                      "Interaction for Click-Through Rate Prediction. RecSys 2019.")
class FiBiNET(FeatureRecommender):
    """FiBiNET (Huang et al., RecSys 2019): the SENET layer re-weights the fields, ``u_f = a_f v_f`` with
    ``a = ReLU(W_2 ReLU(W_1 z))``, ``z_f = mean_k v_fk`` (:class:`~recstudio.model.module.interaction.SENet`,
    ``reduction_ratio``); two bilinear layers give ``p_ij = (v_i W) * v_j`` and ``q_ij = (u_i W') * u_j``
    (``bilinear_type``: one ``W`` for all fields, one per field, or one per pair); ``logit = w_0 + sum_f w_f
    + MLP([p; q])``.

    Departures from the paper: batch norm and dropout in the MLP, an L2 penalty on the embeddings
    (``embed_reg``), Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR
    FiBiNET_frappe_x1_002 (embedding 10, field_all, reduction ratio 2, MLP [400, 400, 400] + batch norm,
    dropout 0.3, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``bilinear_type``, ``reduction_ratio``, ``mlp_hidden``, ``dropout``,
    ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``,
    ``loss``; see ``fibinet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FiBiNET", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "bilinear_type": "field_all (one W), field_each (one W per field) or field_interaction (one per pair)",
                   "reduction_ratio": "SENET squeeze ratio: the excitation's hidden size is num_fields / reduction_ratio"}

    def build_interaction(self) -> None:
        kind = self.cfg("bilinear_type")
        self.senet = SENet(self.num_fields, float(self.cfg("reduction_ratio")))
        self.bilinear_p = BilinearInteraction(self.num_fields, self.embed_dim, kind)
        self.bilinear_q = BilinearInteraction(self.num_fields, self.embed_dim, kind)
        self.mlp = mlp_tower(self, self.num_fields * (self.num_fields - 1) * self.embed_dim)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        both = torch.cat([self.bilinear_p(x), self.bilinear_q(self.senet(x))], 1)
        return self.mlp(both.flatten(1)).reshape(lead)
