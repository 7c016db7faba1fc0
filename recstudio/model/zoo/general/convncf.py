"""ConvNCF: a CNN over the outer product of the user and item embeddings."""
from typing import Dict

import torch
from torch import nn

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.loss.pairwise import BPRLoss
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("ConvNCF", category="general",
                paper="X. He, X. Du, X. Wang, F. Tian, J. Tang, T.-S. Chua. Outer Product-based Neural "
                      "Collaborative Filtering. IJCAI 2018.")
class ConvNCF(TowerFreeRecommender):
    """ConvNCF (He et al., IJCAI 2018): the interaction map ``E = p_u q_i^T`` (``d x d``) goes through a
    stack of ``Conv2d + ReLU`` layers (``cnn_channels``, ``cnn_kernels``, ``cnn_strides``; the defaults
    shrink 64 x 64 to 1 x 1), the last feature map is summed over its positions and a dropout + linear
    layer gives the score. Trained pairwise with BPR summed over the batch against ``num_neg`` sampled
    unobserved items, plus ``r1 (||P|| + ||Q||) + r2 Σ ||W||`` over the embedding tables and the weights of
    the convolution and prediction layers (``reg_weights``, RecBole's form).

    Scoring is not decomposable, so this is a TowerFree model; full ranking runs the CNN on every
    (user, item) pair in chunks, which is slow on CPU (about 0.5 M multiply-adds per pair by default).

    Departures: no BPR-MF pre-training of the embeddings (RecBole's default ``no_pretrain``; the paper
    pre-trains), embeddings start at N(0, 1) as RecBole's; Adam instead of Adagrad.

    Args (config keys): ``embed_dim``, ``cnn_channels``, ``cnn_kernels``, ``cnn_strides``, ``dropout``,
    ``reg_weights``, ``sampler``, ``num_neg``; defaults in ``convncf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="ConvNCF", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **{k: v for k, v in TowerFreeRecommender.option_help.items() if k != "loss"},
        "embed_dim": "size d of the user and item embeddings (the interaction map is d x d)",
        "cnn_channels": "channels of the interaction map and of every convolution's output ([1, ...])",
        "cnn_kernels": "kernel size of every convolution",
        "cnn_strides": "stride of every convolution",
        "dropout": "dropout before the prediction layer",
        "reg_weights": "[r1, r2]: weights of the embedding norms and of the layer-weight norms",
    }
    item_chunk_size = 512

    def _get_loss_func(self):
        return BPRLoss(reduction="sum")

    def loss_needs(self, flag: str) -> bool:
        return flag == "needs_negatives"

    def build_blocks(self) -> None:
        m, c = self.meta, self.config
        ch, ks, st = list(c["cnn_channels"]), list(c["cnn_kernels"]), list(c["cnn_strides"])
        if len(ch) < 2 or ch[0] != 1 or len(ks) != len(ch) - 1 or len(st) != len(ch) - 1:
            raise ConfigError(f"ConvNCF: cnn_channels must start with 1 and list one more entry than cnn_kernels "
                              f"and cnn_strides; got {ch}, {ks}, {st}.")
        if len(c["reg_weights"]) != 2 or min(c["reg_weights"]) < 0 or not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError("ConvNCF reg_weights must be two weights >= 0 and 0 <= dropout < 1.")
        size = c["embed_dim"]
        for k, s in zip(ks, st):
            size = (size - k) // s + 1
            if size < 1:
                raise ConfigError(f"ConvNCF: the convolutions shrink the {c['embed_dim']} x {c['embed_dim']} map "
                                  f"below 1 x 1; use smaller kernels / strides or a larger embed_dim.")
        self.user_embedding = IdEmbedding(m.num_users, c["embed_dim"], init="normal", init_std=1.0)
        self.item_embedding = IdEmbedding(m.num_items, c["embed_dim"], init="normal", init_std=1.0)
        layers = []
        for i, (k, s) in enumerate(zip(ks, st)):
            layers += [nn.Conv2d(ch[i], ch[i + 1], kernel_size=k, stride=s), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.predict = nn.Sequential(nn.Dropout(c["dropout"]), nn.Linear(ch[-1], 1))

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        u = self.user_embedding(batch[self.meta.uid_field])
        v = self.item_embedding(items)
        if items.dim() == 2:
            u = u.unsqueeze(1).expand_as(v)
        d = u.shape[-1]
        maps = (u.reshape(-1, d, 1) * v.reshape(-1, 1, d)).unsqueeze(1)    # [P, 1, d, d]
        features = self.cnn(maps).sum(dim=(2, 3))
        return self.predict(features).view(items.shape)

    def regulariser(self) -> torch.Tensor:
        r1, r2 = self.config["reg_weights"]
        reg = r1 * (self.user_embedding.embedding.weight.norm() + self.item_embedding.embedding.weight.norm())
        weights = [m.weight for m in (*self.cnn, *self.predict) if isinstance(m, (nn.Conv2d, nn.Linear))]
        return reg + r2 * sum(w.norm() for w in weights)

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return super().training_loss(batch) + self.regulariser()
