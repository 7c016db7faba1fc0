"""FinalMLP: two MLP streams with feature gating, fused by a multi-head bilinear aggregation."""
from typing import List, Optional

import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows, mlp_tower
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean


class FeatureSelection(nn.Module):
    """FinalMLP's stream-specific feature selection: ``g = 2 sigmoid(MLP(c))`` over a context vector ``c``
    (the embeddings of the context fields, or a learned vector when there are none), ``x * g``."""

    def __init__(self, context_idx: List[int], dim: int, out_dim: int, hidden: List[int]):
        super().__init__()
        self.register_buffer("idx", torch.tensor(context_idx, dtype=torch.long), persistent=False)
        self.bias = nn.Parameter(torch.zeros(dim)) if not context_idx else None
        in_dim = dim * max(1, len(context_idx))
        self.gate = nn.Sequential(MLP([in_dim, *hidden, out_dim], activation="relu"), nn.Sigmoid())

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            ctx = self.bias.expand(fields.shape[0], -1)
        else:
            ctx = fields[:, self.idx].flatten(1)
        return fields.flatten(1) * 2 * self.gate(ctx)


class InteractionAggregation(nn.Module):
    """``y = w_x^T x + w_y^T y + sum_h x_h^T W_h y_h`` with ``x, y`` split into ``num_heads`` chunks."""

    def __init__(self, x_dim: int, y_dim: int, num_heads: int):
        super().__init__()
        if num_heads < 1 or x_dim % num_heads or y_dim % num_heads:
            raise ConfigError(f"num_heads ({num_heads}) must divide both stream outputs ({x_dim}, {y_dim}).")
        self.heads, self.hx, self.hy = num_heads, x_dim // num_heads, y_dim // num_heads
        self.w_x, self.w_y = nn.Linear(x_dim, 1), nn.Linear(y_dim, 1)
        self.w_xy = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_heads, self.hx, self.hy)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        xy = torch.einsum("nhi,hij,nhj->n", x.reshape(n, self.heads, self.hx), self.w_xy,
                          y.reshape(n, self.heads, self.hy))
        return self.w_x(x).squeeze(-1) + self.w_y(y).squeeze(-1) + xy


@register_model("FinalMLP", category="ctr",
                paper="K. Mao, J. Zhu, L. Su, G. Cai, Y. Li, Z. Dong. FinalMLP: An Enhanced Two-Stream MLP Model for "
                      "CTR Prediction. AAAI 2023.")
class FinalMLP(FeatureRecommender):
    """FinalMLP (Mao et al., AAAI 2023): two MLP streams over the concatenated field embeddings ``e``, each fed
    a gated copy ``e * 2 sigmoid(MLP_g(c_k))`` whose gate reads the stream's context ``c_k`` (the embeddings of
    the fields ``fs1_context`` / ``fs2_context``; a learned vector when empty; ``use_fs: false``: no gates),
    fused by the multi-head bilinear aggregation
    ``logit = b + w_1^T o_1 + w_2^T o_2 + sum_h o_{1,h}^T W_h o_{2,h}`` of the stream outputs ``o_1, o_2``.
    No first-order term, as in the paper. In ``fs1_context`` / ``fs2_context`` the names ``user`` and
    ``item`` stand for the data's user and item id fields.

    Departures from the paper: an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on
    valid AUC. Defaults follow BARS / FuxiCTR FinalMLP_frappe_x1_004 (embedding 10, MLP1 [400], MLP2 [100],
    both with batch norm and dropout 0.4, gates of hidden size [400] on the user (stream 1) and the item
    (stream 2), 5 heads, embedding regularizer 0.05, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp1_hidden``, ``mlp2_hidden``, ``mlp1_dropout``, ``mlp2_dropout``,
    ``batch_norm``, ``activation``, ``use_fs``, ``fs_hidden``, ``fs1_context``, ``fs2_context``, ``num_heads``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``finalmlp.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FinalMLP", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "mlp1_hidden": "hidden sizes of stream 1 (its last layer is the stream output)",
                   "mlp2_hidden": "hidden sizes of stream 2 (its last layer is the stream output)",
                   "mlp1_dropout": "dropout after each layer of stream 1",
                   "mlp2_dropout": "dropout after each layer of stream 2",
                   "batch_norm": "batch norm before each activation of both streams",
                   "activation": "activation of the stream layers (relu, tanh, ...)",
                   "use_fs": "gate each stream's input by its feature-selection module",
                   "fs_hidden": "hidden sizes of the feature-selection gate MLPs",
                   "fs1_context": "fields whose embeddings drive stream 1's gate ([]: a learned vector; 'user' / "
                                  "'item' name the id fields)",
                   "fs2_context": "fields whose embeddings drive stream 2's gate ([]: a learned vector; 'user' / "
                                  "'item' name the id fields)",
                   "num_heads": "heads of the bilinear fusion (must divide both stream outputs)"}

    def _context_idx(self, key: str) -> List[int]:
        alias = {"user": self.meta.uid_field, "item": self.meta.iid_field}
        out = []
        for name in self.cfg(key) or []:
            field = name if name in self.used_fields else alias.get(name, name)
            if field not in self.used_fields:
                raise ConfigError(f"{key}: {name!r} is not a used field; the fields are {self.used_fields} "
                                  "('user' / 'item' name the id fields)." + did_you_mean(name, self.used_fields))
            out.append(self.used_fields.index(field))
        return out

    def _stream(self, k: int) -> nn.Module:
        return mlp_tower(self, self.num_fields * self.embed_dim, out_dim=None, hidden_key=f"mlp{k}_hidden",
                         dropout_key=f"mlp{k}_dropout")

    def build_interaction(self) -> None:
        dim = self.num_fields * self.embed_dim
        self.mlp1, self.mlp2 = self._stream(1), self._stream(2)
        self.fs1: Optional[FeatureSelection] = None
        self.fs2: Optional[FeatureSelection] = None
        if self.cfg("use_fs"):
            hidden = [int(h) for h in self.cfg("fs_hidden") or []]
            self.fs1 = FeatureSelection(self._context_idx("fs1_context"), self.embed_dim, dim, hidden)
            self.fs2 = FeatureSelection(self._context_idx("fs2_context"), self.embed_dim, dim, hidden)
        self.fusion = InteractionAggregation(self.mlp1.out_dim, self.mlp2.out_dim, int(self.cfg("num_heads")))

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        if self.fs1 is not None:
            x1, x2 = self.fs1(x), self.fs2(x)
        else:
            x1 = x2 = x.flatten(1)
        return self.fusion(self.mlp1(x1), self.mlp2(x2)).reshape(lead)
