"""HGN: user-conditioned feature and instance gating over the latest items, plus item-item products."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

POOLINGS = ("average", "max")


class HGNEncoder(nn.Module):
    """At every position ``t`` with the window ``E [w, d]`` of items ``t-w+1..t`` (input table) and user ``u``:
    ``E' = E * sigmoid(W_1 E + W_2 u + b)`` (feature gating), ``a = sigmoid(E' w_3 + W_4 u)`` (instance gating,
    one weight per window slot), ``s = sum_k a_k E'_k / sum_k a_k`` (or the row of the largest ``a_k``);
    output ``u + s + sum_k E_k`` (``[B, L, d]``, zeros at padding)."""

    def __init__(self, num_users: int, num_items: int, dim: int, window: int, pooling: str):
        super().__init__()
        self.window, self.pooling = window, pooling
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.item = IdEmbedding(num_items, dim, init="xavier")  # E: the input table (Q is the item tower)
        self.w_1 = nn.Linear(dim, dim, bias=False)
        self.w_2 = nn.Linear(dim, dim, bias=False)
        self.b = nn.Parameter(torch.zeros(dim))
        self.w_3 = nn.Linear(dim, 1, bias=False)
        self.w_4 = nn.Linear(dim, window, bias=False)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        win = causal_windows(seq, self.window)  # [B, L, w]
        e = self.item(win)  # [B, L, w, d]
        u = self.user(user)  # [B, d]
        gated = e * torch.sigmoid(self.w_1(e) + self.w_2(u)[:, None, None, :] + self.b)
        a = torch.sigmoid(self.w_3(gated).squeeze(-1) + self.w_4(u)[:, None, :])  # [B, L, w]
        a = a.masked_fill(win == 0, 0.0)
        if self.pooling == "average":
            s = (a.unsqueeze(-1) * gated).sum(2) / a.sum(2, keepdim=True).clamp(min=1e-8)
        else:
            best = a.argmax(2)  # [B, L]
            s = a.gather(2, best.unsqueeze(-1)) * gated.gather(2, best[..., None, None].expand(-1, -1, 1,
                                                                                             gated.size(-1))).squeeze(2)
        out = u.unsqueeze(1) + s + e.sum(2)
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("HGN", category="seq",
                paper="C. Ma, P. Kang, X. Liu. Hierarchical Gating Networks for Sequential Recommendation. "
                      "KDD 2019.")
class HGN(UserSequentialRecommender):
    """HGN (Ma, Kang & Liu, KDD 2019).

    For user ``u`` and the embeddings ``E [L, d]`` of the latest ``window`` items (``L`` in the paper; input
    table ``E``), a *feature gate* ``E' = E * sigmoid(W_1 E + W_2 u + b)`` selects latent features, an
    *instance gate* ``a = sigmoid(E' w_3 + W_4 u)`` weighs the items, and ``s = sum_k a_k E'_k / sum_k a_k``
    (``pooling: average``; ``max``: the item with the largest weight, scaled by it) pools them. Item ``j``
    scores ``<u + s + sum_k E_k, q_j>``: user-item, gated-sequence-item and the item-item product term,
    all with the output item table ``Q`` (the item tower, a table separate from ``E`` as in the paper), so
    ANN retrieval is exact.

    Training uses every position ``t`` of the user's latest ``max_seq_len + 1`` items (window
    ``t-window+1..t``, zeros before the start; target ``s_{t+1}``).

    Departures from the paper: one target per window (the paper: the next ``|T| = 3`` items, BPR);
    the default loss is the full softmax (RecBole's ``CE``; ``loss: bpr`` is the paper's objective);
    L2 regularisation is ``train.weight_decay``; the instance gate's ``W_4 u`` is masked where the
    window holds no item yet; evaluation ranks all items. Defaults: ``embed_dim`` 64 (RecBole), ``window``
    5 (the paper's ``|L|``), average pooling, Adam 1e-3; ``max_seq_len`` 50 bounds how many of a
    user's latest positions are trained.

    Args (config keys): ``embed_dim``, ``window``, ``pooling``, ``max_seq_len``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields`` (added to the output table ``Q``);
    defaults in ``hgn.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="HGN", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "max_seq_len": "the user's latest positions trained at once, and the longest evaluation input (one "
                       "prediction reads only the last `window` items)",
        "window": "|L|: the latest items one prediction reads (paper: 5)",
        "pooling": "instance-gate pooling: average (weighted mean, the paper's default) or max",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["window"] < 1:
            raise ConfigError(f"HGN window must be >= 1, got {c['window']}.")
        if c["pooling"] not in POOLINGS:
            raise ConfigError(f"HGN pooling must be one of {POOLINGS}, got {c['pooling']!r}.")
        return HGNEncoder(self.meta.num_users, self.meta.num_items, c["embed_dim"], c["window"], c["pooling"])
