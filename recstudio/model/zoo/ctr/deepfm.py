"""DeepFM: an FM and an MLP sharing the field embeddings."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.fm import fm_pairwise


@register_model("DeepFM", category="ctr",
                paper="H. Guo, R. Tang, Y. Ye, Z. Li, X. He. DeepFM: A Factorization-Machine based Neural Network "
                      "for CTR Prediction. IJCAI 2017.")
class DeepFM(FeatureRecommender):
    """DeepFM (Guo et al., IJCAI 2017): ``y = w_0 + sum_f w_f + sum_{f<g} <v_f, v_g> + MLP([v_1; ...; v_F])``,
    the FM component and the deep component reading the same field embeddings (no pre-training), trained
    end to end with pointwise binary cross-entropy on click labels.

    Departures from the paper: batch norm before each hidden activation and dropout after it (``batch_norm``,
    ``dropout``), an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC.
    Defaults follow BARS / FuxiCTR DeepFM_frappe_x1_001 (embedding 10, embedding_regularizer 0.05, MLP
    [400, 400, 400] with ReLU and batch norm, dropout 0.2, Adam 1e-3, batch 4096, patience 2).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``deepfm.yaml`` and ``run.py -m DeepFM --help``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DeepFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP,
                   "mlp_hidden": "hidden layer sizes of the deep component",
                   "dropout": "dropout after each hidden layer of the deep component",
                   "batch_norm": "batch norm before each hidden activation",
                   "activation": "activation of the hidden layers (relu, tanh, ...)"}

    def build_interaction(self) -> None:
        dims = [self.num_fields * self.embed_dim, *self.cfg("mlp_hidden"), 1]
        self.mlp = MLP(dims, activation=self.cfg("activation"), dropout=float(self.cfg("dropout")),
                       batch_norm=bool(self.cfg("batch_norm")))

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return fm_pairwise(emb) + self.mlp(emb.flatten(-2)).squeeze(-1)
