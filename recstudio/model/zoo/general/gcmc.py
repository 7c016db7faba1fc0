"""GC-MC: a one-layer graph-convolutional encoder over one-hot node features and a bilinear decoder."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.graph import GRAPH_HELP, GraphRecommender
from recstudio.model.module.graph import spmm
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class GCMCConv(nn.Module):
    """``H = ReLU(L X W)`` with one-hot features ``X`` (so ``X W`` is the ego table, node-dropped in training)."""

    def forward(self, adj, x):
        return torch.relu(spmm(adj, x))


def orthogonal_(weight: torch.Tensor, scale: float = 1.1) -> torch.Tensor:
    """Saxe et al.'s orthogonal init times ``scale`` (GC-MC's code, from Lasagne)."""
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        weight.mul_(scale)
    return weight


@register_model("GCMC", category="general",
                paper="R. van den Berg, T. N. Kipf, M. Welling. Graph Convolutional Matrix Completion. "
                      "KDD Deep Learning Day 2018.")
class GCMC(GraphRecommender):
    """Graph auto-encoder (van den Berg et al., 2018) for implicit feedback, one rating level (RecBole's
    setting): the encoder is one graph convolution over one-hot node features, ``H = ReLU(L X W)`` with
    ``X W`` a ``gcn_output_dim``-wide table (node dropout on ``X`` in training), then dropout and a dense
    layer shared by users and items, ``z = W_d H`` (``embed_dim`` wide); the bilinear decoder has
    ``num_basis_functions`` matrices ``Q_s`` mixed per class, ``l_c(u, i) = sum_s a_cs z_u^T Q_s z_i`` for
    the classes c in {0 (negative), 1 (observed)}, trained with softmax cross-entropy on each positive and its
    uniform negative; items are ranked by ``l_1`` (so ``score = (Q_1^T z_u) . z_i``, decomposable, with
    ``Q_1 = sum_s a_1s Q_s``).

    Defaults are RecBole 1.2.1's: gcn_output_dim 500, embedding 64, dropout 0.3, two basis functions,
    accumulation 'stack' over the single support, Adam 1e-3, batch 2048; initialisation as the GC-MC code
    (uniform Glorot ranges, orthogonal ``Q_s`` times 1.1). Departures: with one rating level 'stack' and 'sum'
    coincide, so there is no ``accum`` key; node dropout drops rows of ``X W`` (the same as dropping one-hot
    feature rows); no weight decay term (as RecBole).

    Args (config keys): ``embed_dim``, ``gcn_output_dim``, ``dropout``, ``num_basis_functions``, ``sampler``,
    ``num_neg``; see ``gcmc.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="GCMC", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    layer_combine = "last"
    option_help = {k: v for k, v in GRAPH_HELP.items() if k not in ("n_layers", "self_loops", "reg_weight",
                                                                     "loss", "score_func")}
    option_help.update({"embed_dim": "size of the encoder's output vectors (the dense layer's width)",
                        "gcn_output_dim": "width of the graph-convolution layer (rows of the one-hot feature weights)",
                        "dropout": "node dropout on the input features and dropout after the convolution",
                        "num_basis_functions": "number of basis matrices Q_s of the bilinear decoder"})

    def _layer_dims(self):
        if int(self.cfg("gcn_output_dim")) < 1 or int(self.cfg("num_basis_functions")) < 1:
            raise ConfigError("GCMC needs gcn_output_dim >= 1 and num_basis_functions >= 1.")
        if not 0.0 <= float(self.cfg("dropout")) < 1.0:
            raise ConfigError(f"GCMC dropout must be in [0, 1), got {self.cfg('dropout')}.")
        return [int(self.cfg("gcn_output_dim"))] * 2

    @property
    def output_dim(self):
        return int(self.cfg("embed_dim"))

    def _get_query_encoder(self):
        from recstudio.model.base.itemtower import _UserIdQuery
        from recstudio.model.module.embedding import IdEmbedding
        return _UserIdQuery(self.meta.uid_field, IdEmbedding(self.meta.num_users, int(self.cfg("gcn_output_dim"))))

    def _get_item_encoder(self):
        from recstudio.model.module.embedding import IdEmbedding
        return IdEmbedding(self.meta.num_items, int(self.cfg("gcn_output_dim")))

    def _get_layer(self, k, in_dim, out_dim):
        return GCMCConv()

    def build_blocks(self):
        super().build_blocks()
        hidden, dim, n_basis = int(self.cfg("gcn_output_dim")), int(self.cfg("embed_dim")), \
            int(self.cfg("num_basis_functions"))
        n_nodes = self.meta.num_users + self.meta.num_items
        r = math.sqrt(2.0 / (n_nodes + hidden))  # (num_support + 1) / (input_dim + hidden), one support
        with torch.no_grad():
            for table in (self.user_table, self.item_table):
                table.uniform_(-r, r)
                table[0].zero_()
        self.dense = nn.Linear(hidden, dim, bias=False)
        nn.init.uniform_(self.dense.weight, -math.sqrt(2.0 / (dim + hidden)), math.sqrt(2.0 / (dim + hidden)))
        self.basis = nn.Parameter(torch.stack([orthogonal_(torch.empty(dim, dim)) for _ in range(n_basis)]))
        self.mix = nn.Linear(n_basis, 2, bias=False)  # a_cs
        nn.init.uniform_(self.mix.weight, -math.sqrt(2.0 / (n_basis + 2)), math.sqrt(2.0 / (n_basis + 2)))
        self.drop = nn.Dropout(float(self.cfg("dropout")))

    def propagate(self, adj=None):
        if adj is None:
            adj = self._training_adjacency() if self.training else self.norm_adj
        self.propagation_count += 1
        x = torch.cat([self.user_table, self.item_table], 0)
        if self.training and float(self.cfg("dropout")) > 0:  # node dropout of the one-hot features
            p = float(self.cfg("dropout"))
            keep = (torch.rand(x.shape[0], 1, device=x.device) >= p).to(x.dtype) / (1.0 - p)
            x = x * keep
        z = self.dense(self.drop(self.gnn_layers[0](adj, x))) * self._node_mask[:, None]
        users, items = z[:self.meta.num_users], z[self.meta.num_users:]
        self._raw_users = users if self.training else None
        return users @ self.class_matrix(1).T, items  # score = l_1 = z_u^T Q_1 z_i

    def class_matrix(self, c: int) -> torch.Tensor:
        """``Q_c = sum_s a_cs Q_s`` ``[d, d]``."""
        return torch.einsum("s,sij->ij", self.mix.weight[c], self.basis)

    def _dataset_kwargs(self):
        kwargs = super()._dataset_kwargs()  # no loss key: the negatives are requested here
        if self.dataset_type == "triplet" and self.cfg("sampler") == "masked_uniform":
            kwargs.update(num_neg=1, neg_sampling="uniform")
        return kwargs

    def training_loss(self, batch):
        users, pos = batch[self.meta.uid_field], batch[self.meta.iid_field]
        if "neg_item" in batch:
            neg = batch["neg_item"].reshape(pos.shape[0], -1)[:, 0]
        elif self.sampler is not None:
            neg = self.sampler(None, 1, pos, None)[1].reshape(pos.shape[0], -1)[:, 0]
        else:
            raise ConfigError("GCMC needs negative items: set the sampler key.")
        _, items = self.propagate()
        zu = self._raw_users[users]
        self._raw_users = None
        u = torch.cat([zu, zu])
        v = items[torch.cat([pos, neg])]
        logits = torch.stack([((u @ self.class_matrix(c).T) * v).sum(-1) for c in (0, 1)], -1)
        target = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return F.cross_entropy(logits, target)
