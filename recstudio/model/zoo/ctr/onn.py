"""ONN: operation-aware (field-aware) embeddings, their pairwise products and an MLP."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, flatten_rows, mlp_tower, pair_indices
from recstudio.model.registry import register_model


@register_model("ONN", category="ctr",
                paper="Y. Yang, B. Xu, S. Shen, F. Shen, J. Zhao. Operation-aware Neural Networks for User Response "
                      "Prediction. Neural Networks 121, 2020.")
class ONN(FeatureRecommender):
    """Operation-aware NN (Yang et al., 2020; NFFM): every feature keeps one ``embed_dim`` vector per field
    (per operation), as in FFM. The MLP reads the copies each field keeps for itself, ``v_{i,i}``, and the
    field-aware inner products ``<v_{i,j}, v_{j,i}>`` of every pair ``i < j``:
    ``logit = w_0 + sum_f w_f + MLP([v_{1,1}; ...; v_{F,F}; (<v_{i,j}, v_{j,i}>)_{i<j}])``. A field's table
    row holds its ``F`` vectors side by side (``embedding_width`` = ``F * embed_dim``).

    Departures from the paper: inner products as the pairwise operation (as FuxiCTR's ONN; the paper also
    allows element-wise products); batch norm and dropout in the MLP, an L2 penalty on the embeddings
    (``embed_reg``), Adam with early stopping on valid AUC. No BARS Frappe setting exists: BARS'
    DNN_frappe_x1 MLP settings (embedding 10, MLP [400, 400, 400] + batch norm, dropout 0.2, embedding
    regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``onn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="ONN", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP, "embed_dim": "size of each of a feature's per-field vectors"}

    def embedding_width(self) -> int:
        return int(self.cfg("embed_dim")) * self.num_fields

    def build_interaction(self) -> None:
        i, j = pair_indices(self.num_fields)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        self.register_buffer("diag", torch.arange(self.num_fields), persistent=False)
        k = int(self.cfg("embed_dim"))
        self.mlp = mlp_tower(self, self.num_fields * k + len(i))

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        v = x.reshape(x.shape[0], self.num_fields, self.num_fields, -1)       # [N, feature field, target field, k]
        own = v[:, self.diag, self.diag].flatten(1)
        products = (v[:, self.pair_i, self.pair_j] * v[:, self.pair_j, self.pair_i]).sum(-1)
        return self.mlp(torch.cat([own, products], -1)).reshape(lead)
