"""Caser: horizontal and vertical convolutions over the embeddings of the latest items, plus the user."""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class CaserEncoder(nn.Module):
    """At every position ``t``: the embedding matrix ``E [window, d]`` of items ``t-window+1..t`` ->
    ``n_v`` vertical filters (weighted sums of the rows, ``[n_v * d]``) and, for every height
    ``h = 1..window``, ``n_h`` horizontal filters ``[h, d]`` (ReLU, max over time) -> dropout ->
    ``z = ReLU(W_1 [.] + b_1)`` -> output ``ReLU(W_2 [z; P_u] + b_2)`` (``[B, L, d]``, zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, num_users: int, dim: int, window: int, n_v: int, n_h: int,
                 dropout: float):
        super().__init__()
        self.item_embedding, self.window, self.n_v, self.n_h = item_embedding, window, n_v, n_h
        self.user_embedding = IdEmbedding(num_users, dim, init="xavier")
        if n_v:
            self.vertical = nn.Conv1d(window, n_v, 1)  # over the rows: n_v weighted sums of the window's items
        if n_h:
            self.horizontal = nn.ModuleList(nn.Conv1d(dim, n_h, h) for h in range(1, window + 1))
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(n_v * dim + n_h * window, dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        e = self.item_embedding(causal_windows(seq, self.window)).reshape(B * L, self.window, -1)  # [BL, W, d]
        parts = []
        if self.n_v:
            parts.append(self.vertical(e).flatten(1))  # [BL, n_v * d]
        if self.n_h:
            et = e.transpose(1, 2)  # [BL, d, W]
            parts += [F.relu(conv(et)).amax(-1) for conv in self.horizontal]  # each [BL, n_h]
        z = F.relu(self.fc1(self.dropout(torch.cat(parts, -1)))).view(B, L, -1)
        p = self.user_embedding(user).unsqueeze(1).expand(B, L, -1)
        out = F.relu(self.fc2(torch.cat([z, p], -1)))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("Caser", category="seq",
                paper="J. Tang, K. Wang. Personalized Top-N Sequential Recommendation via Convolutional Sequence "
                      "Embedding. WSDM 2018.")
class Caser(UserSequentialRecommender):
    """Caser (Tang & Wang, WSDM 2018).

    The embeddings of the latest ``window`` items (``L`` in the paper) form an image ``E [L, d]``.
    ``n_h`` horizontal filters of every height ``h = 1..L`` (``[h, d]``, ReLU, max-pooled over time)
    capture union-level patterns, ``n_v`` vertical filters (``[L, 1]``, weighted sums of the rows)
    point-level ones; their concatenation passes dropout and ``z = ReLU(W_1 . + b_1)``, is joined with the
    user embedding ``P_u`` and mapped to ``y = ReLU(W_2 [z; P_u] + b_2)``, which scores item ``i`` by
    ``<y, Q_i>``.

    Training uses every position of the user's latest ``max_seq_len + 1`` items at once: position
    ``t`` reads items ``t-window+1..t`` (zeros before the start) and predicts item ``t + 1`` (the
    paper's sliding windows with ``T = 1`` target, RecBole's setting).

    Departures from the paper: the output item vectors ``Q_i`` are the input item embeddings (shared,
    as in RecBole) and the output layer is RecBole's ``ReLU(W_2 [z; P_u] + b_2)`` scored by an inner
    product (the paper: item-specific ``W'_i`` and bias ``b'_i``; the shared form keeps ANN retrieval
    exact); the default loss is the full softmax (RecBole's ``CE``; the paper: BCE with 3 negatives,
    ``loss: bce, num_neg: 3``); RecBole's L2 term ``reg_weight`` is ``train.weight_decay`` here (Adam's
    L2 on all parameters); evaluation ranks all items.

    Defaults are RecBole's (``embed_dim`` 64, ``window`` 5, ``n_v`` 4, ``n_h`` 8, dropout 0.4, Adam 1e-3).
    ``max_seq_len`` 50 (RecBole's ``MAX_ITEM_LIST_LENGTH``) bounds how many of a user's latest positions are
    trained per epoch (RecBole trains every position), not what one prediction reads.

    Args (config keys): ``embed_dim``, ``window``, ``n_v``, ``n_h``, ``dropout``, ``max_seq_len``, ``loss``,
    ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``caser.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="Caser", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "max_seq_len": "the user's latest positions trained at once, and the longest evaluation input (one "
                       "prediction reads only the last `window` items)",
        "window": "L: the latest items one prediction reads (RecBole: 5)",
        "n_v": "number of vertical filters (RecBole: 4)",
        "n_h": "horizontal filters per height 1..window (RecBole: 8)",
        "dropout": "dropout on the concatenated convolution outputs (RecBole: 0.4)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["window"] < 1:
            raise ConfigError(f"Caser window must be >= 1, got {c['window']}.")
        if c["n_v"] < 0 or c["n_h"] < 0 or c["n_v"] + c["n_h"] == 0:
            raise ConfigError(f"Caser needs n_v >= 0, n_h >= 0 and at least one filter, got n_v={c['n_v']}, "
                              f"n_h={c['n_h']}.")
        return CaserEncoder(self.item_encoder, self.meta.num_users, c["embed_dim"], c["window"], c["n_v"], c["n_h"],
                            c["dropout"])
