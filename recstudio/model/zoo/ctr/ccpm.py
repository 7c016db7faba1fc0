"""CCPM: convolutions with flexible k-max pooling over the field axis."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def k_max_pooling(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """The ``k`` largest entries of ``x`` along ``dim``, kept in their original order.

    Example:
        >>> k_max_pooling(torch.tensor([[3.0, 1.0, 4.0, 2.0]]), 2, 1)
        tensor([[3., 4.]])
    """
    k = min(k, x.shape[dim])
    index = x.topk(k, dim=dim)[1].sort(dim=dim)[0]
    return x.gather(dim, index)


@register_model("CCPM", category="ctr",
                paper="Q. Liu, F. Yu, S. Wu, L. Wang. A Convolutional Click Prediction Model. CIKM 2015.")
class CCPM(FeatureRecommender):
    """Convolutional Click Prediction Model (Liu et al., CIKM 2015): the field embeddings form an ``F x d``
    matrix; each layer ``l`` of ``L`` applies a wide convolution along the field axis (``kernel_heights[l]``
    x 1, ``channels[l]`` maps, zero padding ``h - 1`` on both sides), flexible k-max pooling along the fields
    (``k_l = max(3, (1 - (l / L)^(L - l)) F)``, ``k_L = 3``) and ``activation``; the last layer's maps are
    flattened and scored linearly. No first-order term.

    Departures from the paper: FuxiCTR's k-max schedule (at least 3 rows kept per layer); Adam with early
    stopping on valid AUC and an L2 penalty on the embeddings (``embed_reg``). No BARS Frappe setting exists:
    FuxiCTR's default architecture (channels [3, 3], kernel heights [3, 3], tanh) with embedding 10, Adam
    1e-3, batch 4096.

    Args (config keys): ``embed_dim``, ``channels``, ``kernel_heights``, ``activation``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``ccpm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="CCPM", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "channels": "feature maps of each convolution layer",
                   "kernel_heights": "kernel height (over the fields) of each convolution layer",
                   "activation": "activation after each pooling (tanh in the paper)"}

    def build_interaction(self) -> None:
        channels = [int(c) for c in self.cfg("channels") or []]
        heights = [int(h) for h in self.cfg("kernel_heights") or []]
        if not channels or len(channels) != len(heights) or min(channels + heights) < 1:
            raise ConfigError(f"channels {channels} and kernel_heights {heights} must be non-empty lists of "
                              "positive sizes of the same length.")
        layers, F = len(channels), self.num_fields
        self.convs = nn.ModuleList()
        self.ks = []
        for l, (c_in, c_out, h) in enumerate(zip([1] + channels[:-1], channels, heights), start=1):
            self.convs.append(nn.Sequential(nn.ZeroPad2d((0, 0, h - 1, h - 1)), nn.Conv2d(c_in, c_out, (h, 1))))
            self.ks.append(max(3, int((1 - (l / layers) ** (layers - l)) * F)) if l < layers else 3)
        self.act = get_activation(self.cfg("activation"))
        self.out = nn.Linear(channels[-1] * 3 * self.embed_dim, 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        h = x.unsqueeze(1)                                                   # [N, 1, F, d]
        for conv, k in zip(self.convs, self.ks):
            h = self.act(k_max_pooling(conv(h), k, dim=2))
        if h.shape[2] < 3:   # fewer than 3 rows after padding: pad the field axis to the scoring width
            h = nn.functional.pad(h, (0, 0, 0, 3 - h.shape[2]))
        return self.out(h.flatten(1)).reshape(lead)
