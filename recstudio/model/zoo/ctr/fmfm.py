"""FmFM: a factorization machine with a learned matrix (or vector) per field pair."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import OuterProduct, flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

KINDS = {"matrixed": "mat", "vectorized": "vec"}


@register_model("FmFM", category="ctr",
                paper="Y. Sun, J. Pan, A. Zhang, A. Flores. FM^2: Field-matrixed Factorization Machines for "
                      "Recommender Systems. WWW 2021.")
class FmFM(FeatureRecommender):
    """Field-matrixed FM (Sun et al., WWW 2021): ``logit = w_0 + sum_f w_f + sum_{i<j} v_i^T M_ij v_j`` with a
    ``d x d`` matrix per field pair (``field_interaction_type: matrixed``) or a diagonal one
    (``vectorized``: ``sum_k v_ik m_ijk v_jk``), :class:`~recstudio.model.module.interaction.OuterProduct`.

    Departures from the paper: all fields share one embedding size (no per-field dimension search); Adam
    with early stopping on valid AUC and an L2 penalty on the embeddings (``embed_reg``). Defaults follow
    BARS / FuxiCTR FmFM_frappe_x1_004 (vectorized, embedding 10, regularizer 1e-5, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``field_interaction_type``, ``embed_reg``, ``feature_fields``,
    ``label_field``, ``label_threshold``, ``loss``; see ``fmfm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FmFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP,
                   "field_interaction_type": "matrixed (a d x d matrix per field pair) or vectorized (a d-vector per pair)"}

    def build_interaction(self) -> None:
        kind = self.cfg("field_interaction_type")
        if kind not in KINDS:
            raise ConfigError(f"field_interaction_type must be one of {sorted(KINDS)}, got {kind!r}.")
        self.pairs = OuterProduct(self.num_fields, self.embed_dim, KINDS[kind])

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        return self.pairs(x).sum(-1).reshape(lead)
