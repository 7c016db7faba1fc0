"""FGCNN: convolutional feature generation, then an inner-product network over raw and generated fields."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, InnerProduct, flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("FGCNN", category="ctr",
                paper="B. Liu, R. Tang, Y. Chen, J. Yu, H. Guo, Y. Zhang. Feature Generation by Convolutional Neural "
                      "Network for Click-Through Rate Prediction. WWW 2019.")
class FGCNN(FeatureRecommender):
    """FGCNN (Liu et al., WWW 2019). Feature generation: the ``F x d`` field matrix goes through convolution
    layers (``channels[l]`` maps, kernel ``kernel_heights[l]`` x 1 over the fields, same padding, tanh),
    max pooling over the fields (``pooling_sizes[l]`` x 1, ceil mode) and, after each layer, a recombination
    ``tanh(W flatten(maps))`` into ``recombined_channels[l] * H_l`` new field vectors (``H_l`` the pooled
    height). Deep classifier: IPNN over the raw and the new fields, ``logit = MLP([fields; (<u_i, u_j>)_{i<j}])``.
    No first-order term.

    Departures from the paper: ceil-mode pooling (so that a few fields survive several layers); dropout in the
    MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early stopping on valid AUC.
    No BARS Frappe setting exists: the paper's generator (channels [14, 16, 18, 20], kernel 7, pooling 2,
    recombination 3) with BARS' DNN_frappe_x1 MLP settings (embedding 10, MLP [400, 400, 400], dropout 0.2,
    embedding regularizer 0.05, Adam 1e-3, batch 4096) but without their batch norm (``batch_norm: true``
    restores it): on ml-1m as CTR it left a few saturated predictions in evaluation (test logloss 1.66 against
    0.57 without; ``fgcnn.yaml``).

    Args (config keys): ``embed_dim``, ``channels``, ``kernel_heights``, ``pooling_sizes``,
    ``recombined_channels``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``fgcnn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FGCNN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "channels": "feature maps of each convolution layer",
                   "kernel_heights": "kernel height (over the fields) of each convolution layer (odd)",
                   "pooling_sizes": "max-pooling height of each layer",
                   "recombined_channels": "new field vectors per pooled row generated after each layer",
                   "mlp_hidden": "hidden sizes of the IPNN classifier's MLP"}

    def build_interaction(self) -> None:
        lists = {k: [int(v) for v in self.cfg(k) or []]
                 for k in ("channels", "kernel_heights", "pooling_sizes", "recombined_channels")}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1 or 0 in lengths or min(min(v) for v in lists.values()) < 1:
            raise ConfigError(f"channels, kernel_heights, pooling_sizes and recombined_channels must be non-empty "
                              f"lists of positive sizes of one length, got {lists}.")
        if any(h % 2 == 0 for h in lists["kernel_heights"]):
            raise ConfigError(f"kernel_heights must be odd (same padding), got {lists['kernel_heights']}.")
        d, height, c_in, new_fields = self.embed_dim, self.num_fields, 1, 0
        self.convs, self.recombine = nn.ModuleList(), nn.ModuleList()
        for c, h, p, r in zip(*lists.values()):
            self.convs.append(nn.Sequential(nn.Conv2d(c_in, c, (h, 1), padding=(h // 2, 0)), nn.Tanh(),
                                            nn.MaxPool2d((p, 1), ceil_mode=True)))
            height = -(-height // p)
            self.recombine.append(nn.Sequential(nn.Linear(c * height * d, r * height * d), nn.Tanh()))
            new_fields += r * height
            c_in = c
        total = self.num_fields + new_fields
        self.inner = InnerProduct(total)
        self.mlp = mlp_tower(self, total * d + total * (total - 1) // 2)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        n, d = x.shape[0], self.embed_dim
        h, generated = x.unsqueeze(1), [x]
        for conv, rec in zip(self.convs, self.recombine):
            h = conv(h)                                                     # [N, C, H, d]
            generated.append(rec(h.flatten(1)).reshape(n, -1, d))
        fields = torch.cat(generated, 1)
        return self.mlp(torch.cat([fields.flatten(1), self.inner(fields)], -1)).reshape(lead)
