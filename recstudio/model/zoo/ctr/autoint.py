"""AutoInt: stacked multi-head self-attention over the fields."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, FieldSelfAttention, flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("AutoInt", category="ctr",
                paper="W. Song, C. Shi, Z. Xiao, Z. Duan, Y. Xu, M. Zhang, J. Tang. AutoInt: Automatic Feature "
                      "Interaction Learning via Self-Attentive Neural Networks. CIKM 2019.")
class AutoInt(FeatureRecommender):
    """AutoInt (Song et al., CIKM 2019): ``attention_layers`` interacting layers (multi-head self-attention over
    the fields with a residual projection and ReLU,
    :class:`~recstudio.model.module.interaction.FieldSelfAttention`) map the field embeddings to
    ``[F, attention_dim]``; ``logit = b + w^T flatten(.)``. ``mlp_hidden`` non-empty adds an MLP over the
    concatenated embeddings (AutoInt+), ``use_wide`` adds the first-order term.

    Departures from the paper: the options ``use_scale`` (scaled dot products) and ``layer_norm`` (both off by
    default) come from FuxiCTR; an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on
    valid AUC. Defaults follow BARS / FuxiCTR AutoInt_frappe_x1_005 (embedding 10, 6 layers of 4 heads,
    attention_dim 128, residual, no scale, no layer norm, no MLP, no wide part, embedding regularizer 0.05,
    Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``attention_layers``, ``attention_dim``, ``num_heads``, ``use_residual``,
    ``use_scale``, ``layer_norm``, ``use_wide``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``autoint.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="AutoInt", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "attention_layers": "number of interacting (self-attention) layers",
                   "attention_dim": "output size of each interacting layer (split over the heads)",
                   "num_heads": "attention heads per layer",
                   "use_residual": "add the projected input to each layer's output (the paper's residual)",
                   "use_scale": "scale the attention logits by 1/sqrt(head size)",
                   "layer_norm": "layer-normalise each interacting layer's output",
                   "use_wide": "add the first-order term sum_f w_f to the logit",
                   "mlp_hidden": "hidden sizes of the MLP over the concatenated embeddings ([]: none; non-empty: AutoInt+)"}

    @property
    def use_first_order(self) -> bool:
        return bool(self.cfg("use_wide"))

    def build_interaction(self) -> None:
        layers = int(self.cfg("attention_layers"))
        if layers < 1:
            raise ConfigError(f"attention_layers must be >= 1, got {layers}.")
        dims = [self.embed_dim] + [int(self.cfg("attention_dim"))] * layers
        self.attention = nn.Sequential(*[
            FieldSelfAttention(dims[i], dims[i + 1], int(self.cfg("num_heads")), bool(self.cfg("use_residual")),
                               bool(self.cfg("use_scale")), bool(self.cfg("layer_norm"))) for i in range(layers)])
        self.out = nn.Linear(self.num_fields * dims[-1], 1)
        self.mlp = mlp_tower(self, self.num_fields * self.embed_dim) if self.cfg("mlp_hidden") else None

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        out = self.out(self.attention(x).flatten(1)).squeeze(-1)
        if self.mlp is not None:
            out = out + self.mlp(x.flatten(1)).squeeze(-1)
        return out.reshape(lead)
