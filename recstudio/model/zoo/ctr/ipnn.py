"""IPNN: an MLP over the field embeddings and their pairwise inner products."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, InnerProduct, flatten_rows, mlp_tower
from recstudio.model.registry import register_model

PNN_PAPER = ("Y. Qu, H. Cai, K. Ren, W. Zhang, Y. Yu, Y. Wen, J. Wang. Product-based Neural Networks for User "
             "Response Prediction. ICDM 2016.")


@register_model("IPNN", category="ctr", paper=PNN_PAPER)
class IPNN(FeatureRecommender):
    """Inner-product PNN (Qu et al., ICDM 2016): the product layer concatenates the linear signal
    ``l_z = [v_1; ...; v_F]`` and the inner products ``l_p = (<v_i, v_j>)_{i<j}``; ``logit = MLP([l_z; l_p])``.
    No first-order term, as in the paper.

    Departures from the paper: the product layer keeps the raw products (FuxiCTR's PNN) instead of the paper's
    learned first-layer weight factorisation ``theta_i theta_j``, which is a linear map of them; dropout and
    optional batch norm in the MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping
    on valid AUC. Defaults follow BARS / FuxiCTR PNN_frappe_x1_020 (IPNN; embedding 10, MLP [400, 400, 400],
    no batch norm, dropout 0.3, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``ipnn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="IPNN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP}

    def product_layer(self) -> nn.Module:
        """The pairwise product ``[N, F, d] -> [N, F (F - 1) / 2]``."""
        return InnerProduct(self.num_fields)

    def build_interaction(self) -> None:
        self.product = self.product_layer()
        pairs = self.num_fields * (self.num_fields - 1) // 2
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim + pairs)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        return self.mlp(torch.cat([x.flatten(1), self.product(x)], -1)).reshape(lead)
