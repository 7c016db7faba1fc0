"""InterHAt: a transformer layer over the fields and hierarchical attention aggregating interactions by order."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class AttentionalAggregation(nn.Module):
    """``sum_i softmax_i(h^T ReLU(W x_i + b)) x_i``: ``[N, M, d] -> [N, d]``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(self.score(x), 1) * x).sum(1)


@register_model("InterHAt", category="ctr",
                paper="Z. Li, W. Cheng, Y. Chen, H. Chen, W. Wang. Interpretable Click-Through Rate Prediction through "
                      "Hierarchical Attention. WSDM 2020.")
class InterHAt(FeatureRecommender):
    """InterHAt (Li et al., WSDM 2020): a transformer layer over the fields (multi-head scaled self-attention,
    ``X_1 = LN(ReLU(W_o att(X_0)) + X_0)``, then a feed-forward ``LN(FFN(X_1) + X_1)``), then ``order``
    hierarchical attention steps: ``u_k = sum_i a^k_i x^k_i`` (attentional aggregation) and
    ``X^{k+1} = u_k * X_1 + X^k``; a last attention over ``[u_1; ...; u_K]`` gives ``u``;
    ``logit = MLP(u)``. No first-order term.

    Departures from the paper: the residual / layer-norm placement of FuxiCTR's InterHAt (``use_residual``,
    ``layer_norm``); dropout on the attention output; an L2 penalty on the embeddings (``embed_reg``), Adam
    with early stopping on valid AUC. No BARS Frappe setting exists: FuxiCTR's InterHAt_default architecture
    (order 3, 1 head, attention_dim = embed_dim, MLP [64], layer norm, residual) with embedding 10, Adam 1e-3,
    batch 4096.

    Args (config keys): ``embed_dim``, ``order``, ``num_heads``, ``attention_dim``, ``hidden_dim``,
    ``use_residual``, ``layer_norm``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``interhat.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="InterHAt", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "order": "number of hierarchical attention steps (the highest interaction order)",
                   "num_heads": "heads of the transformer self-attention",
                   "attention_dim": "size of each head",
                   "hidden_dim": "hidden size of the feed-forward network and the attention scorers (null: 4 x embed_dim)",
                   "use_residual": "residual connections around the self-attention and the feed-forward network",
                   "layer_norm": "layer norm after the self-attention and the feed-forward network",
                   "mlp_hidden": "hidden sizes of the MLP on the final aggregated vector",
                   "dropout": "dropout on the attention output and in the MLP"}

    def build_interaction(self) -> None:
        d, heads, att = self.embed_dim, int(self.cfg("num_heads")), int(self.cfg("attention_dim"))
        order = int(self.cfg("order"))
        if min(heads, att, order) < 1:
            raise ConfigError(f"num_heads ({heads}), attention_dim ({att}) and order ({order}) must be positive.")
        hidden = int(self.cfg("hidden_dim") or 4 * d)
        self.heads, self.att, self.order = heads, att, order
        self.q, self.k, self.v = (nn.Linear(d, heads * att, bias=False) for _ in range(3))
        self.o = nn.Linear(heads * att, d, bias=False) if heads * att != d else None
        self.residual = bool(self.cfg("use_residual"))
        self.norm1 = nn.LayerNorm(d) if self.cfg("layer_norm") else None
        self.norm2 = nn.LayerNorm(d) if self.cfg("layer_norm") else None
        self.drop = nn.Dropout(float(self.cfg("dropout")))
        self.ffn = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.aggregate = nn.ModuleList(AttentionalAggregation(d, hidden) for _ in range(order))
        self.final = AttentionalAggregation(d, hidden)
        self.mlp = mlp_tower(self, d)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x0, lead = flatten_rows(emb)
        n, f, _ = x0.shape
        split = lambda t: t.reshape(n, f, self.heads, self.att).transpose(1, 2)
        q, k, v = split(self.q(x0)), split(self.k(x0)), split(self.v(x0))
        h = (torch.softmax(q @ k.transpose(-1, -2) / self.att ** 0.5, -1) @ v).transpose(1, 2).reshape(n, f, -1)
        h = self.drop(torch.relu(self.o(h) if self.o is not None else h))
        h = h + x0 if self.residual else h
        x1 = self.norm1(h) if self.norm1 is not None else h
        h = self.ffn(x1) + x1 if self.residual else self.ffn(x1)
        x1 = self.norm2(h) if self.norm2 is not None else h
        xp, us = x1, []
        for p, agg in enumerate(self.aggregate):
            u = agg(xp)
            us.append(u)
            if p < self.order - 1:
                xp = u.unsqueeze(1) * x1 + xp
        return self.mlp(self.final(torch.stack(us, 1))).reshape(lead)
