"""FFM: field-aware factorization machines (a vector per feature and other field)."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows, pair_indices
from recstudio.model.registry import register_model


@register_model("FFM", category="ctr",
                paper="Y. Juan, Y. Zhuang, W.-S. Chin, C.-J. Lin. Field-aware Factorization Machines for CTR "
                      "Prediction. RecSys 2016.")
class FFM(FeatureRecommender):
    """Field-aware FM (Juan et al., RecSys 2016): ``logit = w_0 + sum_f w_f + sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}>``:
    every feature keeps one ``embed_dim`` vector per field, and a pair uses the vector of each feature meant
    for the other's field. A field's table row holds its ``F`` vectors side by side (``embedding_width`` =
    ``F * embed_dim``), so the model costs ``F`` times an FM's memory.

    Departures from the paper: mini-batch Adam with early stopping on valid AUC instead of AdaGrad SGD with
    a fixed epoch count; an L2 penalty on the embeddings (``embed_reg``). Defaults follow BARS / FuxiCTR
    FFM_frappe_x1_007 (embedding 10, regularizer 1e-6, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``embed_reg``, ``feature_fields``, ``label_field``,
    ``label_threshold``, ``loss``; see ``ffm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, "embed_dim": "size of each of a feature's per-field vectors"}

    def embedding_width(self) -> int:
        return int(self.cfg("embed_dim")) * self.num_fields

    def build_interaction(self) -> None:
        i, j = pair_indices(self.num_fields)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        v = x.reshape(x.shape[0], self.num_fields, self.num_fields, -1)       # [N, feature field, target field, k]
        out = (v[:, self.pair_i, self.pair_j] * v[:, self.pair_j, self.pair_i]).sum((-1, -2))
        return out.reshape(lead)
