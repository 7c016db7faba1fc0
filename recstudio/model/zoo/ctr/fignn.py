"""FiGNN: a graph neural network over the fields with attentional edges and attentional scoring."""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class FieldGraphLayer(nn.Module):
    """``a_i = W^in_i sum_j g_ij W^out_j h_j + b`` (a field-specific output and input matrix)."""

    def __init__(self, num_fields: int, dim: int):
        super().__init__()
        self.w_out = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_fields, dim, dim)))
        self.w_in = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_fields, dim, dim)))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, graph: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        msg = torch.einsum("fde,nfe->nfd", self.w_out, h)
        return torch.einsum("fde,nfe->nfd", self.w_in, graph @ msg) + self.bias


@register_model("FiGNN", category="ctr",
                paper="Z. Li, Z. Cui, S. Wu, X. Zhang, L. Wang. Fi-GNN: Modeling Feature Interactions via Graph "
                      "Neural Networks for CTR Prediction. CIKM 2019.")
class FiGNN(FeatureRecommender):
    """Fi-GNN (Li et al., CIKM 2019): the fields are the nodes of a complete graph whose edge weights are
    ``g_ij = softmax_{j != i}(LeakyReLU(w^T [e_i; e_j]))``; ``gnn_layers`` steps of
    ``a_i = W^in_i sum_j g_ij W^out_j h_j + b``, the state updated by a GRU cell (``use_gru``) or by
    ``h = a + h``, plus the initial embeddings (``use_residual``); ``reuse_graph_layer`` shares the step's
    weights. Scoring: ``logit = b + sum_i sigmoid(W_2 [h_1; ...; h_F])_i * (w_1^T h_i)``. No first-order
    term.

    Departures from the paper: the GRU and weight sharing are options (BARS' tuned Frappe setting uses
    neither); Adam with early stopping on valid AUC and an L2 penalty on the embeddings (``embed_reg``).
    Defaults follow BARS / FuxiCTR FiGNN_frappe_x1_003 (embedding 10, 17 layers, no GRU, residual, no
    sharing, embedding regularizer 0.001, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``gnn_layers``, ``use_gru``, ``use_residual``, ``reuse_graph_layer``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``fignn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FiGNN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "gnn_layers": "number of propagation steps",
                   "use_gru": "update the node states with a GRU cell (false: h = a + h)",
                   "use_residual": "add the initial embeddings to the states after each step",
                   "reuse_graph_layer": "share one propagation layer across the steps"}

    def build_interaction(self) -> None:
        steps = int(self.cfg("gnn_layers"))
        if steps < 1:
            raise ConfigError(f"gnn_layers must be >= 1, got {steps}.")
        F_, d = self.num_fields, self.embed_dim
        self.steps = steps
        self.reuse = bool(self.cfg("reuse_graph_layer"))
        self.layers = nn.ModuleList(FieldGraphLayer(F_, d) for _ in range(1 if self.reuse else steps))
        self.gru = nn.GRUCell(d, d) if self.cfg("use_gru") else None
        self.residual = bool(self.cfg("use_residual"))
        self.edge = nn.Linear(2 * d, 1, bias=False)
        self.score = nn.Linear(d, 1, bias=False)
        self.weight = nn.Sequential(nn.Linear(F_ * d, F_, bias=False), nn.Sigmoid())
        self.register_buffer("eye", torch.eye(F_, dtype=torch.bool), persistent=False)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        n, f, d = x.shape
        pairs = torch.cat([x.unsqueeze(2).expand(n, f, f, d), x.unsqueeze(1).expand(n, f, f, d)], -1)
        logits = F.leaky_relu(self.edge(pairs).squeeze(-1)).masked_fill(self.eye, float("-inf"))
        graph = torch.softmax(logits, -1)
        h = x
        for step in range(self.steps):
            a = self.layers[0 if self.reuse else step](graph, h)
            h = self.gru(a.reshape(-1, d), h.reshape(-1, d)).reshape(n, f, d) if self.gru is not None else a + h
            if self.residual:
                h = h + x
        out = (self.weight(h.flatten(1)) * self.score(h).squeeze(-1)).sum(-1)
        return out.reshape(lead)
