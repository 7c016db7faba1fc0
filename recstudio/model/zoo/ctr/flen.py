"""FLEN: field-wise bi-interaction between and within field groups (user, item, context), plus an MLP."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, flatten_rows, mlp_tower, pair_indices
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.nfm import bi_interaction


@register_model("FLEN", category="ctr",
                paper="W. Chen, L. Zhan, Y. Ci, M. Yang, C. Lin, D. Liu. FLEN: Leveraging Field for Scalable CTR "
                      "Prediction. DLP-KDD 2020.")
class FLEN(FeatureRecommender):
    """FLEN (Chen et al., 2020): the fields fall into groups by owner (the user's fields, the item's fields,
    the context fields). The field-wise bi-interaction has an inter-group part
    ``h_MF = sum_{m<n} r_mn (e_m * e_n)`` over the group sums ``e_m = sum_{f in m} v_f`` and an intra-group
    part ``h_FM = sum_m r_m sum_{i<j in m} v_i * v_j``; with the MLP ``h_D = MLP([v_1; ...; v_F])``,
    ``logit = w_0 + sum_f w_f + w^T [h_MF + h_FM; h_D]``.

    Departures from the paper: the groups are the base's owners (user, item, context; the paper lets the
    practitioner define them); no dice-factor dropout between the MF and FM parts; batch norm and dropout in
    the MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC. No BARS
    Frappe setting exists: BARS' DNN_frappe_x1 MLP settings (embedding 10, MLP [400, 400, 400] + batch norm,
    dropout 0.2, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``flen.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FLEN", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP}

    def build_interaction(self) -> None:
        owners = [self.field_by_key[k].owner for k in self.used_fields]
        groups = list(dict.fromkeys(owners))
        self.group_members = [[i for i, o in enumerate(owners) if o == g] for g in groups]
        i, j = pair_indices(len(groups))
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        self.r_mf = nn.Parameter(torch.ones(len(i))) if len(i) else None
        self.r_fm = nn.Parameter(torch.ones(len(groups)))
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim, out_dim=None)
        self.out = nn.Linear(self.embed_dim + self.mlp.out_dim, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        parts = [x[:, m] for m in self.group_members]
        h = sum(r * bi_interaction(p) for r, p in zip(self.r_fm, parts))
        if self.r_mf is not None:
            sums = torch.stack([p.sum(1) for p in parts], 1)                 # [N, M, d]
            h = h + (self.r_mf[:, None] * sums[:, self.pair_i] * sums[:, self.pair_j]).sum(1)
        return self.out(torch.cat([h, self.mlp(x.flatten(1))], -1)).reshape(lead)
