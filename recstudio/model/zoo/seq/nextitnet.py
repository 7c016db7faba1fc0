"""NextItNet: stacked dilated causal convolutions (residual blocks) over the item sequence."""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class DilatedResidualBlock(nn.Module):
    """Residual block (b) of NextItNet: ``x + ReLU(LN(conv_{2r}(ReLU(LN(conv_r(x))))))``, both convolutions
    causal (left-padded by ``(kernel - 1) * dilation``) with dilations ``r`` and ``2 r``."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.conv1 = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.ln1 = nn.LayerNorm(channels, eps=1e-8)
        self.conv2 = nn.Conv1d(channels, channels, kernel, dilation=2 * dilation)
        self.ln2 = nn.LayerNorm(channels, eps=1e-8)

    def _causal(self, conv: nn.Conv1d, x: torch.Tensor, dilation: int) -> torch.Tensor:
        out = conv(F.pad(x.transpose(1, 2), ((self.kernel - 1) * dilation, 0)))  # [B, C, L]
        return out.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.ln1(self._causal(self.conv1, x, self.dilation)))
        out = F.relu(self.ln2(self._causal(self.conv2, out, 2 * self.dilation)))
        return x + out


class NextItNetEncoder(nn.Module):
    """Item embeddings -> residual blocks with the given dilations -> Linear (``[B, L, d]``, zeros at padding).
    Padding positions are zeroed after every block, so a left-padded row behaves like a sequence that starts
    after zeros (the causal padding of the convolutions)."""

    def __init__(self, item_embedding: nn.Module, dim: int, kernel: int, dilations):
        super().__init__()
        self.item_embedding = item_embedding
        self.blocks = nn.ModuleList(DilatedResidualBlock(dim, kernel, d) for d in dilations)
        self.final = nn.Linear(dim, dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        pad = (seq == 0).unsqueeze(-1)
        x = self.item_embedding(seq)
        for block in self.blocks:
            x = block(x).masked_fill(pad, 0.0)
        return self.final(x).masked_fill(pad, 0.0)


@register_model("NextItNet", category="seq",
                paper="F. Yuan, A. Karatzoglou, I. Arapakis, J. M. Jose, X. He. A Simple Convolutional Generative "
                      "Network for Next Item Recommendation. WSDM 2019.")
class NextItNet(SequentialRecommender):
    """NextItNet (Yuan et al., WSDM 2019).

    The item embeddings pass a stack of residual blocks of dilated *causal* 1-D convolutions (block
    (b) of the paper: ``x + ReLU(LN(conv_{2r}(ReLU(LN(conv_r(x))))))``, kernel ``kernel_size``, dilations
    ``r`` and ``2 r``); the stack uses ``dilations`` repeated ``block_num`` times (RecBole: ``[1, 4]`` x 5,
    i.e. convolutions dilated 1, 2, 4, 8, ...). A final linear layer maps the output at position ``t``
    to the vector that scores item ``t + 1`` by the inner product with the item embeddings. As in the
    paper, every position is trained at once (the base's causal mode).

    Departures from the paper: the output layer is the shared input item table (after RecBole's final
    linear layer; the paper has a separate softmax matrix); RecBole's L2 ``reg_weight`` is
    ``train.weight_decay`` (Adam's L2 on all parameters); evaluation ranks all items. Defaults are
    RecBole's (``embed_dim`` = residual channels 64, kernel 3, 5 blocks of dilations ``[1, 4]``, full
    softmax, Adam 1e-3), ``max_seq_len`` 50.

    Args (config keys): ``embed_dim``, ``kernel_size``, ``block_num``, ``dilations``, ``max_seq_len``, ``loss``,
    ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in
    ``nextitnet.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NextItNet", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "kernel_size": "width of the causal convolutions (RecBole: 3)",
        "block_num": "how many times the dilation pattern is repeated (RecBole: 5)",
        "dilations": "dilations r of one pattern of residual blocks (each block: r then 2 r; RecBole [1, 4])",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        dilations = list(c["dilations"] or [])
        if c["kernel_size"] < 1 or c["block_num"] < 1 or not dilations or any(int(d) < 1 for d in dilations):
            raise ConfigError(f"NextItNet needs kernel_size >= 1, block_num >= 1 and a non-empty list of dilations "
                              f">= 1, got kernel_size={c['kernel_size']}, block_num={c['block_num']}, "
                              f"dilations={c['dilations']}.")
        return NextItNetEncoder(self.item_encoder, c["embed_dim"], c["kernel_size"],
                                [int(d) for d in dilations] * c["block_num"])
