"""Fossil: a FISM-style similarity term over all earlier items plus a personalised high-order Markov chain."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows, item_table
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class FossilEncoder(nn.Module):
    """At every position ``t`` (items ``s_1..s_t``, ``P`` the first ``d`` columns of the item tower):
    ``n_t^{-alpha} sum_{j<=t} P_{s_j} + sum_{k=1}^{order} (eta_k + eta^u_k) P_{s_{t-k+1}}``, then a 1 appended
    (it meets the item bias; ``[B, L, d + 1]``, zeros at padding)."""

    def __init__(self, item_embedding: nn.Module, num_users: int, dim: int, order: int, alpha: float):
        super().__init__()
        self.item_embedding, self.dim, self.order, self.alpha = item_embedding, dim, order, alpha
        self.eta = nn.Parameter(torch.zeros(order))
        self.eta_user = IdEmbedding(num_users, order, init="normal", init_std=0.01)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        real = (seq != 0).unsqueeze(-1)
        p = self.item_embedding(seq)[..., :self.dim]  # [B, L, d], zeros at padding
        count = real.to(p.dtype).cumsum(1).clamp(min=1.0)
        long_term = p.cumsum(1) / count ** self.alpha
        # window slot order is oldest first: slot order-1 is the latest item (k = 1)
        win = self.item_embedding(causal_windows(seq, self.order))[..., :self.dim]  # [B, L, order, d]
        weight = (self.eta + self.eta_user(user)).flip(-1)  # [B, order], slot j <- k = order - j
        short_term = (weight[:, None, :, None] * win).sum(2)
        q = long_term + short_term
        out = torch.cat([q, torch.ones_like(q[..., :1])], -1)
        return out.masked_fill(~real, 0.0)


@register_model("Fossil", category="seq",
                paper="R. He, J. McAuley. Fusing Similarity Models with Markov Chains for Sparse Sequential "
                      "Recommendation. ICDM 2016.")
class Fossil(UserSequentialRecommender):
    """Fossil (He & McAuley, ICDM 2016).

    The score of item ``i`` after the items ``s_1..s_t`` of user ``u`` is
    ``b_i + < n_t^{-alpha} sum_{j<=t} P_{s_j} + sum_{k=1}^{order} (eta_k + eta^u_k) P_{s_{t-k+1}}, Q_i >``:
    a FISM-style long-term similarity term (``alpha`` smooths the normalisation by the history length
    ``n_t``) plus an ``order``-th order Markov chain whose weights are global (``eta``) plus personal
    (``eta^u``). The item tower holds ``[Q_i ; b_i]`` and the query is ``[. ; 1]``, one inner product (ANN
    works).

    Every position ``t`` of the user's latest ``max_seq_len + 1`` items is a training example; the
    long-term sum runs over the items of the input window up to ``t`` (so it is bounded by
    ``max_seq_len``, as in RecBole).

    Departures from the paper: the input table ``P`` is the output table ``Q`` (shared, as in RecBole);
    the default loss is the full softmax (RecBole's ``CE``; the paper: S-BPR, ``loss: bpr``); L2
    regularisation is ``train.weight_decay``; evaluation ranks all items. Defaults are RecBole's
    (``embed_dim`` 64, ``order`` 3, ``alpha`` 0.6, Adam 1e-3), ``max_seq_len`` 50.

    Args (config keys): ``embed_dim``, ``order``, ``alpha``, ``max_seq_len``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``fossil.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="Fossil", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "order": "L: order of the Markov chain, the latest items weighted by eta + eta^u (RecBole: 3)",
        "alpha": "exponent of the history-length normalisation n_t^-alpha of the similarity term (0..1; 0.6)",
        "max_seq_len": "longest input; the similarity term sums the window's items up to each position",
    }

    def _get_item_encoder(self) -> nn.Module:
        return item_table(self, self.cfg("embed_dim") + 1)  # [Q_i ; b_i]

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["order"] < 1:
            raise ConfigError(f"Fossil order must be >= 1, got {c['order']}.")
        if not 0.0 <= c["alpha"] <= 1.0:
            raise ConfigError(f"Fossil alpha must be in [0, 1], got {c['alpha']}.")
        return FossilEncoder(self.item_encoder, self.meta.num_users, c["embed_dim"], c["order"], c["alpha"])
