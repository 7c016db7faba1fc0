"""SAM: self-attentive (dot-product) feature interaction modules over the fields."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

TYPES = ("SAM2A", "SAM2E", "SAM3A", "SAM3E")


class SAMLayer(nn.Module):
    """One SAM interaction. ``S = E E^T`` (2-way) or ``E (K E)^T`` (3-way); ``A`` variants weight the pairs by a
    learned ``F x F x d`` tensor ``W``, ``E`` variants by the element-wise products ``e_i * e_j``; 3-way layers
    sum over ``j`` (``[N, F, d]``, plus ``Q e_i`` with ``residual``), 2-way ones keep every pair
    (``[N, F, F, d]``)."""

    def __init__(self, kind: str, num_fields: int, dim: int, residual: bool, dropout: float):
        super().__init__()
        self.kind = kind
        self.W = nn.Parameter(torch.ones(num_fields, num_fields, dim)) if kind.endswith("A") else None
        three = kind.startswith("SAM3")
        self.K = nn.Linear(dim, dim, bias=False) if three else None
        self.Q = nn.Linear(dim, dim, bias=False) if three and residual else None
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        s = e @ (self.K(e) if self.K is not None else e).transpose(1, 2)           # [N, F, F]
        weight = self.W if self.W is not None else torch.einsum("nid,njd->nijd", e, e)
        out = s.unsqueeze(-1) * weight                                               # [N, F, F, d]
        if self.K is not None:
            out = out.sum(2)
            if self.Q is not None:
                out = out + self.Q(e)
        return self.drop(out)


@register_model("SAM", category="ctr",
                paper="Y. Cheng, Y. Xue. Looking at CTR Prediction Again: Is Attention All You Need? SIGIR 2021.")
class SAM(FeatureRecommender):
    """SAM (Cheng & Xue, SIGIR 2021): dot-product attention as the interaction function. ``SAM2A`` /
    ``SAM2E``: one layer scoring every field pair, ``S_ij = <e_i, e_j>``, times a learned pair tensor
    ``W_ij`` (A) or the element-wise product ``e_i * e_j`` (E); ``SAM3A`` / ``SAM3E``: ``num_interaction_layers``
    layers ``e'_i = sum_j <e_i, K e_j> W_ij (or e_i * e_j) [+ Q e_i]``. ``aggregation: concat`` scores the
    flattened output linearly, ``weighted_pooling`` a learned weighted sum over the fields (pairs).
    No first-order term.

    Departures from the paper: as FuxiCTR's SAM; an L2 penalty on the embeddings (``embed_reg``), Adam with
    early stopping on valid AUC. Defaults follow BARS / FuxiCTR SAM_frappe_x1_005 (SAM3A, 4 layers, concat,
    residual, dropout 0.2, embedding 10, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``interaction_type``, ``num_interaction_layers``, ``aggregation``,
    ``use_residual``, ``dropout``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``,
    ``loss``; see ``sam.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SAM", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "interaction_type": f"one of {TYPES}: 2-way (one pairwise layer) or 3-way (stacked), learned "
                                       "pair weights (A) or element-wise products (E)",
                   "num_interaction_layers": "number of layers of the 3-way types (the 2-way types have one)",
                   "aggregation": "concat (linear on the flattened output) or weighted_pooling (learned weighted sum)",
                   "use_residual": "add Q e_i in each 3-way layer",
                   "dropout": "dropout after each interaction layer"}

    def build_interaction(self) -> None:
        kind, agg = self.cfg("interaction_type"), self.cfg("aggregation")
        if kind not in TYPES:
            raise ConfigError(f"interaction_type must be one of {TYPES}, got {kind!r}.")
        if agg not in ("concat", "weighted_pooling"):
            raise ConfigError(f"aggregation must be concat or weighted_pooling, got {agg!r}.")
        layers = int(self.cfg("num_interaction_layers")) if kind.startswith("SAM3") else 1
        if layers < 1:
            raise ConfigError(f"num_interaction_layers must be >= 1, got {layers}.")
        F_, d = self.num_fields, self.embed_dim
        self.layers = nn.ModuleList(SAMLayer(kind, F_, d, bool(self.cfg("use_residual")), float(self.cfg("dropout")))
                                    for _ in range(layers))
        rows = F_ * F_ if kind.startswith("SAM2") else F_
        self.pooled = agg == "weighted_pooling"
        self.pool = nn.Parameter(torch.ones(rows, 1)) if self.pooled else None
        self.out = nn.Linear(d if self.pooled else rows * d, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        for layer in self.layers:
            x = layer(x)
        x = x.reshape(x.shape[0], -1, self.embed_dim)
        x = (x * self.pool).sum(1) if self.pooled else x.flatten(1)
        return self.out(x).reshape(lead)
