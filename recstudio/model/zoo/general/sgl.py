"""SGL: LightGCN plus a self-supervised InfoNCE term between two stochastically perturbed graph views."""
from typing import List, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch

from recstudio.model.family.graph import GRAPH_HELP, GraphRecommender
from recstudio.model.module.contrastive import view_infonce
from recstudio.model.module.graph import normalized_adjacency, spmm
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

VIEW_TYPES = ("ED", "ND", "RW")


class ViewConv(torch.nn.Module):
    """LightGCN layer ``k``: ``E^(k+1) = L E^(k)``; ``adj`` may be a list of one matrix per layer (SGL's
    random-walk views), of which layer ``k`` takes entry ``k``."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, adj, x):
        if isinstance(adj, (list, tuple)):
            adj = adj[self.k]
        return spmm(adj, x)


def dropped_view(train: sp.csr_matrix, kind: str, ratio: float, generator: Optional[torch.Generator] = None
                 ) -> sp.csr_matrix:
    """A perturbed copy of the ``U x I`` training matrix: ``ED`` (and ``RW``) keeps ``(1 - ratio)`` of the
    edges drawn without replacement; ``ND`` drops ``ratio`` of the users and of the items with all their
    edges (SGL's operators, Wu et al. 2021 eq. 4-6)."""
    coo = train.tocoo()
    if kind == "ND":
        n_users, n_items = train.shape
        drop_u = torch.randperm(n_users, generator=generator)[:int(n_users * ratio)].numpy()
        drop_i = torch.randperm(n_items, generator=generator)[:int(n_items * ratio)].numpy()
        keep_u, keep_i = np.ones(n_users, bool), np.ones(n_items, bool)
        keep_u[drop_u], keep_i[drop_i] = False, False
        keep = keep_u[coo.row] & keep_i[coo.col]
    else:
        keep_ids = torch.randperm(coo.nnz, generator=generator)[:int(coo.nnz * (1.0 - ratio))].numpy()
        keep = np.zeros(coo.nnz, bool)
        keep[keep_ids] = True
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=train.shape)


@register_model("SGL", category="general",
                paper="J. Wu, X. Wang, F. Feng, X. He, L. Chen, J. Lian, X. Xie. Self-supervised Graph Learning for "
                      "Recommendation. SIGIR 2021.")
class SGL(GraphRecommender):
    """LightGCN (``E = mean_k L^k E^(0)``, ``score = e_u . e_i``, BPR) plus a self-supervised task: two views
    of the training graph are drawn by a stochastic operator ``s'``, ``s''`` (``type``: ``ED`` edge dropout,
    ``ND`` node dropout, ``RW`` edge dropout drawn anew for every layer), each re-normalised
    (``D'^-1/2 A' D'^-1/2``) and propagated by the same LightGCN encoder, and for every user of the batch
    (and every positive item) the InfoNCE loss

        ``L_ssl = -log exp(cos(z'_u, z''_u) / τ) / sum_v exp(cos(z'_u, z''_v) / τ)``,

    the sum over ALL users (items) ``v`` in the second view, is added with weight ``ssl_weight``:
    ``L = L_bpr + ssl_weight (L_ssl^user + L_ssl^item) + reg_weight L_2`` (Wu et al., SIGIR 2021). Both
    views are drawn once per training epoch, as in the paper's code and RecBole; scoring uses the
    unperturbed graph.

    Defaults are RecBole 1.2.1's: embedding 64, 3 layers, ``type`` ED, ``drop_ratio`` 0.1, ``ssl_tau`` 0.5,
    ``ssl_weight`` 0.05, ``reg_weight`` 1e-5, Adam 1e-3, batch 2048. Departures: the BPR and InfoNCE terms
    are means over the batch rows (RecBole and the paper's code sum both: the same ratio between them,
    the step size of Adam unchanged); the L2 penalty is the base's ``0.5 |e|^2 / B`` on the batch's ego
    embeddings (RecBole: unsquared norms / B); ``ND`` drops nodes and their edges from the interaction
    matrix before normalising, as RecBole (padding ids are never drawn as negatives).

    Args (config keys): ``embed_dim``, ``n_layers``, ``type``, ``drop_ratio``, ``ssl_tau``, ``ssl_weight``,
    ``reg_weight``, ``self_loops``, ``loss``, ``sampler``, ``num_neg``, ``score_func``; see ``sgl.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="SGL", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """

    layer_combine = "mean"
    option_help = {**GRAPH_HELP,
                   "type": "operator drawing the two graph views: ED (edge dropout), ND (node dropout), RW "
                           "(edge dropout drawn per layer)",
                   "drop_ratio": "fraction of edges (ED, RW) or of nodes (ND) dropped in each view",
                   "ssl_tau": "temperature of the InfoNCE loss between the views",
                   "ssl_weight": "weight of the self-supervised loss"}

    def _get_layer(self, k, in_dim, out_dim):
        return ViewConv(k)

    def build_blocks(self):
        kind = str(self.cfg("type", "ED")).upper()
        if kind not in VIEW_TYPES:
            raise ConfigError(f"SGL type must be one of {VIEW_TYPES}, got {self.cfg('type')!r}.")
        if not 0.0 <= float(self.cfg("drop_ratio")) < 1.0:
            raise ConfigError(f"SGL drop_ratio must be in [0, 1), got {self.cfg('drop_ratio')}.")
        if float(self.cfg("ssl_tau")) <= 0:
            raise ConfigError(f"SGL ssl_tau must be > 0, got {self.cfg('ssl_tau')}.")
        if float(self.cfg("ssl_weight")) < 0:
            raise ConfigError(f"SGL ssl_weight must be >= 0, got {self.cfg('ssl_weight')}.")
        self.view_type = kind
        super().build_blocks()
        self._views: Optional[List[Union[torch.Tensor, List[torch.Tensor]]]] = None

    def _draw_view(self):
        train = self.meta.train_matrix()
        ratio, self_loops = float(self.cfg("drop_ratio")), bool(self.cfg("self_loops", False))
        device = self.norm_adj.device

        def one():
            return normalized_adjacency(dropped_view(train, self.view_type, ratio), self_loops).to(device)

        if self.view_type == "RW":
            return [one() for _ in self.gnn_layers]
        return one()

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._views = None  # two fresh views per epoch

    def training_loss(self, batch):
        loss = super().training_loss(batch)
        weight = float(self.cfg("ssl_weight"))
        if weight == 0:
            return loss
        if self._views is None:
            self._views = [self._draw_view(), self._draw_view()]
        (u1, i1), (u2, i2) = self.propagate(self._views[0]), self.propagate(self._views[1])
        tau = float(self.cfg("ssl_tau"))
        users, items = batch[self.meta.uid_field], batch[self.meta.iid_field]
        # negatives: every real user / item of the second view (row 0 is padding)
        ssl = view_infonce(u1[users], u2[users], tau, candidates=u2[1:], pos_index=users - 1)
        ssl = ssl + view_infonce(i1[items], i2[items], tau, candidates=i2[1:], pos_index=items - 1)
        return loss + weight * ssl
