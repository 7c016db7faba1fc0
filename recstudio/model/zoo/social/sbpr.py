"""SBPR: social Bayesian personalised ranking (items of a user's friends ranked between own and other items)."""
from typing import Dict

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recstudio.model.family.social import SOCIAL_HELP, SocialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("SBPR", category="social",
                paper="T. Zhao, J. McAuley, I. King. Leveraging Social Connections to Improve Personalized Ranking "
                      "for Collaborative Filtering. CIKM 2014.")
class SBPR(SocialRecommender):
    """Matrix factorisation ``x_ui = p_u . q_i`` trained with SBPR's ordering (Zhao et al., CIKM 2014): a user
    prefers the items they consumed (``i``) to the items only their friends consumed (``k``, *social items*),
    and those to the rest (``j``),

    ``L = -ln sigma((x_ui - x_uk) / (1 + s_uk)) - ln sigma(x_uk - x_uj)``

    with ``s_uk`` the number of ``u``'s friends who consumed ``k`` (the more friends, the smaller the gap the
    model must open between ``i`` and ``k``). A user whose friends consumed nothing new trains with plain BPR,
    ``-ln sigma(x_ui - x_uj)``; with ``num_neg > 1`` the terms with ``j`` are averaged over the negatives.
    The social items of every user (friends' *training* items minus the user's own) are precomputed as a
    sparse matrix; each training row draws its ``k`` uniformly among them (a generator seeded by ``seed``),
    and its negatives ``j`` are redrawn until they are neither the user's nor a social item (up to
    ``neg_redraws`` rounds; a row still unlucky keeps the dataset's negative, unseen by the user).

    Departures from the paper: no item bias term (``x_ui = p_u . q_i``, as every two-tower model here); the
    Gaussian priors are ``reg_weight`` (RecBole's EmbLoss on the batch's embeddings) instead of per-parameter
    L2 in SGD; mini-batch Adam over the training interactions (the paper samples (u, i, k, j) tuples with SGD);
    ``k`` is drawn uniformly over the social items (not weighted by ``s_uk``). Defaults as our BPR (embedding
    64, Adam 1e-3, batch 2048), the friends network undirected (the paper's social connections).

    Args (config keys): ``embed_dim``, ``social_symmetric``, ``reg_weight``, ``neg_redraws``, ``sampler``,
    ``num_neg``, ``score_func``; defaults in ``sbpr.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SBPR", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    option_help = {**{k: v for k, v in SOCIAL_HELP.items() if k != "loss"},
                   "neg_redraws": "rounds of redrawing a negative that is a social item of the user (0: keep the "
                                  "dataset's negative, unseen by the user but maybe a friend's item)"}

    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        return build_loss("bpr")  # the fallback of users without social items; it also asks the data for negatives

    def build_blocks(self) -> None:
        if int(self.cfg("neg_redraws")) < 0:
            raise ConfigError(f"neg_redraws must be >= 0, got {self.cfg('neg_redraws')!r}.")
        if self.cfg("sampler") != "masked_uniform":
            raise ConfigError(f"SBPR draws its negatives from the data (sampler 'masked_uniform', then redrawn off "
                              f"the social items); got sampler {self.cfg('sampler')!r}.")
        super().build_blocks()
        R = self.meta.train_matrix().astype(np.float32)
        friends = self.social_adj_binary()
        S = (friends @ R).tocsr()                     # s_uk: friends of u who consumed k
        S = (S - S.multiply(R > 0)).tocsr()           # minus the user's own items
        S.eliminate_zeros()
        S.sort_indices()
        n_items = self.meta.num_items
        self.register_buffer("social_indptr", torch.as_tensor(S.indptr.astype(np.int64)), persistent=False)
        self.register_buffer("social_items", torch.as_tensor(S.indices.astype(np.int64)), persistent=False)
        self.register_buffer("social_count", torch.as_tensor(S.data.astype(np.float32)), persistent=False)
        known = (S + R).tocsr()                       # the user's items and social items: not negatives
        known.sort_indices()
        rows = np.repeat(np.arange(known.shape[0], dtype=np.int64), np.diff(known.indptr))
        self.register_buffer("known_keys", torch.as_tensor(rows * n_items + known.indices.astype(np.int64)),
                             persistent=False)
        self._social_generator = torch.Generator().manual_seed(int(self.config["seed"]))

    def social_adj_binary(self) -> sp.csr_matrix:
        """``num_users x num_users`` 0/1 CSR of the friendships (``social_symmetric`` as the base reads it)."""
        m = self.meta.social_matrix(symmetric=bool(self.cfg("social_symmetric")))
        return (m > 0).astype(np.float32).tocsr()

    # ---- sampling ----------------------------------------------------------------------------------
    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self._social_generator).to(self.social_indptr.device)

    def sample_social_items(self, users: torch.Tensor):
        """``(k [B], s_uk [B], has [B])``: a uniform social item of each user, its friend count, and whether
        the user has any (``k`` = 0 where not)."""
        start, end = self.social_indptr[users], self.social_indptr[users + 1]
        size = end - start
        has = size > 0
        pick = start + (self._rand(len(users)) * size).long().clamp(max=(size - 1).clamp(min=0))
        pick = torch.where(has, pick, torch.zeros_like(pick))
        if len(self.social_items) == 0:
            zeros = torch.zeros_like(users)
            return zeros, zeros.float(), has
        k = torch.where(has, self.social_items[pick], torch.zeros_like(pick))
        s = torch.where(has, self.social_count[pick], torch.zeros_like(pick, dtype=torch.float32))
        return k, s, has

    def _is_known(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.meta.num_items + items
        pos = torch.searchsorted(self.known_keys, keys).clamp(max=max(len(self.known_keys) - 1, 0))
        return self.known_keys[pos] == keys if len(self.known_keys) else torch.zeros_like(keys, dtype=torch.bool)

    def redraw_negatives(self, users: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``neg`` ``[B, K]`` with the social items of the row's user redrawn uniformly (``neg_redraws`` rounds)."""
        u = users[:, None].expand_as(neg)
        bad = self._is_known(u, neg)
        for _ in range(int(self.cfg("neg_redraws"))):
            if not bool(bad.any()):
                break
            n = int(bad.sum())
            draw = 1 + (self._rand(n) * (self.meta.num_items - 1)).long().clamp(max=self.meta.num_items - 2)
            ok = ~self._is_known(u[bad], draw)
            idx = bad.nonzero(as_tuple=True)
            keep = tuple(i[ok] for i in idx)
            neg = neg.index_put(keep, draw[ok])
            bad = bad.index_put(keep, torch.zeros_like(draw[ok], dtype=torch.bool))
        return neg

    # ---- loss --------------------------------------------------------------------------------------
    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        self.invalidate_cache()
        users, pos_ids = batch[self.meta.uid_field], batch[self.meta.iid_field]
        neg = batch["neg_item"]
        neg = neg.view(len(users), -1)
        neg = self.redraw_negatives(users, neg)
        k, s, has = self.sample_social_items(users)
        q = self.encode_query(batch)
        x_i = self.score_func(q, self.encode_items(pos_ids))
        x_k = self.score_func(q, self.encode_items(k))
        x_j = self.score_func(q[:, None, :].expand(-1, neg.shape[1], -1), self.encode_items(neg))
        social = F.softplus(-(x_i - x_k) / (1.0 + s)) + F.softplus(-(x_k[:, None] - x_j)).mean(-1)
        plain = F.softplus(-(x_i[:, None] - x_j)).mean(-1)
        loss = torch.where(has, social, plain).mean()
        reg = float(self.cfg("reg_weight", 0.0))
        if reg > 0:
            loss = loss + reg * self.emb_regularizer(batch)
        return loss

    # ---- resuming: the social sampler continues where it stopped -----------------------------------
    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["social_generator_state"] = self._social_generator.get_state()

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("social_generator_state")
        if state is not None and getattr(self, "_social_generator", None) is not None:
            self._social_generator.set_state(state)
