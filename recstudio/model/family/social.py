"""``SocialRecommender``: the base of social recommenders (models that read a user -> user network).

A social model is a two-tower model (user vectors . item vectors) whose user side also sees the
network of the ``.net`` file (``needs = {"social"}``; the :class:`~recstudio.model.base.context.ModelContext`
carries ``social_src / social_dst / social_weight``, so the network is saved inside every checkpoint and a
loaded model needs no dataset). The base turns the network into a **row-normalised adjacency** ``T``
(``num_users x num_users``, a ``torch.sparse`` non-persistent buffer ``social_adj``, rebuilt from the
context on load):

``T_uv = w_uv / sum_v' w_uv'`` over the users ``v`` that ``u`` links to. With unit weights (every dataset
here) this is SocialMF's trust ``T_uv = 1 / |N(u)|`` and DiffNet's mean over ``N(u)``. The ``social_symmetric``
key decides whether ``N(u)`` is ``u``'s out-links only (``false``: the network as directed in ``.net``) or
its out- and in-links (``true``: every link also read backwards). **Users without friends** have an all-zero
row of ``T``: their propagated social vector is zero, and the social regulariser leaves them out (so it
does not act as an extra L2 penalty on them); ``social_degree`` tells which users have friends.

Helpers for the models:

- :meth:`SocialRecommender.social_regularizer`: SocialMF's trust term
  ``sum_u ||U_u - sum_v T_uv U_v||^2`` over the distinct users of a batch that have friends.
- :meth:`SocialRecommender.social_propagate`: DiffNet's influence diffusion, ``K`` layers of either
  ``h^{k+1} = sigmoid(W_k [h^k ; T h^k])`` (the paper's layer) or ``h^{k+1} = T h^k`` summed over layers
  (RecBole-GNN's parameter-free form).
- :meth:`SocialRecommender.item_aggregate`: the mean of each user's *training* items' vectors
  (``train_graph``, ``ModelContext.train_matrix()``), row-normalised as a sparse buffer ``interest_adj``
  (a model asks for it with ``uses_interest_graph = True`` and ``train_graph`` in ``needs``).
- :meth:`SocialRecommender.emb_regularizer`: RecBole's ``EmbLoss``, the squared L2 norm of the batch's
  user / positive / negative id embeddings over the batch size, weighted by ``reg_weight``.

Hooks a model overrides:

- ``all_user_vectors()`` -> ``[num_users, d]``: the user vectors of every user when they depend on
  other users (propagation). The base caches them outside training (computed once per evaluation) and
  drops the cache at every training step, ``train()`` switch and ``load_state_dict``. Models whose user
  vector is the id embedding (SocialMF) do not override it.
- ``social_loss(batch)`` -> a scalar added to the ranking loss (default: zero).

Example:
    >>> from recstudio.model.family.social import SocialRecommender
    >>> class MeanFriends(SocialRecommender):        # doctest: +SKIP
    ...     def all_user_vectors(self):
    ...         users = self.query_encoder.embedding.weight
    ...         return users + torch.sparse.mm(self.social_adj, users)
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.utils.errors import ConfigError

#: help text of the keys social models declare in their YAML
SOCIAL_HELP = {
    **TOWER_HELP,
    "social_symmetric": "read every link of the .net also backwards (true: friends = out- and in-links), "
                        "or keep the network directed (false: u's neighbours are the users u links to)",
    "reg_weight": "weight of the squared L2 norm of the batch's user / item id embeddings over the batch size "
                  "(RecBole's EmbLoss)",
}


def row_normalized(m: sp.spmatrix) -> sp.csr_matrix:
    """``m`` with each row divided by its sum (rows summing to 0 stay 0), as float32 CSR.

    Example:
        >>> row_normalized(sp.csr_matrix(np.array([[0., 2., 2.], [0., 0., 0.]]))).toarray()
        array([[0. , 0.5, 0.5],
               [0. , 0. , 0. ]], dtype=float32)
    """
    m = sp.csr_matrix(m, dtype=np.float64)
    sums = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    out = (sp.diags(inv) @ m).tocsr().astype(np.float32)
    out.sort_indices()
    return out


def to_torch_sparse(m: sp.spmatrix) -> torch.Tensor:
    """A scipy matrix as a coalesced ``torch.sparse_coo_tensor`` (float32)."""
    coo = sp.coo_matrix(m)
    index = torch.as_tensor(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.as_tensor(coo.data, dtype=torch.float32), coo.shape,
                                   check_invariants=False).coalesce()


class SocialRecommender(TwoTowerRecommender):
    """Two-tower model with a social network (see the module docstring for the hooks and helpers).

    Buffers (non-persistent, rebuilt from the context): ``social_adj`` (row-normalised ``T``),
    ``social_degree`` (neighbours per user in ``T``), and with ``uses_interest_graph`` ``interest_adj``
    (row-normalised train user x item matrix).
    """

    base_name = "Social"
    needs = frozenset({"social"})
    #: build ``interest_adj`` (the mean of each user's train items); the model must also need train_graph
    uses_interest_graph = False
    option_help = dict(SOCIAL_HELP)

    # ---- building ------------------------------------------------------------------------------
    def build_blocks(self) -> None:
        if self.cfg("reg_weight", 0.0) < 0:
            raise ConfigError(f"reg_weight must be >= 0, got {self.cfg('reg_weight')}.")
        super().build_blocks()
        self._user_cache: Optional[torch.Tensor] = None
        adj = self.social_adjacency(self.meta, bool(self.cfg("social_symmetric", False)))
        self.register_buffer("social_adj", to_torch_sparse(adj), persistent=False)
        self.register_buffer("social_degree", torch.as_tensor(np.diff(adj.indptr).astype(np.int64)),
                             persistent=False)
        if self.uses_interest_graph:
            if "train_graph" not in self.needs:
                raise ConfigError(f"{type(self).__name__} sets uses_interest_graph but does not need 'train_graph'.")
            self.register_buffer("interest_adj", to_torch_sparse(row_normalized(self.meta.train_matrix())),
                                 persistent=False)

    @staticmethod
    def social_adjacency(meta, symmetric: bool) -> sp.csr_matrix:
        """Row-normalised ``T`` (``num_users x num_users`` CSR) of the context's network: ``.net`` links
        (weights summed over repeats, self-links dropped), also read backwards when ``symmetric``."""
        return row_normalized(meta.social_matrix(symmetric=symmetric))

    @property
    def users_without_friends(self) -> int:
        """Real users (id >= 1) with an empty row of ``T``."""
        return int((self.social_degree[1:] == 0).sum())

    # ---- helpers -------------------------------------------------------------------------------
    def social_regularizer(self, user_table: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``sum_u ||U_u - sum_v T_uv U_v||^2`` over the distinct ``users`` that have friends.

        Args:
            user_table: ``[num_users, d]`` user vectors ``U``.
            users: user ids ``[*]`` (repeats count once; users without friends are skipped).
        """
        users = torch.unique(users.reshape(-1))
        users = users[self.social_degree[users] > 0]
        if users.numel() == 0:
            return user_table.sum() * 0.0
        trusted = torch.sparse.mm(self.social_adj, user_table)[users]  # one spmm: faster than sparse row selection
        return ((user_table[users] - trusted) ** 2).sum()

    def social_propagate(self, h0: torch.Tensor, layers: Optional[nn.ModuleList] = None,
                         n_layers: Optional[int] = None) -> torch.Tensor:
        """Influence diffusion over ``T``.

        With ``layers`` (one ``nn.Linear(2d, d)`` per layer): ``h^{k+1} = sigmoid(W_k [h^k ; T h^k])``,
        returning ``h^K`` (DiffNet's eq. 5). Without: ``h^{k+1} = T h^k`` for ``n_layers`` layers,
        returning ``sum_{k=0..K} h^k`` (RecBole-GNN's form).
        """
        h = h0
        if layers is not None:
            for lin in layers:
                h = torch.sigmoid(lin(torch.cat([h, torch.sparse.mm(self.social_adj, h)], -1)))
            return h
        out = [h0]
        for _ in range(int(n_layers or 0)):
            h = torch.sparse.mm(self.social_adj, h)
            out.append(h)
        return torch.stack(out, 0).sum(0)

    def item_aggregate(self, item_table: torch.Tensor) -> torch.Tensor:
        """``[num_users, d]``: the mean of each user's train items' vectors (zero for a user without)."""
        return torch.sparse.mm(self.interest_adj, item_table)

    def emb_regularizer(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Squared L2 norm of the batch's user, positive and (dataset-drawn) negative id embeddings over
        the batch size."""
        users, items = batch[self.meta.uid_field], batch[self.meta.iid_field]
        parts: List[torch.Tensor] = [self.query_encoder.embedding(users), self.item_encoder(items)]
        if "neg_item" in batch:
            parts.append(self.item_encoder(batch["neg_item"]))
        return sum((p ** 2).sum() for p in parts) / max(int(users.shape[0]), 1)

    # ---- hooks ---------------------------------------------------------------------------------
    def all_user_vectors(self) -> Optional[torch.Tensor]:
        """``[num_users, d]`` user vectors of every user, or ``None`` when the id embedding is the user
        vector (then batches are encoded directly)."""
        return None

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Extra loss of a training batch (e.g. SocialMF's trust term); default zero."""
        return torch.zeros((), device=self.device)

    # ---- caching and scoring -------------------------------------------------------------------
    def user_vectors(self) -> Optional[torch.Tensor]:
        """:meth:`all_user_vectors`, computed once while not training (the cache is dropped by a training
        step, a switch to ``train()`` and ``load_state_dict``)."""
        if self.training or torch.is_grad_enabled():
            return self.all_user_vectors()
        if self._user_cache is None:
            self._user_cache = self.all_user_vectors()
        return self._user_cache

    def invalidate_cache(self) -> None:
        self._user_cache = None
        self._ann_index = None

    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        table = self.user_vectors()
        if table is None:
            return super().encode_query(batch)
        return table[batch[self.meta.uid_field]]

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        self.invalidate_cache()
        loss = super().training_loss(batch) + self.social_loss(batch)
        reg = float(self.cfg("reg_weight", 0.0))
        if reg > 0:
            loss = loss + reg * self.emb_regularizer(batch)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.invalidate_cache()  # the optimizer step has just changed the parameters
        return super().on_train_batch_end(outputs, batch, batch_idx)

    def train(self, mode: bool = True):
        if getattr(self, "_user_cache", None) is not None:
            self._user_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._user_cache = None
        return super().load_state_dict(*args, **kwargs)


class PropagatedTables:
    """Mixin (before :class:`SocialRecommender` in the bases) for models whose user and item tables come from
    one graph propagation, ``propagate() -> (users [num_users, d], items [num_items, d])``.

    A training step propagates once and every loss term of the step reads that result through
    :meth:`_tables` (the ranking loss, any self-supervised term and the user / item vector hooks alike);
    evaluation propagates once and keeps the tables until the weights may change (the next training step,
    ``train()``, ``load_state_dict``). With gradients enabled outside a step it propagates afresh.
    """

    _step_tables: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    _eval_tables: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def _tables(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if self._step_tables is not None:
            return self._step_tables
        if self.training or torch.is_grad_enabled():
            return self.propagate()
        if self._eval_tables is None:
            self._eval_tables = self.propagate()
        return self._eval_tables

    def all_user_vectors(self) -> torch.Tensor:
        return self._tables()[0]

    def user_vectors(self) -> torch.Tensor:
        return self._tables()[0]

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        return self._tables()[1][ids]

    def item_vectors(self) -> torch.Tensor:
        return self._tables()[1]

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        self.invalidate_cache()
        self._step_tables = self.propagate()   # one propagation serves the batch and the extra terms
        try:
            return super().training_loss(batch)
        finally:
            self._step_tables = None

    def invalidate_cache(self) -> None:
        super().invalidate_cache()
        self._eval_tables = None

    def train(self, mode: bool = True):
        self._eval_tables = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._eval_tables = None
        return super().load_state_dict(*args, **kwargs)
