"""EDCN: a cross network and an MLP exchanging information layer by layer (bridge and regulation modules)."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

BRIDGES = ("hadamard_product", "pointwise_addition", "concatenation")


class Regulation(nn.Module):
    """Field-wise gates ``softmax(g / tau)`` (one per field, repeated over its ``d`` entries) giving the cross
    and the deep input of a layer, each optionally batch-normed."""

    def __init__(self, num_fields: int, dim: int, tau: float, use_regulation: bool, batch_norm: bool):
        super().__init__()
        self.d, self.tau, self.use = dim, float(tau), bool(use_regulation)
        if self.use:
            self.g_cross = nn.Parameter(torch.ones(num_fields))
            self.g_deep = nn.Parameter(torch.ones(num_fields))
        self.bn_cross = nn.BatchNorm1d(num_fields * dim) if batch_norm else nn.Identity()
        self.bn_deep = nn.BatchNorm1d(num_fields * dim) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor):
        if not self.use:
            return self.bn_cross(x), self.bn_deep(x)
        gate = lambda g: torch.softmax(g / self.tau, 0).repeat_interleave(self.d)
        return self.bn_cross(x * gate(self.g_cross)), self.bn_deep(x * gate(self.g_deep))


class Bridge(nn.Module):
    """Fuses the cross and deep outputs of a layer: ``*``, ``+`` or ``ReLU(W [c; h])``."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in BRIDGES:
            raise ConfigError(f"bridge_type must be one of {BRIDGES}, got {kind!r}.")
        self.kind = kind
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU()) if kind == "concatenation" else None

    def forward(self, c: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "hadamard_product":
            return c * h
        if self.kind == "pointwise_addition":
            return c + h
        return self.proj(torch.cat([c, h], -1))


@register_model("EDCN", category="ctr",
                paper="B. Chen, Y. Wang, Z. Liu, R. Tang, W. Guo, H. Zheng, W. Yao, M. Zhang, X. He. Enhancing "
                      "Explicit and Implicit Feature Interactions via Information Sharing for Parallel Deep CTR "
                      "Models. CIKM 2021.")
class EDCN(FeatureRecommender):
    """EDCN (Chen et al., CIKM 2021): a parallel DCN whose cross and deep towers share information at every
    layer ``l``: a regulation module splits the layer input into field-gated copies
    ``c_l, h_l = (softmax(g^c / tau), softmax(g^d / tau)) * input`` (the input is the embeddings ``x_0`` at
    the first layer, the previous bridge output after), the cross layer ``c'_l = x_0 (c_l^T w_l) + b_l + c_l``
    (with ``x_0`` the first layer's cross input), the deep layer ``h'_l = ReLU(BN(W_l h_l + b))`` (width
    ``F d``), and the bridge ``b_l = c'_l * h'_l`` (``bridge_type``); ``logit = w^T [c'_L; h'_L; b_L] + b``.
    No first-order term.

    Departures from the paper: batch norm after the regulation and in the deep layers, dropout in the deep
    layers, an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC (as
    FuxiCTR). Defaults follow BARS / FuxiCTR EDCN_frappe_x1_006 (embedding 10, 3 layers, Hadamard bridge,
    regulation with temperature 5, batch norm, dropout 0.3, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``cross_layers``, ``bridge_type``, ``use_regulation``, ``temperature``,
    ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``,
    ``label_threshold``, ``loss``; see ``edcn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="EDCN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "cross_layers": "number of layers (each a cross layer, a deep layer, a bridge and a regulation)",
                   "bridge_type": f"how a layer's cross and deep outputs are fused: one of {BRIDGES}",
                   "use_regulation": "gate the fields of each layer's input (false: both towers read it as is)",
                   "temperature": "softmax temperature of the regulation gates",
                   "dropout": "dropout after each deep layer",
                   "batch_norm": "batch norm after each regulation and in each deep layer",
                   "activation": "activation of the deep layers"}

    def build_interaction(self) -> None:
        n = int(self.cfg("cross_layers"))
        if n < 1:
            raise ConfigError(f"cross_layers must be >= 1, got {n}.")
        dim = self.num_fields * self.embed_dim
        bn = bool(self.cfg("batch_norm"))
        self.regulation = nn.ModuleList(Regulation(self.num_fields, self.embed_dim, float(self.cfg("temperature")),
                                                   bool(self.cfg("use_regulation")), bn) for _ in range(n))
        self.cross_w = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(n))
        self.cross_b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(n))
        self.deep = nn.ModuleList(MLP([dim, dim], activation=self.cfg("activation"), dropout=float(self.cfg("dropout")),
                                      batch_norm=bn, last_activation=True) for _ in range(n))
        self.bridge = nn.ModuleList(Bridge(dim, self.cfg("bridge_type")) for _ in range(n))
        self.out = nn.Linear(3 * dim, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x = emb.flatten(-2)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        c, h = self.regulation[0](x)
        c0, b = c, None
        for l in range(len(self.deep)):
            if l > 0:
                c, h = self.regulation[l](b)
            c = c0 * self.cross_w[l](c) + self.cross_b[l] + c
            h = self.deep[l](h)
            b = self.bridge[l](c, h)
        return self.out(torch.cat([c, h, b], -1)).reshape(lead)
