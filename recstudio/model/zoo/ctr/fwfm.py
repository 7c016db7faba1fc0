"""FwFM: a factorization machine with a learned weight per field pair."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import InnerProduct, flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

LINEAR_TYPES = ("LW", "FiLV")


@register_model("FwFM", category="ctr",
                paper="J. Pan, J. Xu, A. L. Ruiz, W. Zhao, S. Pan, Y. Sun, Q. Lu. Field-weighted Factorization "
                      "Machines for Click-Through Rate Prediction in Display Advertising. WWW 2018.")
class FwFM(FeatureRecommender):
    """Field-weighted FM (Pan et al., WWW 2018): ``logit = w_0 + linear + sum_{i<j} r_ij <v_i, v_j>`` with one
    learned weight ``r_ij`` per field pair. ``linear_type``: ``LW`` (a scalar per feature value, the base's
    first-order term) or ``FiLV`` (``sum_i <v_i, w_i>``, a learned vector per field over the embeddings).

    Departures from the paper: the paper's ``FeLV`` linear term (a second vector per feature value) is not
    offered; Adam with early stopping on valid AUC and an L2 penalty on the embeddings (``embed_reg``). BARS'
    FwFM_frappe_x1_005 uses FeLV with regularizer 5e-6; the defaults here are LW with ``embed_reg`` 5e-6
    (embedding 10, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``linear_type``, ``embed_reg``, ``feature_fields``, ``label_field``,
    ``label_threshold``, ``loss``; see ``fwfm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FwFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP,
                   "linear_type": f"first-order term: LW (a weight per feature value) or FiLV (a vector per field "
                                  f"dotted with its embedding); one of {LINEAR_TYPES}"}

    @property
    def use_first_order(self) -> bool:
        kind = self.cfg("linear_type")
        if kind not in LINEAR_TYPES:
            raise ConfigError(f"linear_type must be one of {LINEAR_TYPES}, got {kind!r}.")
        return kind == "LW"

    def build_interaction(self) -> None:
        self.inner = InnerProduct(self.num_fields)
        self.pair_weight = nn.Linear(self.num_fields * (self.num_fields - 1) // 2, 1, bias=False)
        nn.init.ones_(self.pair_weight.weight)
        self.field_linear = (nn.Linear(self.num_fields * self.embed_dim, 1, bias=False)
                             if not self.use_first_order else None)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        out = self.pair_weight(self.inner(x)).squeeze(-1)
        if self.field_linear is not None:
            out = out + self.field_linear(x.flatten(1)).squeeze(-1)
        return out.reshape(lead)
