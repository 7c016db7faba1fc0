"""ACF: attentive collaborative filtering, item- and component-level attention over the user's history."""
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from recstudio.model.base.itemtower import TwoTowerRecommender
from recstudio.model.family.content import ContentDataMixin
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


class _ACFAttention(nn.Module):
    """The two attention networks of ACF and the user representation they give."""

    def __init__(self, num_users: int, dim: int, content_dim: int, attn_dim: int):
        super().__init__()
        self.user = IdEmbedding(num_users, dim, init="xavier")
        # component level: b(u, l, m) = w2 . ReLU(W2u u + W2x x_lm + b2)
        self.comp_u = nn.Linear(dim, attn_dim)
        self.comp_x = nn.Linear(content_dim, attn_dim, bias=False)
        self.comp_w = nn.Linear(attn_dim, 1, bias=False)
        # item level: a(u, l) = w1 . ReLU(W1u u + W1v v_l + W1p p_l + W1x xbar_l + b1)
        self.item_u = nn.Linear(dim, attn_dim)
        self.item_v = nn.Linear(dim, attn_dim, bias=False)
        self.item_p = nn.Linear(dim, attn_dim, bias=False)
        self.item_x = nn.Linear(content_dim, attn_dim, bias=False)
        self.item_w = nn.Linear(attn_dim, 1, bias=False)

    def item_terms(self, v: torch.Tensor, p: torch.Tensor, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The user-independent part ``W1v v_l + W1p p_l (+ W1x x_l)`` of the item-level attention, per item
        ``[..., attn]`` (``x``: the item's content when it has one component, so ``xbar_l = x_l``)."""
        out = self.item_v(v) + self.item_p(p)
        return out if x is None else out + self.item_x(x)

    def component_summary(self, u: torch.Tensor, x_hist: torch.Tensor) -> torch.Tensor:
        """``xbar [B, L, D]`` from the components ``x_hist [B, L, M, D]`` and the user vectors ``u [B, d]``."""
        b = self.comp_w(torch.relu(self.comp_u(u)[:, None, None] + self.comp_x(x_hist))).squeeze(-1)  # [B, L, M]
        beta = torch.softmax(b, dim=-1)
        return (beta.unsqueeze(-1) * x_hist).sum(-2)

    def forward(self, users, item_term, p_hist, mask) -> torch.Tensor:
        """users [B]; item_term [B, L, attn] (``item_terms`` of the history items, plus ``W1x xbar_l``);
        p_hist [B, L, d]; mask [B, L] (True: a real history item) -> ``u + sum_l alpha(u, l) p_l`` [B, d]."""
        u = self.user(users)
        a = self.item_w(torch.relu(self.item_u(u)[:, None] + item_term)).squeeze(-1)                   # [B, L]
        a = a.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(a, dim=-1)
        alpha = torch.nan_to_num(alpha, nan=0.0)  # a user with no history item: u alone
        return u + (alpha.unsqueeze(-1) * p_hist).sum(1)


@register_model("ACF", category="general",
                paper="J. Chen, H. Zhang, X. He, L. Nie, W. Liu, T.-S. Chua. Attentive Collaborative Filtering: "
                      "Multimedia Recommendation with Item- and Component-Level Attention. SIGIR 2017.")
class ACF(ContentDataMixin, TwoTowerRecommender):
    """ACF (Chen et al., SIGIR 2017). A user is represented by their id embedding plus an attention-weighted
    sum of auxiliary vectors ``p_l`` of the items ``l`` in their history ``R(u)``, and items by ``v_j``::

        score(u, j) = (u + sum_{l in R(u)} alpha(u, l) p_l) . v_j

    The item-level attention ``alpha(u, l) = softmax_l w1 . ReLU(W1u u + W1v v_l + W1p p_l + W1x xbar_l + b1)``
    reads the item's content summarised by the component-level attention
    ``xbar_l = sum_m beta(u, l, m) x_lm``, ``beta(u, l, m) = softmax_m w2 . ReLU(W2u u + W2x x_lm + b2)`` over
    the item's content components ``x_lm`` (image regions, video frames). Trained with BPR over sampled
    negatives. The score is an inner product of a query and ``v_j`` (ANN works).

    Content (any :class:`~recstudio.data.content.ContentStore`): rows ``[M, D]`` are M components of D
    features; a 1-d row ``[D]`` is one component (the component attention is then the identity); rows of more
    dimensions are ``[M, prod(rest)]``; uint8 enters as [0, 1]. The history is the user's training items
    (``needs: train_graph``), at most ``max_history`` of them (a fixed random subset, drawn with the seed,
    for longer histories) padded into a ``[num_users, max_history]`` buffer on the model's device, so an
    evaluation batch reads its users' histories by one index and their content by one gather. The user-independent
    part of the item-level attention (``W1v v_l + W1p p_l``, and ``W1x x_l`` for one-component content) is
    computed once per distinct history item of a batch and gathered (the same sums, far fewer products).

    Departures from the paper: while training, the positive item is masked out of its own user's history
    (so training scores pairs as ranking does; the paper does not say); histories are capped at
    ``max_history``; Adam instead of SGD; regularisation is the optimizer's ``weight_decay``. Items are
    scored through their id vectors ``v_j`` as in the paper, so ACF cannot score items without interactions
    (content only enters the user side).

    Args (config keys): ``embed_dim``, ``attention_dim``, ``max_history``, ``sampler``, ``num_neg``, ``loss``;
    content keys ``content_path``, ``content_ids``, ``content_field``; defaults in ``acf.yaml``.

    Example:
        >>> model = recstudio.get_model("ACF")(content="region_features.npy")     # [items, 49, 2048]  # doctest: +SKIP
        >>> model.fit(dataset)                                                       # doctest: +SKIP
    """

    needs = frozenset({"item_content", "train_graph"})
    option_help = {
        **{k: v for k, v in TwoTowerRecommender.option_help.items() if k != "score_func"},
        "embed_dim": "size of the user, item and auxiliary item vectors u, v, p",
        "attention_dim": "hidden size of the item- and component-level attention networks",
        "max_history": "most history items per user the attention reads (a fixed random subset beyond that)",
    }

    def build_blocks(self) -> None:
        m, d = self.meta, self.cfg("embed_dim")
        if self.cfg("attention_dim") < 1 or self.cfg("max_history") < 1:
            raise ConfigError(f"ACF needs attention_dim >= 1 and max_history >= 1, got {self.cfg('attention_dim')} "
                              f"and {self.cfg('max_history')}.")
        shape = self.content_shape
        self.components = 1 if len(shape) == 1 else int(shape[0])
        self.comp_dim = int(np.prod(shape)) // self.components
        self.item_emb = IdEmbedding(m.num_items, d, init="xavier")   # v_j
        self.aux_emb = IdEmbedding(m.num_items, d, init="xavier")    # p_l
        self.attention = _ACFAttention(m.num_users, d, self.comp_dim, self.cfg("attention_dim"))
        self.register_buffer("history", self._history_table(), persistent=False)
        super().build_blocks()

    def _history_table(self) -> torch.Tensor:
        """``[num_users, L]`` training items of each user (0 = padding), L = min(max_history, longest)."""
        indptr, indices = self.meta.train_indptr.numpy(), self.meta.train_indices.numpy()
        lengths = np.diff(indptr)
        width = int(max(1, min(self.cfg("max_history"), lengths.max(initial=0))))
        out = np.zeros((self.meta.num_users, width), dtype=np.int64)
        rng = np.random.default_rng(self.cfg("seed"))
        for u in np.nonzero(lengths)[0]:
            items = indices[indptr[u]:indptr[u + 1]]
            if len(items) > width:
                items = np.sort(rng.choice(items, size=width, replace=False))
            out[u, :len(items)] = items
        return torch.as_tensor(out)

    def _get_item_encoder(self) -> nn.Module:
        return self.item_emb

    def _get_query_encoder(self) -> nn.Module:
        return self.attention

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        hist = self.history[users]                                   # [B, L]
        mask = hist > 0
        if self.training and self.meta.iid_field in batch:          # the positive is not its own evidence
            mask = mask & (hist != batch[self.meta.iid_field][:, None])
        # the item-only parts are computed once per distinct history item of the batch, then gathered
        items, at = torch.unique(hist, return_inverse=True)
        p = self.aux_emb(items)
        att = self.attention
        if self.components == 1:                                     # one component: beta = 1, xbar_l = x_l
            term = att.item_terms(self.item_emb(items), p, self.content(items).reshape(len(items), -1))[at]
        else:
            x = self.content(hist).reshape(*hist.shape, self.components, self.comp_dim)
            x_bar = att.component_summary(att.user(users), x)
            term = att.item_terms(self.item_emb(items), p)[at] + att.item_x(x_bar)
        return att(users, term, p[at], mask)
