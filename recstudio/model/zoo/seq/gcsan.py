"""GC-SAN: SR-GNN's gated graph network over the session graph, then self-attention blocks."""
from typing import Dict

import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.srgnn import PrefixGraphRecommender, SessionGNN, uniform_init_
from recstudio.utils.errors import ConfigError


class GCSANEncoder(nn.Module):
    """``seq [N, L] -> [N, d]``: node vectors of the row's session graph after ``steps`` gated GNN steps,
    read at the row's positions (``H``), then ``n_layers`` post-norm self-attention blocks (causal, padding
    masked, GELU feed-forward of width ``ffn_dim``) give ``E``; output ``w E_n + (1 - w) h_n`` at the last
    position ``n``."""

    def __init__(self, item_embedding: nn.Module, dim: int, steps: int, n_layers: int, n_heads: int,
                 ffn_dim: int, dropout: float, weight: float):
        super().__init__()
        self.gnn = SessionGNN(item_embedding, dim, steps)
        uniform_init_(self.gnn.cells, dim)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=ffn_dim, dropout=dropout,
                                           activation="gelu", batch_first=True)
        self.attention = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.n_heads, self.weight = int(n_heads), float(weight)

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """Bool ``[N * heads, L, L]``, True = may not attend: future positions and padding (a position always
        sees itself, so no row is empty)."""
        N, L = seq.shape
        blocked = (seq == 0).unsqueeze(1).expand(N, L, L)
        blocked = blocked | torch.ones(L, L, dtype=torch.bool, device=seq.device).triu(1)
        blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=seq.device)
        return blocked.repeat_interleave(self.n_heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        h = self.gnn(seq)  # [N, L, d]
        e = self.attention(h, mask=self.attention_mask(seq))
        return self.weight * e[:, -1] + (1.0 - self.weight) * h[:, -1]


@register_model("GCSAN", category="seq",
                paper="C. Xu, P. Zhao, Y. Liu, V. S. Sheng, J. Xu, F. Zhuang, J. Fang, X. Zhou. Graph Contextualized "
                      "Self-Attention Network for Session-based Recommendation. IJCAI 2019.")
class GCSAN(PrefixGraphRecommender):
    """GC-SAN (Xu et al., IJCAI 2019).

    As in SR-GNN (:mod:`recstudio.model.zoo.seq.srgnn`), the sequence's session graph (distinct items as
    nodes, consecutive items as edges, degree-normalised in / out adjacency) is processed by ``step`` gated
    GNN steps starting from the item embeddings; the node vectors read back at the sequence's positions,
    ``H = [h_1..h_n]``, go through ``n_layers`` self-attention blocks (multi-head attention and a point-wise
    feed-forward network, residual + LayerNorm, dropout), giving ``E``. The session vector is the weighted
    combination ``S_f = w E_n + (1 - w) h_n`` of the last position's self-attention output and its GNN
    vector (Eq. 11, ``weight``: 0.4 - 0.8 suggested); item ``i`` scores ``S_f . e_i`` (shared item table;
    ANN works). The loss adds ``reg_weight * ||E_items||_F / num_items`` (RecBole's ``EmbLoss`` on the
    item table, in place of the paper's L2 penalty on the parameters).

    Training: every position predicts the next item from the graph of its prefix
    (:class:`~recstudio.model.zoo.seq.srgnn.PrefixGraphRecommender`: all prefixes of the batch at once).

    Departures: users' histories (the latest ``max_seq_len`` items) replace sessions; self-attention is
    causal within the prefix (as RecBole's; only the last position is read); no position embeddings (as
    in the paper and RecBole); the attention blocks use PyTorch's default init and the GNN
    U(-1/sqrt(d), 1/sqrt(d)) (RecBole: N(0, 0.02) for the linear layers, the GNN's gate weights left
    uninitialised); one dropout rate for attention weights and hidden states (RecBole has two, both 0.5
    by default); evaluation ranks all items.

    Args (config keys): ``embed_dim``, ``step``, ``n_layers``, ``n_heads``, ``ffn_dim``, ``dropout``,
    ``weight``, ``reg_weight``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``,
    ``gbce_t``, ``item_feature_fields``; defaults in ``gcsan.yaml`` (RecBole's).

    Example:
        >>> model, metrics = recstudio.run(model="GCSAN", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "step": "gated GNN steps over the session graph (RecBole: 1)",
        "n_layers": "self-attention blocks after the GNN (RecBole: 2)",
        "n_heads": "attention heads (embed_dim must be divisible by it)",
        "ffn_dim": "width of the blocks' feed-forward layer (RecBole: 256)",
        "dropout": "dropout on the attention weights and inside the blocks (RecBole: 0.5)",
        "weight": "w in S_f = w E_n + (1 - w) h_n, in [0, 1] (paper: 0.4 - 0.8; RecBole: 0.6)",
        "reg_weight": "weight of the item-table regulariser ||E||_F / num_items (RecBole's EmbLoss; 5e-5)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if not 0.0 <= c["weight"] <= 1.0:
            raise ConfigError(f"GCSAN weight must be in [0, 1] (share of the self-attention output), got "
                              f"{c['weight']}.")
        if int(c["step"]) < 1:
            raise ConfigError(f"GCSAN step must be >= 1, got {c['step']}.")
        if c["embed_dim"] % c["n_heads"]:
            raise ConfigError(f"GCSAN embed_dim={c['embed_dim']} must be divisible by n_heads={c['n_heads']}.")
        if c["reg_weight"] < 0:
            raise ConfigError(f"GCSAN reg_weight must be >= 0, got {c['reg_weight']}.")
        return GCSANEncoder(self.item_encoder, c["embed_dim"], int(c["step"]), c["n_layers"], c["n_heads"],
                            c["ffn_dim"], c["dropout"], c["weight"])

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The base's next-item loss at every position plus ``reg_weight * ||E||_F / num_items``."""
        loss = super().training_loss(batch)
        if self.cfg("reg_weight"):
            table = self.item_vectors()
            loss = loss + self.cfg("reg_weight") * table.norm() / table.size(0)
        return loss
