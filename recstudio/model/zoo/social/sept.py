"""SEPT: socially-aware self-supervised tri-training (a preference, a friend and a sharing view of the users
label each other's positives for a neighbour-discrimination contrastive task)."""
from typing import Dict, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recstudio.model.family.social import PropagatedTables, SOCIAL_HELP, SocialRecommender
from recstudio.model.module.graph import bipartite_matrix, spmm, to_torch_csr
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def sym_normalized(a: sp.spmatrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of a symmetric matrix (``D``: row sums; empty rows stay empty)."""
    a = sp.csr_matrix(a, dtype=np.float64)
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    return (sp.diags(inv) @ a @ sp.diags(inv)).tocsr()


def user_views(social: sp.spmatrix, interactions: sp.spmatrix) -> Tuple[sp.csr_matrix, sp.csr_matrix]:
    """SEPT's two social views, unnormalised, ``num_users x num_users`` (Yu et al. 2021, Sec. 3.2):

    - friend view ``A_f = (S.S) * S + I``: for two friends, the number of friends they share (the social
      triangles through their link), plus a self-loop;
    - sharing view ``A_s = (Y.Y^T) * S + I``: for two friends, the number of items both interacted with.

    ``S`` is the undirected 0/1 network, ``Y`` the 0/1 user x item matrix, ``*`` elementwise.

    Example:
        >>> S = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]))      # one triangle
        >>> Y = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]]))
        >>> [v.toarray().astype(int).tolist() for v in user_views(S, Y)]
        [[[1, 1, 1], [1, 1, 1], [1, 1, 1]], [[1, 1, 1], [1, 1, 0], [1, 0, 1]]]
    """
    S = sp.csr_matrix(social, dtype=np.float64)
    S = ((S + S.T) > 0).astype(np.float64).tocsr()
    S.setdiag(0)
    S.eliminate_zeros()
    Y = sp.csr_matrix(interactions, dtype=np.float64)
    Y.data[:] = 1.0
    eye = sp.eye(S.shape[0], format="csr")
    friend = (S @ S).multiply(S) + eye
    sharing = (Y @ Y.T).multiply(S) + eye
    return sp.csr_matrix(friend), sp.csr_matrix(sharing)


def pseudo_positives(probs, k: int):
    """Tri-training labels: for each view ``v`` (``probs[v]`` ``[B, B]``, row ``u``: the view's softmax over the
    unlabeled users), the ``k`` users the *other* views rank highest on average, ``[B, k]`` each.

    Example:
        >>> p = [torch.tensor([[0.6, 0.3, 0.1]]), torch.tensor([[0.1, 0.2, 0.7]]), torch.tensor([[0.1, 0.5, 0.4]])]
        >>> [t.tolist() for t in pseudo_positives(p, 1)]   # view 0 from (views 1 + 2) / 2, ...
        [[[2]], [[1]], [[2]]]
    """
    out = []
    for v in range(len(probs)):
        others = [p for w, p in enumerate(probs) if w != v]
        out.append(torch.topk(sum(others) / len(others), k, dim=1).indices)
    return out


@register_model("SEPT", category="social",
                paper="J. Yu, H. Yin, M. Gao, X. Xia, X. Zhang, N. Q. V. Hung. Socially-Aware Self-Supervised "
                      "Tri-Training for Recommendation. KDD 2021.")
class SEPT(PropagatedTables, SocialRecommender):
    """SEPT (Yu et al., KDD 2021). Three encoders share the user id embeddings ``P^0`` (and the item ones
    ``Q^0``):

    - the **preference view** (the recommender): a LightGCN over the normalised user-item graph
      ``L = D^-1/2 [[0, Y], [Y^T, 0]] D^-1/2``; ``E = E^0 + sum_k norm(E^k)``, ``E^{k+1} = L E^k`` (each layer's
      output L2-normalised); ``score(u, i) = p_u . q_i``, trained with BPR (one uniform negative);
    - the **friend view** ``A_f = (S S) * S + I`` and the **sharing view** ``A_s = (Y Y^T) * S + I``
      (:func:`user_views`), each ``D^-1/2 A D^-1/2``-normalised, with the same read-out over the users only;
    - an **unlabeled view**: the preference encoder over a perturbed joint graph ``[[S', Y'], [Y'^T, 0]]``
      (``drop_ratio`` of the user-item and of the (undirected) social edges dropped, redrawn every epoch).

    Tri-training, from epoch ``warmup_epochs`` on (before: BPR only): for the distinct users ``B`` of the batch,
    with ``z^v`` their L2-normalised vectors in view ``v`` and ``z'`` in the unlabeled view, each view predicts
    ``y^v_u = softmax_{w in B}(z^v_u . z'_w)``; the positives of view ``v`` are the ``instance_cnt`` users ``w``
    the other two views rank highest on average, ``top-K((y^a_u + y^b_u) / 2)``, and view ``v`` learns them by
    neighbour discrimination

    ``L_v = -sum_{u in B} ln [sum_{w in pos_v(u)} exp(z^v_u . z'_w / tau) / sum_{w in B} exp(z^v_u . z'_w / tau)]``;

    ``L = L_bpr + ssl_weight (L_pref + L_friend + L_sharing) + reg_weight * EmbLoss`` (id embeddings of the
    batch). Edge dropout uses a generator seeded by ``seed`` (saved in checkpoints). Vectors of every user and
    item are propagated once per training step and once per evaluation.

    Departures from the paper: losses as RecBole-GNN's SEPT (mean BPR over the batch, the contrastive terms
    summed over the batch's users: ``ssl_weight`` is not the paper's beta); the contrastive terms are over the
    batch's *distinct* users (RecBole-GNN repeats users with several rows; the authors' PyTorch code,
    SELFRec, takes them once); L2 on the batch's id embeddings; xavier-normal initialisation; the friend and
    sharing views always read the network as undirected (``social_symmetric`` must be true, as the paper's
    friendships). Defaults RecBole-GNN's (embedding 64, 2 layers, ``drop_ratio`` 0.3, ``instance_cnt`` 10,
    ``ssl_tau`` 0.1, ``ssl_weight`` 1e-7, reg 1e-5, Adam 1e-3, batch 2048) except ``warmup_epochs`` (see
    ``sept.yaml``).

    Args (config keys): ``embed_dim``, ``n_layers``, ``drop_ratio``, ``instance_cnt``, ``ssl_tau``,
    ``ssl_weight``, ``warmup_epochs``, ``social_symmetric``, ``reg_weight``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func``; defaults in ``sept.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SEPT", dataset="lastfm-2k")   # doctest: +SKIP
    """

    needs = frozenset({"social", "train_graph"})
    option_help = {**SOCIAL_HELP,
                   "n_layers": "number of graph convolution layers of every view",
                   "drop_ratio": "fraction of the user-item and of the social edges dropped in the unlabeled view",
                   "instance_cnt": "number K of pseudo-positive users each view receives from the other two",
                   "ssl_tau": "temperature of the neighbour-discrimination loss",
                   "ssl_weight": "weight of the three contrastive losses (summed over the batch's distinct users)",
                   "warmup_epochs": "epochs trained with the recommendation loss only before tri-training starts"}

    def build_blocks(self) -> None:
        checks = [("n_layers", int(self.cfg("n_layers")) >= 1, ">= 1"),
                  ("drop_ratio", 0.0 <= float(self.cfg("drop_ratio")) < 1.0, "in [0, 1)"),
                  ("instance_cnt", int(self.cfg("instance_cnt")) >= 1, ">= 1"),
                  ("ssl_tau", float(self.cfg("ssl_tau")) > 0, "> 0"),
                  ("ssl_weight", float(self.cfg("ssl_weight")) >= 0, ">= 0"),
                  ("warmup_epochs", int(self.cfg("warmup_epochs")) >= 0, ">= 0")]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"SEPT {key} must be {rule}, got {self.cfg(key)!r}.")
        if not bool(self.cfg("social_symmetric")):
            raise ConfigError("SEPT's friend and sharing views are undirected (friend triangles): set "
                              "social_symmetric: true.")
        super().build_blocks()
        train = self.meta.train_matrix()
        social = self.meta.social_matrix(symmetric=True)
        self.register_buffer("norm_adj", to_torch_csr(sym_normalized(bipartite_matrix(train))), persistent=False)
        friend, sharing = user_views(social, train)
        self.register_buffer("friend_adj", to_torch_csr(sym_normalized(friend)), persistent=False)
        self.register_buffer("sharing_adj", to_torch_csr(sym_normalized(sharing)), persistent=False)
        self._train_coo = sp.coo_matrix(train)
        self._social_edges = sp.triu((social > 0).astype(np.float32), k=1).tocoo()   # each friendship once
        self._aug_adj: Optional[torch.Tensor] = None
        self._drop_generator = torch.Generator().manual_seed(int(self.config["seed"]))

    # ---- encoders -----------------------------------------------------------------------------
    def _encode(self, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x + sum_k norm(adj^k x)`` over ``n_layers`` layers (``adj`` symmetric)."""
        out = x
        for _ in range(int(self.cfg("n_layers"))):
            x = spmm(adj, x)
            out = out + F.normalize(x, dim=1)
        return out

    def propagate(self, adj: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(users, items)`` of the preference encoder over ``adj`` (default: the training graph)."""
        p, q = self.query_encoder.embedding.weight, self.item_encoder.weight
        out = self._encode(self.norm_adj if adj is None else adj, torch.cat([p, q], 0))
        return out[:p.shape[0]], out[p.shape[0]:]

    def user_view(self, adj: torch.Tensor) -> torch.Tensor:
        """``[num_users, d]``: the friend (``friend_adj``) or sharing (``sharing_adj``) view's users."""
        return self._encode(adj, self.query_encoder.embedding.weight)

    # ---- the unlabeled (perturbed) view -------------------------------------------------------
    def _keep(self, n: int) -> np.ndarray:
        ratio = float(self.cfg("drop_ratio"))
        return torch.randperm(n, generator=self._drop_generator)[:int(n * (1.0 - ratio))].numpy()

    def perturbed_adjacency(self) -> torch.Tensor:
        """``D^-1/2 [[S', Y'], [Y'^T, 0]] D^-1/2``: the joint graph with ``drop_ratio`` of its user-item and of
        its social edges dropped (a friendship is dropped in both directions)."""
        r, s = self._train_coo, self._social_edges
        k = self._keep(r.nnz)
        y = sp.csr_matrix((np.ones(len(k)), (r.row[k], r.col[k])), shape=r.shape)
        k = self._keep(s.nnz)
        half = sp.csr_matrix((np.ones(len(k)), (s.row[k], s.col[k])), shape=s.shape)
        joint = sp.bmat([[half + half.T, y], [y.T, None]], format="csr")
        return to_torch_csr(sym_normalized(joint)).to(self.norm_adj.device)

    def tri_training_active(self) -> bool:
        return float(self.cfg("ssl_weight")) > 0 and int(self.current_epoch) >= int(self.cfg("warmup_epochs"))

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._aug_adj = self.perturbed_adjacency() if self.tri_training_active() else None

    # ---- tri-training -------------------------------------------------------------------------
    def neighbour_discrimination(self, z: torch.Tensor, aug: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """``-sum_u ln [sum_{w in positives[u]} exp(z_u . aug_w / tau) / sum_w exp(z_u . aug_w / tau)]``
        (``z``, ``aug`` L2-normalised ``[B, d]``; ``positives`` ``[B, K]`` rows of ``aug``)."""
        return self._discrimination(z @ aug.T, positives)

    def _discrimination(self, sims: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        logits = sims / float(self.cfg("ssl_tau"))
        return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.gather(1, positives), 1)).sum()

    def tri_training_loss(self, users: torch.Tensor, rec_users: torch.Tensor) -> torch.Tensor:
        """The three views' contrastive losses for the distinct ``users`` (``rec_users``: the preference view's
        user table of this step)."""
        if self._aug_adj is None:
            self._aug_adj = self.perturbed_adjacency()
        u = torch.unique(users)
        aug = F.normalize(self.propagate(self._aug_adj)[0][u], dim=1)
        views = [F.normalize(rec_users[u], dim=1), F.normalize(self.user_view(self.friend_adj)[u], dim=1),
                 F.normalize(self.user_view(self.sharing_adj)[u], dim=1)]
        sims = [z @ aug.T for z in views]                 # [B, B] cosine similarities, one product per view
        k = min(int(self.cfg("instance_cnt")), len(u))
        with torch.no_grad():
            positives = pseudo_positives([torch.softmax(s, 1) for s in sims], k)   # no temperature
        return sum(self._discrimination(s, pos) for s, pos in zip(sims, positives))

    def social_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = self._tables()[0]
        if not self.tri_training_active():
            return users.sum() * 0.0
        return float(self.cfg("ssl_weight")) * self.tri_training_loss(batch[self.meta.uid_field], users)

    # ---- training and caching -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["drop_generator_state"] = self._drop_generator.get_state()

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("drop_generator_state")
        if state is not None and getattr(self, "_drop_generator", None) is not None:
            self._drop_generator.set_state(state)
