"""NGCF: graph propagation with feature transforms and a bi-interaction message, layers concatenated."""
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.graph import GRAPH_HELP, GraphRecommender
from recstudio.model.module.graph import edge_dropout, spmm, undirected_edge_ids
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class NGCFConv(nn.Module):
    """One NGCF layer (eq. 7 of the paper), before its LeakyReLU:
    ``E' = (L + I) E W1 + (L E) ⊙ E W2`` (with biases, as the paper's code).

    Args:
        in_dim, out_dim: sizes of the input and output embeddings.
        adj_has_identity: whether the adjacency passed in is already ``L + I`` (then ``L E = adj E - E``);
            otherwise the layer adds ``E`` itself for the ``W1`` term.
    """

    def __init__(self, in_dim: int, out_dim: int, adj_has_identity: bool):
        super().__init__()
        self.w1 = nn.Linear(in_dim, out_dim)
        self.w2 = nn.Linear(in_dim, out_dim)
        for lin in (self.w1, self.w2):  # Xavier weights, zero biases (the paper's code: Xavier; RecBole's)
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.adj_has_identity = adj_has_identity

    def forward(self, adj, x):
        side = spmm(adj, x)
        if self.adj_has_identity:
            with_self, neigh = side, side - x
        else:
            with_self, neigh = side + x, side
        return self.w1(with_self) + self.w2(neigh * x)


@register_model("NGCF", category="general",
                paper="X. Wang, X. He, M. Wang, F. Feng, T.-S. Chua. Neural Graph Collaborative Filtering. "
                      "SIGIR 2019.")
class NGCF(GraphRecommender):
    """Embedding propagation over the normalised user-item training graph ``L``: each layer computes
    ``E^(k+1) = LeakyReLU_0.2((L + I) E^(k) W1 + (L E^(k)) ⊙ E^(k) W2)``, then message dropout and
    L2-normalisation of every node's vector; the final user / item vectors concatenate ``E^(0..K)`` and
    ``score(u, i) = e_u . e_i``. Trained with BPR on uniformly drawn non-interacted items plus an L2 penalty
    on the batch's final (concatenated) user / item vectors; node dropout drops user-item edges of ``L`` (scaling the kept ones) for each
    training batch (Wang et al., SIGIR 2019).

    Defaults: embedding 64, hidden sizes [64, 64, 64], reg_weight 1e-5 (RecBole 1.2.1), node and message
    dropout 0.1 (the paper's code), Adam 1e-3 and batch 2048 (RecBole; the paper: 1e-4, 1024). As the paper's
    code: the penalty is ``0.5 |e|^2 / B`` over the final vectors of the batch's users, positives and
    negatives (RecBole sums their unsquared norms); the weights are Xavier-initialised with zero biases (RecBole:
    Xavier normal); the normalised vectors of each layer are what is concatenated. Departure: node dropout drops an edge
    in both directions at once (the code drops matrix entries independently), which keeps ``L`` symmetric.

    With ``self_loops: false`` the adjacency is ``L`` and the layer adds ``E`` itself, with the same result;
    the key is kept for graph models that read ``L + I`` directly.

    Args (config keys): ``embed_dim``, ``hidden_dims`` (one size per layer), ``node_dropout``,
    ``message_dropout``, ``reg_weight``, ``self_loops``, ``loss``, ``sampler``, ``num_neg``, ``score_func``;
    see ``ngcf.yaml`` and ``run.py -m NGCF --help``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="NGCF", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    layer_combine = "concat"
    option_help = {**GRAPH_HELP,
                   "hidden_dims": "output size of each propagation layer (their count is the number of layers)",
                   "node_dropout": "probability of dropping an edge of the graph in each training propagation",
                   "message_dropout": "dropout on each layer's output during training",
                   "reg_weight": "weight of the L2 penalty on the batch's final (concatenated) vectors (0 = none)"}

    def _layer_dims(self):
        hidden = self.cfg("hidden_dims")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ConfigError(f"NGCF hidden_dims must be a non-empty list of positive sizes, got {hidden!r}.")
        for key in ("node_dropout", "message_dropout"):
            if not 0.0 <= float(self.cfg(key)) < 1.0:
                raise ConfigError(f"NGCF {key} must be in [0, 1), got {self.cfg(key)}.")
        return [int(self.cfg("embed_dim"))] + [int(h) for h in hidden]

    def _get_layer(self, k, in_dim, out_dim):
        return NGCFConv(in_dim, out_dim, adj_has_identity=bool(self.cfg("self_loops")))

    def build_blocks(self):
        super().build_blocks()
        self.message_dropout = nn.Dropout(float(self.cfg("message_dropout")))
        self.register_buffer("_edge_ids", undirected_edge_ids(self.norm_adj), persistent=False)

    def _training_adjacency(self):
        return edge_dropout(self.norm_adj, self._edge_ids, float(self.cfg("node_dropout")))

    def _reg_penalty(self, users, items, vectors):
        # the paper's code and RecBole penalise the final (concatenated) vectors of the batch, not the ego ones
        penalty = vectors[0][users].pow(2).sum()
        for ids in items:
            penalty = penalty + vectors[1][ids].pow(2).sum()
        return penalty

    def _after_layer(self, k, x):
        x = F.leaky_relu(x, negative_slope=0.2)
        return F.normalize(self.message_dropout(x), p=2, dim=1)
