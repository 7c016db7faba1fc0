"""FinalNet: factorized-interaction blocks (an MLP with multiplicative units) in one or two streams."""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class FactorizedInteraction(nn.Module):
    """``[h_2, h_1] = W x + b``; ``concat``: ``[h_2; h_1 * h_2]`` (width ``out``), ``sum``: ``h_2 + h_1 * h_2``."""

    def __init__(self, in_dim: int, out_dim: int, residual_type: str):
        super().__init__()
        if residual_type not in ("concat", "sum"):
            raise ConfigError(f"residual_type must be concat or sum, got {residual_type!r}.")
        if residual_type == "concat" and out_dim % 2:
            raise ConfigError(f"with residual_type concat every block layer size must be even, got {out_dim}.")
        self.residual_type = residual_type
        self.linear = nn.Linear(in_dim, out_dim * 2 if residual_type == "sum" else out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h2, h1 = torch.chunk(self.linear(x), 2, dim=-1)
        return torch.cat([h2, h1 * h2], -1) if self.residual_type == "concat" else h2 + h1 * h2


class FinalBlock(nn.Module):
    """Layers ``FactorizedInteraction -> [BatchNorm] -> activation -> [Dropout]``."""

    def __init__(self, in_dim: int, hidden: List[int], activation: str, dropout: float, batch_norm: bool,
                 residual_type: str):
        super().__init__()
        if not hidden:
            raise ConfigError("every FinalNet block needs at least one layer size.")
        layers, dims = [], [in_dim, *[int(h) for h in hidden]]
        for a, b in zip(dims[:-1], dims[1:]):
            layers.append(FactorizedInteraction(a, b, residual_type))
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(get_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model("FinalNet", category="ctr",
                paper="J. Zhu, Q. Jia, G. Cai, Q. Dai, J. Li, Z. Dong, R. Tang, R. Zhang. FINAL: Factorized Interaction "
                      "Layer for CTR Prediction. SIGIR 2023.")
class FinalNet(FeatureRecommender):
    """FinalNet (Zhu et al., SIGIR 2023): blocks of factorized interaction layers ``[h_2, h_1] = W x + b``,
    ``x' = act(BN([h_2; h_1 * h_2]))`` (``residual_type: concat``; ``sum``: ``h_2 + h_1 * h_2``) replace an
    MLP's layers. ``block_type: 1B``: ``logit = w_1^T B_1(g(e))``; ``2B``: ``logit = (y_1 + y_2) / 2`` with
    ``y_1 = w_1^T B_1(g(e))`` and ``y_2 = w_2^T B_2(e)``, where ``e`` concatenates the field embeddings and
    ``g(e) = [e; e * (W_g e + b_g)]`` is the field gate (a linear map across the fields, initialised to the
    identity gate ``W_g = 0, b_g = 1``; ``use_field_gate: false``: ``g(e) = e``). With ``2B`` each block is
    also trained towards the ensemble (the paper's self-knowledge distillation):
    ``loss = BCE(y, label) + BCE(y_1, sigmoid(y).detach()) + BCE(y_2, sigmoid(y).detach())``. No
    first-order term.

    Departures from the paper: an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on
    valid AUC; the global bias is added to the block logits in the distillation terms. Defaults follow BARS
    / FuxiCTR FINAL_frappe_x1_003 (2B; embedding 10, block 1 [400, 400], block 2 [400], ReLU, batch norm,
    dropout 0.1, field gate, residual concat, embedding regularizer 0.1, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``block_type``, ``block1_hidden``, ``block2_hidden``,
    ``block1_dropout``, ``block2_dropout``, ``activation``, ``batch_norm``, ``use_field_gate``,
    ``residual_type``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see
    ``finalnet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FinalNet", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "block_type": "1B (one block over the gated embeddings) or 2B (plus a block over the raw ones)",
                   "block1_hidden": "layer sizes of block 1",
                   "block2_hidden": "layer sizes of block 2 (2B)",
                   "block1_dropout": "dropout after each layer of block 1",
                   "block2_dropout": "dropout after each layer of block 2",
                   "activation": "activation after each factorized interaction layer",
                   "batch_norm": "batch norm before each activation",
                   "use_field_gate": "feed block 1 the field-gated embeddings [e; e * gate(e)]",
                   "residual_type": "factorized layer output: concat ([h2; h1*h2]) or sum (h2 + h1*h2)"}

    def build_interaction(self) -> None:
        block_type = self.cfg("block_type")
        if block_type not in ("1B", "2B"):
            raise ConfigError(f"block_type must be 1B or 2B, got {block_type!r}.")
        self.two_blocks = block_type == "2B"
        dim = self.num_fields * self.embed_dim
        self.gate = None
        if self.cfg("use_field_gate"):
            self.gate = nn.Linear(self.num_fields, self.num_fields)
            nn.init.zeros_(self.gate.weight)
            nn.init.ones_(self.gate.bias)
        common = dict(activation=self.cfg("activation"), batch_norm=bool(self.cfg("batch_norm")),
                      residual_type=self.cfg("residual_type"))
        self.block1 = FinalBlock(dim * (2 if self.gate is not None else 1), self.cfg("block1_hidden"),
                                 dropout=float(self.cfg("block1_dropout")), **common)
        self.fc1 = nn.Linear(self.block1.out_dim, 1)
        if self.two_blocks:
            self.block2 = FinalBlock(dim, self.cfg("block2_hidden"), dropout=float(self.cfg("block2_dropout")),
                                     **common)
            self.fc2 = nn.Linear(self.block2.out_dim, 1)
        self._block_logits = None

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        gated = x
        if self.gate is not None:
            gated = torch.cat([x, x * self.gate(x.transpose(1, 2)).transpose(1, 2)], 1)
        y1 = self.fc1(self.block1(gated.flatten(1))).squeeze(-1)
        if not self.two_blocks:
            return y1.reshape(lead)
        y2 = self.fc2(self.block2(x.flatten(1))).squeeze(-1)
        self._block_logits = (y1, y2) if self.training else None
        return (0.5 * (y1 + y2)).reshape(lead)

    def training_loss(self, batch):
        """The base's loss (BCE of the ensemble logit, embedding penalty) plus, with 2B, each block's BCE
        towards the detached ensemble prediction."""
        self._block_logits = None
        loss = super().training_loss(batch)
        if self.two_blocks and self._block_logits is not None:
            y1, y2 = (y + self.bias for y in self._block_logits)
            target = torch.sigmoid(0.5 * (y1 + y2)).detach()
            loss = loss + F.binary_cross_entropy_with_logits(y1, target) + F.binary_cross_entropy_with_logits(y2, target)
            self._block_logits = None
        return loss
