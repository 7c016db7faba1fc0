"""SHAN: user-queried attention over the long-term items, then over [long-term vector; the latest items]."""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class SHANEncoder(nn.Module):
    """At every position ``t`` (``k = short_len``): the long-term set is the real items at positions ``<= t - k``,
    the short-term set items ``t-k+1..t``.

    ``a_j = softmax_j(u^T ReLU(W_1 v_j + b_1))`` over the long-term set, ``u_long = sum_j a_j v_j`` (cumulative
    sums over the row, O(L)); ``b = softmax(u^T ReLU(W_2 x + b_2))`` over ``x in {u_long} + short-term set``,
    output ``sum b_x x`` (``[B, L, d]``, zeros at padding; ``u_long`` is left out while the long-term set is
    empty)."""

    def __init__(self, item_embedding: nn.Module, num_users: int, dim: int, short_len: int):
        super().__init__()
        self.item_embedding, self.short_len = item_embedding, short_len
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.long_proj = nn.Linear(dim, dim)
        self.short_proj = nn.Linear(dim, dim)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        k = self.short_len
        v = self.item_embedding(seq)  # [B, L, d]
        u = self.user(user)  # [B, d]
        real = seq != 0
        # long-term attention: the scores do not depend on t, so the prefix softmax is a ratio of cumsums
        e = (F.relu(self.long_proj(v)) * u.unsqueeze(1)).sum(-1).masked_fill(~real, float("-inf"))  # [B, L]
        w = torch.exp(e - e.amax(1, keepdim=True).clamp(min=-1e30).detach())  # 0 at padding
        num, den = (w.unsqueeze(-1) * v).cumsum(1), w.cumsum(1)
        # position t uses the sums up to t - k
        num = F.pad(num, (0, 0, k, 0))[:, :L]
        den = F.pad(den, (k, 0))[:, :L]
        has_long = den > 0
        u_long = num / den.clamp(min=1e-30).unsqueeze(-1)  # [B, L, d], 0 where no long-term item
        # short-term attention over [u_long, v_{t-k+1}, ..., v_t]
        win = causal_windows(seq, k)  # [B, L, k]
        cand = torch.cat([u_long.unsqueeze(2), self.item_embedding(win)], 2)  # [B, L, k + 1, d]
        ok = torch.cat([has_long.unsqueeze(-1), win != 0], -1)
        ok = ok | (~real).unsqueeze(-1)  # padding positions: keep the softmax finite, zeroed below
        f = (F.relu(self.short_proj(cand)) * u[:, None, None, :]).sum(-1).masked_fill(~ok, float("-inf"))
        out = (torch.softmax(f, -1).unsqueeze(-1) * cand).sum(2)
        return out.masked_fill((~real).unsqueeze(-1), 0.0)


@register_model("SHAN", category="seq",
                paper="H. Ying, F. Zhuang, F. Zhang, Y. Liu, G. Xu, X. Xie, H. Xiong, J. Wu. Sequential "
                      "Recommender System based on Hierarchical Attention Networks. IJCAI 2018.")
class SHAN(UserSequentialRecommender):
    """SHAN (Ying et al., IJCAI 2018).

    The user's items up to ``t`` are split into the *short-term* set (the latest ``short_len`` items; the
    paper's current session) and the *long-term* set (the earlier ones). The first attention layer,
    queried by the user embedding ``u``, weighs the long-term items: ``a_j = softmax(u^T ReLU(W_1 v_j + b_1))``,
    ``u_long = sum_j a_j v_j``; the second weighs ``u_long`` and the short-term items the same way (``W_2``,
    ``b_2``), and the hybrid vector ``sum b_x x`` scores item ``i`` by ``<., v_i>`` with the shared item
    embeddings (ANN works).

    Every position ``t`` of the user's latest ``max_seq_len + 1`` items is a training example; the
    long-term set is the real items of the input window before the short-term ones (so it is bounded by
    ``max_seq_len``, as in RecBole's ``MAX_ITEM_LIST_LENGTH``).

    Departures from the paper: sessions are the latest ``short_len`` items (RecBole's form: no
    sessions in the data); the default loss is the full softmax (RecBole's ``CE``; the paper: BPR,
    ``loss: bpr``); the paper's separate L2 weights (RecBole ``reg_weight [0.01, 0.0001]``) are one
    ``train.weight_decay``; evaluation ranks all items. Defaults are RecBole's (``embed_dim`` 64,
    ``short_len`` 2, Adam 1e-3), ``max_seq_len`` 50.

    Args (config keys): ``embed_dim``, ``short_len``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``shan.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SHAN", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "short_len": "the latest items forming the short-term set (RecBole's short_item_length: 2)",
        "max_seq_len": "longest input: the long-term set is the window's items before the short-term ones",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if not 1 <= c["short_len"] < c["max_seq_len"]:
            raise ConfigError(f"SHAN short_len must be in [1, max_seq_len), got short_len={c['short_len']}, "
                              f"max_seq_len={c['max_seq_len']}.")
        return SHANEncoder(self.item_encoder, self.meta.num_users, c["embed_dim"], c["short_len"])
