"""KGNN-LS: KGCN with label-smoothness regularisation of the user-specific relation weights."""
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from recstudio.model.module.kg import embedding_norm
from recstudio.model.registry import register_model
from recstudio.model.zoo.kg.kgcn import KGCN, KGCN_HELP
from recstudio.utils.errors import ConfigError


@register_model("KGNNLS", category="kg",
                paper="H. Wang, F. Zhang, M. Zhang, J. Leskovec, M. Zhao, W. Li, Z. Wang. Knowledge-aware Graph Neural "
                      "Networks with Label Smoothness Regularization for Recommender Systems. KDD 2019.")
class KGNNLS(KGCN):
    """KGCN's user-specific aggregation (see :class:`~recstudio.model.zoo.kg.kgcn.KGCN`) plus the
    *label-smoothness* regulariser of KGNN-LS (Wang et al., KDD 2019): the user's relation weights
    ``softmax(pi^u_r)`` should also propagate the user's *labels* over the item's receptive field. For a
    training pair ``(u, v)`` every node of ``v``'s sampled receptive field gets a label, 1 if it is (the entity
    of) an item ``u`` interacted with in training, 0 if it is one of ``u``'s fixed sampled negatives (as many
    as ``u``'s positives, drawn once), 0.5 otherwise, and ``v``'s own label is held out (0.5). Labels then
    propagate inwards ``n_iter`` times: a node with a known label keeps it, the others take
    ``(1/K) sum_e softmax(pi^u_r) l_e`` over their neighbours; the predicted label of ``v`` enters a binary
    cross-entropy against ``v``'s true label (1 for the positive, 0 for the sampled negative), weighted by
    ``ls_weight`` and added to KGCN's loss.

    Departures: as KGCN (``kgcn.py``) and RecBole 1.2.1's KGNNLS, whose defaults these are (embedding 64, one
    iteration, sum aggregator, 4 neighbours, reg 1e-7, ls_weight 0.5, Adam 1e-3, batch 2048); the label
    table's negatives are drawn uniformly among the items the user did not interact with in training, from a
    generator seeded by ``seed`` (RecBole draws them with numpy's global generator). The ANN conformance check
    is skipped as for KGCN (user-specific item vectors).

    Args (config keys): KGCN's plus ``ls_weight``; see ``kgnnls.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="KGNNLS", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    needs = frozenset({"kg", "train_graph"})
    option_help = {**KGCN_HELP, "ls_weight": "weight of the label-smoothness loss (BCE of the propagated label)"}

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        if float(self.cfg("ls_weight")) < 0:
            raise ConfigError(f"ls_weight must be >= 0, got {self.cfg('ls_weight')!r}.")

    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        indptr, indices = meta.train_indptr.long().numpy(), meta.train_indices.long().numpy()
        U, I, N = meta.num_users, meta.num_items, self.num_nodes
        counts = np.diff(indptr)
        users = np.repeat(np.arange(U), counts)
        node = self.item_node.numpy()
        pos_keys = np.unique(users * N + node[indices])
        rng = np.random.default_rng(int(self.config["seed"]))
        own = set(zip(users.tolist(), indices.tolist()))
        neg_users, neg_items = [], []
        for u in range(U):   # as many negatives as positives, among the items u did not interact with
            if counts[u] == 0:
                continue
            draw = rng.integers(1, I, size=4 * counts[u] + 8)
            draw = np.array([i for i in draw if (u, i) not in own][:counts[u]], dtype=np.int64)
            neg_users.append(np.full(len(draw), u))
            neg_items.append(draw)
        if neg_users:
            neg_keys = np.setdiff1d(np.unique(np.concatenate(neg_users) * N + node[np.concatenate(neg_items)]),
                                    pos_keys)
        else:
            neg_keys = np.zeros(0, dtype=np.int64)
        keys = np.concatenate([pos_keys, neg_keys])
        labels = np.concatenate([np.ones(len(pos_keys)), np.zeros(len(neg_keys))]).astype(np.float32)
        order = np.argsort(keys)
        self.register_buffer("label_keys", torch.as_tensor(keys[order]), persistent=False)
        self.register_buffer("label_values", torch.as_tensor(labels[order]), persistent=False)

    def node_labels(self, users: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """Labels ``[B, *]`` of nodes ``[B, *]`` for users ``[B]``: 1 / 0 from the label table, else 0.5."""
        keys = users.reshape(-1, *([1] * (nodes.dim() - 1))) * self.num_nodes + nodes
        if len(self.label_keys) == 0:
            return torch.full(nodes.shape, 0.5, device=nodes.device)
        pos = torch.searchsorted(self.label_keys, keys).clamp(max=len(self.label_keys) - 1)
        found = self.label_keys[pos] == keys
        return torch.where(found, self.label_values[pos], torch.full_like(self.label_values[pos], 0.5))

    def predicted_labels(self, user_ids: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, N]``: the label of each item propagated from its receptive field (its own label held out)."""
        B, N = items.shape
        K = int(self.cfg("neighbor_sample_size"))
        nodes, weights = self.receptive_field(users, items)
        target = nodes[0]                                                   # [B, N, 1]
        labels, keep = [], []
        for n in nodes:
            held = n.reshape(B, N, -1) == target                            # the target item, at any depth
            lab = torch.where(held, torch.full(held.shape, 0.5, device=n.device), self.node_labels(user_ids, n))
            labels.append(lab)
            keep.append(lab != 0.5)                                         # known labels stay; held-out are 0.5
        for _ in range(len(self.layers)):
            nxt = []
            for hop in range(len(labels) - 1):
                neigh = (weights[hop].squeeze(-1) * labels[hop + 1].reshape(B, N, -1, K)).mean(-1)
                nxt.append(torch.where(keep[hop], labels[hop], neigh))
            labels = nxt
        return labels[0].reshape(B, N)

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        users = self.encode_query(batch)
        uid = batch[self.meta.uid_field]
        pos = batch[self.meta.iid_field]
        neg = batch["neg_item"].reshape(len(pos), -1)
        items = torch.cat([pos[:, None], neg], dim=1)
        vec = self.item_vectors_for(users, items)
        scores = (vec * users[:, None, :]).sum(-1)
        loss = self.loss_fn(pos_score=scores[:, 0], neg_score=scores[:, 1:])
        reg = float(self.cfg("reg_weight"))
        if reg:
            loss = loss + reg * embedding_norm(users, vec[:, 0], vec[:, 1:])
        ls = float(self.cfg("ls_weight"))
        if ls:
            predicted = self.predicted_labels(uid, users, items).clamp(1e-7, 1 - 1e-7)
            target = torch.zeros_like(predicted)
            target[:, 0] = 1.0
            loss = loss + ls * F.binary_cross_entropy(predicted, target)
        return loss
