"""BST: a transformer layer over the user's behaviour sequence together with the target item."""
import torch
from torch import nn

from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.din import SEQUENCE_HELP, BehaviourSequenceRecommender, tower
from recstudio.utils.errors import ConfigError

POOLINGS = ("concat", "mean", "target")


@register_model("BST", category="ctr",
                paper="Q. Chen, H. Zhao, W. Li, P. Huang, W. Ou. Behavior Sequence Transformer for E-commerce "
                      "Recommendation in Alibaba. DLP-KDD 2019.")
class BST(BehaviourSequenceRecommender):
    """BST (Chen et al., DLP-KDD 2019). The sequence ``[e_1, ..., e_L, v]`` (the last ``max_seq_len`` items before
    the row and the target item ``v`` last, each the concatenation of its item-field embeddings, width ``H``)
    plus a learned position embedding goes through ``n_layers`` transformer blocks (the paper's:
    ``S = LayerNorm(E + Dropout(MultiHead(E)))``, ``F = LayerNorm(S + Dropout(LeakyReLU(S W1 + b1) W2 + b2))``,
    ``n_heads`` heads, padding masked as keys), so every behaviour is re-encoded in the light of the target.
    The outputs, pooled by ``pooling`` (``concat``: the ``L + 1`` outputs side by side, padding zeroed, as the
    paper; ``mean``: their average over the valid positions and the target; ``target``: the target's output),
    are concatenated with the user / context fields ("other features") and ``y = MLP(...)`` with LeakyReLU
    (the paper's [1024, 512, 256]).

    Departures from the paper: the position of a behaviour is its rank from the target (1 = the latest, 0 =
    the target itself), not the paper's time difference ``t(v_t) - t(v_i)`` (the history carries no
    timestamps); the behaviour sequence is every interaction before the row in time order (clicked or not,
    labels unused), ties in time in file order; the target's own fields enter only through the transformer
    (as in the paper's figure); no first-order term; ``embed_reg`` is a plain L2 over the embeddings.
    Defaults: the paper's one block, LeakyReLU MLP [1024, 512, 256] and Adam; embedding 10 and 2 heads (the
    paper's 8 heads need ``H`` divisible by 8: with 3 item fields of size 10, ``H = 30``), max_seq_len 20 (the
    paper's).

    Args (config keys): ``embed_dim``, ``max_seq_len``, ``n_layers``, ``n_heads``, ``ffn_dim``,
    ``attn_dropout``, ``pooling``, ``mlp_hidden``, ``activation``, ``dropout``, ``batch_norm``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``bst.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="BST", dataset="ml-1m", label_threshold=4)   # doctest: +SKIP
    """

    history_padding = "left"
    option_help = {**SEQUENCE_HELP,
                   "n_layers": "number of transformer blocks (the paper: 1)",
                   "n_heads": "attention heads; must divide the item width (item fields x embed_dim)",
                   "ffn_dim": "hidden size of each block's feed-forward layer (null: 4 x the item width)",
                   "attn_dropout": "dropout inside the transformer blocks (attention weights and residuals)",
                   "pooling": "how the transformer outputs enter the MLP: concat (the paper), mean or target",
                   "mlp_hidden": "hidden sizes of the prediction MLP",
                   "activation": "activation of the prediction MLP (leakyrelu as the paper, dice, relu, ...)",
                   "dropout": "dropout after each hidden layer of the prediction MLP",
                   "batch_norm": "batch norm before each hidden activation of the prediction MLP"}

    def build_sequence(self) -> None:
        h, heads, layers = self.item_dim, int(self.cfg("n_heads")), int(self.cfg("n_layers"))
        pooling = str(self.cfg("pooling")).lower()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got {self.cfg('pooling')!r}.")
        if heads < 1 or h % heads:
            raise ConfigError(f"n_heads ({heads}) must divide the item width {h} ({len(self.item_keys)} item "
                              f"fields x embed_dim {self.embed_dim}); pick a divisor of {h} or change embed_dim.")
        if layers < 1:
            raise ConfigError(f"n_layers must be >= 1, got {layers}.")
        self.pooling = pooling
        length = int(self.cfg("max_seq_len"))
        ffn = self.cfg("ffn_dim")
        self.position = nn.Embedding(length + 1, h)
        block = nn.TransformerEncoderLayer(h, heads, int(ffn) if ffn else 4 * h, float(self.cfg("attn_dropout")),
                                           activation=nn.LeakyReLU(), batch_first=True)
        self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        out = {"concat": (length + 1) * h, "mean": h, "target": h}[pooling]
        self.mlp = tower([self.query_dim + out, *self.cfg("mlp_hidden"), 1], self.cfg("activation"),
                         float(self.cfg("dropout")), bool(self.cfg("batch_norm")))

    def encode(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Transformer outputs ``[N, L + 1, H]`` of the (left-padded) behaviours ``[N, L, H]`` and the targets
        ``[N, H]`` (the last position), padded positions zeroed."""
        seq = torch.cat([hist, target[:, None]], 1)
        length = seq.shape[1]
        rank = torch.arange(length - 1, -1, -1, device=seq.device)      # L .. 1 for the behaviours, 0: target
        seq = seq + self.position(rank)[None]
        valid = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        out = self.transformer(seq, src_key_padding_mask=~valid)
        return out * valid[..., None]

    def sequence_logit(self, state, target):
        out = self.encode(state["hist"], state["mask"], target)
        if self.pooling == "concat":
            pooled = out.flatten(1)
        elif self.pooling == "mean":
            pooled = out.sum(1) / (state["mask"].sum(1, keepdim=True) + 1).to(out.dtype)
        else:
            pooled = out[:, -1]
        return self.mlp(torch.cat([state["query"], pooled], -1)).squeeze(-1)
