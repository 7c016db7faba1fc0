"""DCN-V2: a full-rank (or low-rank mixture) cross network combined with MLPs."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, CrossNetV2, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

STRUCTURES = ("crossnet_only", "stacked", "parallel", "stacked_parallel")


@register_model("DCNv2", category="ctr",
                paper="R. Wang et al. DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale "
                      "Learning to Rank Systems. WWW 2021.")
class DCNv2(FeatureRecommender):
    """DCN-V2 (Wang et al., WWW 2021). With ``x_0 = [v_1; ...; v_F]``, the cross network
    ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (``cross_layers`` layers, a full ``D x D`` matrix each, or with
    ``low_rank: r > 0`` the paper's mixture of ``num_experts`` low-rank experts,
    :class:`~recstudio.model.module.interaction.CrossNetV2`) combined with MLPs by ``model_structure``:
    ``crossnet_only`` (``w^T x_L``), ``stacked`` (``w^T MLP_s(x_L)``), ``parallel`` (``w^T [x_L; MLP_p(x_0)]``)
    or ``stacked_parallel`` (``w^T [MLP_s(x_L); MLP_p(x_0)]``). No first-order term, as in the paper.

    Departures from the paper: batch norm and dropout in the MLPs, an L2 penalty on the embeddings
    (``embed_reg``), Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR
    DCNv2_frappe_x1_007 (embedding 10, parallel, 4 full-rank cross layers, parallel MLP [400, 400, 400] +
    batch norm, dropout 0.4, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``model_structure``, ``cross_layers``, ``low_rank``, ``num_experts``,
    ``mlp_hidden`` (the parallel MLP), ``stacked_hidden`` (the stacked MLP), ``dropout``, ``batch_norm``,
    ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``dcnv2.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DCNv2", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "mlp_hidden": "hidden sizes of the parallel MLP over x_0 (parallel, stacked_parallel)",
                   "stacked_hidden": "hidden sizes of the MLP stacked on the cross network (stacked, stacked_parallel)",
                   "model_structure": f"how the cross network and the MLPs combine: one of {STRUCTURES}",
                   "cross_layers": "number of cross layers",
                   "low_rank": "rank of the low-rank mixture of cross experts (0: full-rank D x D cross layers)",
                   "num_experts": "experts of the low-rank mixture (used when low_rank > 0)"}

    def build_interaction(self) -> None:
        structure = self.cfg("model_structure")
        if structure not in STRUCTURES:
            raise ConfigError(f"model_structure must be one of {STRUCTURES}, got {structure!r}.")
        dim = self.num_fields * self.embed_dim
        self.structure = structure
        self.cross = CrossNetV2(dim, int(self.cfg("cross_layers")), int(self.cfg("low_rank")),
                                int(self.cfg("num_experts")))
        self.stacked = (mlp_tower(self, dim, out_dim=None, hidden_key="stacked_hidden")
                        if structure in ("stacked", "stacked_parallel") else None)
        self.parallel = (mlp_tower(self, dim, out_dim=None)
                         if structure in ("parallel", "stacked_parallel") else None)
        final = self.stacked.out_dim if self.stacked is not None else dim
        final += self.parallel.out_dim if self.parallel is not None else 0
        self.out = nn.Linear(final, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x0 = emb.flatten(-2)
        lead = x0.shape[:-1]
        x0 = x0.reshape(-1, x0.shape[-1])
        h = self.cross(x0)
        if self.stacked is not None:
            h = self.stacked(h)
        if self.parallel is not None:
            h = torch.cat([h, self.parallel(x0)], -1)
        return self.out(h).reshape(lead)
