"""AFM: attention-weighted pooling of the pairwise element-wise products of the field embeddings."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows, pair_indices
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("AFM", category="ctr",
                paper="J. Xiao, H. Ye, X. He, H. Zhang, F. Wu, T.-S. Chua. Attentional Factorization Machines: "
                      "Learning the Weight of Feature Interactions via Attention Networks. IJCAI 2017.")
class AFM(FeatureRecommender):
    """Attentional FM (Xiao et al., IJCAI 2017): ``logit = w_0 + sum_f w_f + p^T sum_{i<j} a_ij (v_i * v_j)``
    with ``a_ij = softmax_{ij}(h^T ReLU(W (v_i * v_j) + b))`` (``attention_dim`` hidden units);
    ``use_attention: false`` gives uniform weights ``a_ij = 1 / #pairs``.

    Departures from the paper: dropout on the attention weights and on the pooled vector
    (``attention_dropout: [p1, p2]``, as FuxiCTR), an L2 penalty on the embeddings (``embed_reg``) instead of
    one on ``W``, Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR AFM_frappe_x1_011
    (embedding 10, attention_dim 128, attention dropout [0.1, 0.1], embedding regularizer 1e-5, Adam 1e-3,
    batch 4096).

    Args (config keys): ``embed_dim``, ``attention_dim``, ``attention_dropout``, ``use_attention``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``afm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="AFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP,
                   "attention_dim": "hidden size of the attention network",
                   "attention_dropout": "[p1, p2]: dropout on the attention weights and on the pooled vector",
                   "use_attention": "weight the pairs by attention (false: their mean)"}

    def build_interaction(self) -> None:
        i, j = pair_indices(self.num_fields)
        self.register_buffer("pair_i", i, persistent=False)
        self.register_buffer("pair_j", j, persistent=False)
        drops = [float(p) for p in self.cfg("attention_dropout")]
        if len(drops) != 2:
            raise ConfigError(f"attention_dropout must be [p_weights, p_pooled], got {drops}.")
        self.use_attention = bool(self.cfg("use_attention"))
        if self.use_attention:
            self.attention = nn.Sequential(nn.Linear(self.embed_dim, int(self.cfg("attention_dim"))), nn.ReLU(),
                                           nn.Linear(int(self.cfg("attention_dim")), 1, bias=False))
        self.drop_weights, self.drop_pooled = nn.Dropout(drops[0]), nn.Dropout(drops[1])
        self.p = nn.Linear(self.embed_dim, 1, bias=False)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        pairs = x[:, self.pair_i] * x[:, self.pair_j]                       # [N, P, d]
        if self.use_attention:
            weights = self.drop_weights(torch.softmax(self.attention(pairs), 1))
            pooled = (weights * pairs).sum(1)
        else:
            pooled = pairs.mean(1)
        return self.p(self.drop_pooled(pooled)).reshape(lead)
