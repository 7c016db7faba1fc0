"""Deep Crossing: residual units over the concatenated field embeddings."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class ResidualUnit(nn.Module):
    """``act(BN(x + W_2 act(W_1 x)))`` then dropout (no ``x +`` when ``residual`` is False)."""

    def __init__(self, dim: int, hidden: int, activation: str, dropout: float, batch_norm: bool, residual: bool):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(dim, hidden), get_activation(activation), nn.Linear(hidden, dim))
        self.norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        self.act = get_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner(x)
        return self.drop(self.act(self.norm(h + x if self.residual else h)))


@register_model("DeepCrossing", category="ctr",
                paper="Y. Shan, T. R. Hoens, J. Jiao, H. Wang, D. Yu, J. C. Mao. Deep Crossing: Web-Scale Modeling "
                      "without Manually Crafted Combinatorial Features. KDD 2016.")
class DeepCrossing(FeatureRecommender):
    """Deep Crossing (Shan et al., KDD 2016): the stacked field embeddings ``x_0 = [v_1; ...; v_F]`` go through
    residual units ``x_{l+1} = ReLU(x_l + W_2 ReLU(W_1 x_l))`` (one per entry of ``residual_units``, its
    hidden size) and a scoring layer ``logit = w^T x_L + b``. No first-order term, as in the paper.

    Departures from the paper: optional batch norm and dropout in each unit (FuxiCTR's ResidualBlock), an L2
    penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC instead of the paper's
    log loss with SGD. No BARS Frappe setting exists: the defaults take BARS' DNN_frappe_x1 ones (embedding
    10, three units of 400, batch norm, dropout 0.2, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``residual_units``, ``use_residual``, ``dropout``, ``batch_norm``,
    ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``deepcrossing.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="DeepCrossing", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "residual_units": "hidden size of each residual unit (their number is the depth)",
                   "use_residual": "add the unit's input to its output (false: a plain MLP of the same shape)",
                   "dropout": "dropout after each residual unit",
                   "batch_norm": "batch norm before each unit's output activation",
                   "activation": "activation inside and after each unit (relu, tanh, ...)"}

    def build_interaction(self) -> None:
        dim = self.num_fields * self.embed_dim
        units = [int(u) for u in self.cfg("residual_units") or []]
        if not units or min(units) < 1:
            raise ConfigError(f"residual_units must list positive hidden sizes, got {units}.")
        self.units = nn.Sequential(*[ResidualUnit(dim, u, self.cfg("activation"), float(self.cfg("dropout")),
                                                  bool(self.cfg("batch_norm")), bool(self.cfg("use_residual")))
                                     for u in units])
        self.out = nn.Linear(dim, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.flatten(-2)
        lead = x.shape[:-1]
        return self.out(self.units(x.reshape(-1, x.shape[-1]))).reshape(lead)
