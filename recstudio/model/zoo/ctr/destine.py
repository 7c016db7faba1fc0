"""DESTINE: stacked disentangled self-attention over the fields."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, DisentangledSelfAttention, flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("DESTINE", category="ctr",
                paper="Y. Xu, Y. Zhu, F. Yu, Q. Liu, S. Wu. Disentangled Self-Attentive Neural Networks for "
                      "Click-Through Rate Prediction. CIKM 2021.")
class DESTINE(FeatureRecommender):
    """DESTINE (Xu et al., CIKM 2021): ``attention_layers`` disentangled self-attention layers over the fields
    (weights = whitened pairwise term + unary term,
    :class:`~recstudio.model.module.interaction.DisentangledSelfAttention`), a residual projection at each
    layer (``residual_mode: each_layer``) or once after the last (``last_layer``);
    ``logit = b + w^T flatten(.) [+ MLP([v_1; ...; v_F])] [+ sum_f w_f]`` (``mlp_hidden`` non-empty,
    ``use_wide``).

    Departures from the paper: the MLP and wide parts are options (as in FuxiCTR); an L2 penalty on the
    embeddings (``embed_reg``), Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR
    DESTINE_frappe_x1_018 (embedding 10, 4 layers, 1 head, attention_dim 128, scaled, residual each layer, MLP
    [400, 400, 400] + batch norm, dropout 0.2, no wide, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``attention_layers``, ``attention_dim``, ``num_heads``,
    ``attention_dropout``, ``use_scale``, ``relu_before_att``, ``residual_mode``, ``use_wide``,
    ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``,
    ``label_field``, ``label_threshold``, ``loss``; see ``destine.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DESTINE", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "attention_layers": "number of disentangled self-attention layers",
                   "attention_dim": "output size of each attention layer (split over the heads)",
                   "num_heads": "attention heads per layer",
                   "attention_dropout": "dropout on the attention weights",
                   "use_scale": "scale the pairwise logits by 1/sqrt(head size)",
                   "relu_before_att": "apply ReLU to the queries, keys and values",
                   "residual_mode": "each_layer (a residual projection in every layer), last_layer (one after "
                                    "the stack) or none",
                   "use_wide": "add the first-order term sum_f w_f",
                   "mlp_hidden": "hidden sizes of the MLP over the concatenated embeddings ([]: none)"}

    @property
    def use_first_order(self) -> bool:
        return bool(self.cfg("use_wide"))

    def build_interaction(self) -> None:
        layers, mode = int(self.cfg("attention_layers")), self.cfg("residual_mode")
        if layers < 1:
            raise ConfigError(f"attention_layers must be >= 1, got {layers}.")
        if mode not in ("each_layer", "last_layer", "none"):
            raise ConfigError(f"residual_mode must be each_layer, last_layer or none, got {mode!r}.")
        att = int(self.cfg("attention_dim"))
        dims = [self.embed_dim] + [att] * layers
        self.attention = nn.Sequential(*[
            DisentangledSelfAttention(dims[i], att, int(self.cfg("num_heads")), mode == "each_layer",
                                      bool(self.cfg("use_scale")), bool(self.cfg("relu_before_att")),
                                      float(self.cfg("attention_dropout"))) for i in range(layers)])
        self.last_res = nn.Linear(self.embed_dim, att) if mode == "last_layer" else None
        self.out = nn.Linear(self.num_fields * att, 1)
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim) if self.cfg("mlp_hidden") else None

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        h = self.attention(x)
        if self.last_res is not None:
            h = h + self.last_res(x)
        out = self.out(h.flatten(1)).squeeze(-1)
        if self.mlp is not None:
            out = out + self.mlp(x.flatten(1)).squeeze(-1)
        return out.reshape(lead)
