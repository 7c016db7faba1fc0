"""MaskNet: instance-guided masks (mask blocks) over the field embeddings, serial or parallel."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.module.mlp import MLP, get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class MaskBlock(nn.Module):
    """``act(LN(W ((W_2 ReLU(W_1 v_emb)) * v_hidden)))`` then dropout: an instance-guided mask on ``v_hidden``."""

    def __init__(self, emb_dim: int, hidden_dim: int, out_dim: int, activation: str, reduction_ratio: float,
                 dropout: float, layer_norm: bool):
        super().__init__()
        agg = max(1, int(hidden_dim * reduction_ratio))
        self.mask = nn.Sequential(nn.Linear(emb_dim, agg), nn.ReLU(), nn.Linear(agg, hidden_dim))
        layers = [nn.Linear(hidden_dim, out_dim, bias=False)]
        if layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        layers.append(get_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)

    def forward(self, v_emb: torch.Tensor, v_hidden: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.mask(v_emb) * v_hidden)


@register_model("MaskNet", category="ctr",
                paper="Z. Wang, Q. She, J. Zhang. MaskNet: Introducing Feature-Wise Multiplication to CTR Ranking "
                      "Models by Instance-Guided Mask. DLP-KDD 2021.")
class MaskNet(FeatureRecommender):
    """MaskNet (Wang et al., 2021). A mask block multiplies its input ``V_h`` by the instance-guided mask
    ``W_2 ReLU(W_1 V_emb)`` of the concatenated embeddings ``V_emb`` (aggregation size ``reduction_ratio`` x
    the masked size), then ``ReLU(LN(W .))``. ``model_type: SerialMaskNet`` chains blocks of sizes
    ``mlp_hidden`` (``V_h`` = the previous block's output, first the (layer-normed) embeddings) and scores the
    last one linearly; ``ParallelMaskNet`` runs ``parallel_num_blocks`` blocks of size ``parallel_block_dim``
    on the embeddings and feeds their concatenation to an MLP ``mlp_hidden -> 1``. No first-order term.

    Departures from the paper: FuxiCTR's parametrisation of the aggregation size (``reduction_ratio`` times
    the masked size); an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC.
    Defaults follow BARS / FuxiCTR MaskNet_frappe_x1_028 (ParallelMaskNet, 3 blocks of 50, MLP
    [400, 400, 400], reduction ratio 2, dropout 0.1, layer norm in the blocks, none on the embeddings,
    embedding regularizer 0.1, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``model_type``, ``mlp_hidden``, ``parallel_num_blocks``,
    ``parallel_block_dim``, ``reduction_ratio``, ``dropout``, ``activation``, ``emb_layernorm``,
    ``net_layernorm``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``;
    see ``masknet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="MaskNet", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "model_type": "SerialMaskNet (chained mask blocks) or ParallelMaskNet (parallel blocks + MLP)",
                   "mlp_hidden": "serial: the mask blocks' sizes; parallel: the hidden sizes of the MLP on the blocks",
                   "parallel_num_blocks": "number of parallel mask blocks (ParallelMaskNet)",
                   "parallel_block_dim": "output size of each parallel mask block (ParallelMaskNet)",
                   "reduction_ratio": "aggregation size of each mask / the size it masks",
                   "dropout": "dropout after each mask block and each MLP layer",
                   "activation": "activation of the mask blocks and the MLP",
                   "emb_layernorm": "layer-normalise each field embedding before it is masked",
                   "net_layernorm": "layer norm inside each mask block"}

    def build_interaction(self) -> None:
        kind = self.cfg("model_type")
        if kind not in ("SerialMaskNet", "ParallelMaskNet"):
            raise ConfigError(f"model_type must be SerialMaskNet or ParallelMaskNet, got {kind!r}.")
        dim = self.num_fields * self.embed_dim
        act, drop = self.cfg("activation"), float(self.cfg("dropout"))
        ratio, ln = float(self.cfg("reduction_ratio")), bool(self.cfg("net_layernorm"))
        hidden = [int(h) for h in self.cfg("mlp_hidden") or []]
        self.serial = kind == "SerialMaskNet"
        self.emb_norm = nn.LayerNorm(self.embed_dim) if self.cfg("emb_layernorm") else None
        if self.serial:
            if not hidden:
                raise ConfigError("SerialMaskNet needs mlp_hidden: the sizes of its mask blocks.")
            sizes = [dim, *hidden]
            self.blocks = nn.ModuleList(MaskBlock(dim, a, b, act, ratio, drop, ln) for a, b in zip(sizes[:-1], sizes[1:]))
            self.out = nn.Linear(sizes[-1], 1)
        else:
            n, width = int(self.cfg("parallel_num_blocks")), int(self.cfg("parallel_block_dim"))
            if n < 1 or width < 1:
                raise ConfigError(f"parallel_num_blocks ({n}) and parallel_block_dim ({width}) must be positive.")
            self.blocks = nn.ModuleList(MaskBlock(dim, dim, width, act, ratio, drop, ln) for _ in range(n))
            self.out = MLP([n * width, *hidden, 1], activation=act, dropout=drop)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        v_emb = x.flatten(1)
        v_hidden = (self.emb_norm(x) if self.emb_norm is not None else x).flatten(1)
        if self.serial:
            for block in self.blocks:
                v_hidden = block(v_emb, v_hidden)
            return self.out(v_hidden).reshape(lead)
        return self.out(torch.cat([b(v_emb, v_hidden) for b in self.blocks], -1)).reshape(lead)
