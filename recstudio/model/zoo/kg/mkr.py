"""MKR: multi-task learning of recommendation and KG embedding linked by cross & compress units."""
from typing import Dict, List

import torch
from torch import nn

from recstudio.model.family.knowledge import KnowledgeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

MKR_HELP = {
    "embed_dim": "size of the user, item, entity and relation embeddings",
    "low_layers": "L: cross & compress units between an item and its entity (and user / tail MLP layers)",
    "high_layers": "H: layers of the KG tower's MLP on [head ; relation]",
    "reg_weight": "weight of the L2 penalty sum ||x||^2 / 2 of the towers' output vectors",
    "dropout_prob": "dropout before each MLP layer",
    "kge_interval": "a KG step after every kge_interval-th interaction batch (1: after every batch)",
    "kg_weight": "weight of the KG step's loss",
    "kg_batch_size": "KG triples of a KG step",
    "kg_schedule": "'alternating' (rec steps, and a KG step every kge_interval batches)",
    "sampler": "negative sampler (masked_uniform: a uniform item the user has not seen)",
    "num_neg": "negative items per interaction",
    "score_func": "score function of user and item vectors (inner_product: MKR's use_inner_product)",
}


def sigmoid_mlp(dims: List[int], dropout: float) -> nn.Sequential:
    """``[dropout -> Linear -> sigmoid]`` per consecutive pair of ``dims`` (RecBole's MLPLayers, sigmoid)."""
    layers: List[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Dropout(dropout), nn.Linear(a, b), nn.Sigmoid()]
    return nn.Sequential(*layers)


class CrossCompress(nn.Module):
    """One cross & compress unit: with the cross matrix ``C = v e^T``,
    ``v' = C w_vv + C^T w_ev + b_v = v (e . w_vv) + e (v . w_ev) + b_v`` and
    ``e' = C w_ve + C^T w_ee + b_e = v (e . w_ve) + e (v . w_ee) + b_e`` (computed without forming ``C``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.vv, self.ev, self.ve, self.ee = (nn.Linear(dim, 1) for _ in range(4))

    def forward(self, v: torch.Tensor, e: torch.Tensor):
        def lin(layer, x):
            return (x * layer.weight[0]).sum(-1, keepdim=True)
        v_out = v * lin(self.vv, e) + e * lin(self.ev, v) + self.vv.bias + self.ev.bias
        e_out = v * lin(self.ve, e) + e * lin(self.ee, v) + self.ve.bias + self.ee.bias
        return v_out, e_out


class _MKRItems(nn.Module):
    """Item vectors: the item's embedding crossed with its entity's by the L units (the item part)."""

    def __init__(self, model: "MKR"):
        super().__init__()
        self._model = [model]   # not a submodule: the parameters belong to the model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        m = self._model[0]
        return m.cross(ids, m.item_node[ids])[0]


@register_model("MKR", category="kg",
                paper="H. Wang, F. Zhang, M. Zhao, W. Li, X. Xie, M. Guo. Multi-Task Feature Learning for Knowledge "
                      "Graph Enhanced Recommendation. WWW 2019.")
class MKR(KnowledgeRecommender):
    """Multi-task feature learning (Wang et al., WWW 2019): a recommendation tower and a KG-embedding tower share
    item / entity features through ``L`` *cross & compress* units, which mix an item's embedding ``v`` and its
    entity's ``e`` through their cross matrix ``v e^T``. The recommendation score is ``score(u, i) = MLP_L(u) .
    v_i^L`` (``L`` sigmoid layers on the user embedding); the KG tower predicts a triple's tail from the crossed
    head ``e_h^L`` and the relation, ``t_hat = sigmoid(MLP([MLP_H([e_h^L ; r])]))``, scores it
    ``sigmoid(MLP_L(t) . t_hat)`` and maximises that score. Training: binary cross-entropy on a positive and one
    uniform negative (``softplus(-pos) + softplus(neg)``) plus ``reg_weight * (||u||^2 + ||v||^2) / 2`` of the
    towers' outputs (summed over the batch, RecBole's ``_l2_loss``); every ``kge_interval``-th batch is
    followed by a KG step on ``kg_weight * (-mean score + reg_weight * (||e_h^L||^2 + ||t||^2) / 2 / B)``.

    Each item has its own row of the item table and is crossed with its entity's row of the entity table (an
    item without an entity with an entity row of its own, learned through the cross units only); a KG head
    is crossed with the item-table row of the item linked to it (the first, when several share the entity)
    or, for an entity that is no item, with a row of its own (as RecBole, whose items are entities).

    Departures: RecBole 1.2.1's MKR (whose defaults these are: embedding 64, one low and one high layer,
    reg 1e-6, inner product, dropout 0, kge_interval 3, Adam 1e-3, batch 2048) trains pointwise on labelled
    rows and runs a whole KG epoch every ``kge_interval`` epochs; here one sampled negative per interaction and
    a KG step of ``kg_batch_size`` (2048) triples every ``kge_interval`` batches; RecBole sums the KG loss over
    the batch (its L2 term once per triple), here it is averaged; the KG tail score is taken as RecBole does
    (a sigmoid on the predicted tail, then on the dot product).

    Args (config keys): ``embed_dim``, ``low_layers``, ``high_layers``, ``reg_weight``, ``dropout_prob``,
    ``kge_interval``, ``kg_weight``, ``kg_batch_size``, ``kg_schedule``, ``sampler``, ``num_neg``,
    ``score_func``; see ``mkr.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="MKR", dataset="ml-100k-kg", epochs=5)   # doctest: +SKIP
    """

    option_help = dict(MKR_HELP)

    def __init__(self, config=None, dataset_config=None, **overrides):
        super().__init__(config, dataset_config, **overrides)
        if int(self.cfg("low_layers")) < 1 or int(self.cfg("high_layers")) < 1:
            raise ConfigError("MKR needs low_layers >= 1 and high_layers >= 1.")
        if int(self.cfg("kge_interval")) < 1:
            raise ConfigError(f"kge_interval must be >= 1, got {self.cfg('kge_interval')!r}.")
        if self.cfg("kg_schedule") != "alternating":
            raise ConfigError("MKR alternates recommendation and KG steps: kg_schedule must be 'alternating'.")

    def _register_data_buffers(self, meta) -> None:
        super()._register_data_buffers(meta)
        E, I = meta.num_entities, meta.num_items
        own = E + torch.arange(I)
        own[0] = 0
        self.num_nodes = E + I
        item_entity = meta.item_entity.long()
        self.register_buffer("item_node", torch.where(item_entity > 0, item_entity, own), persistent=False)
        # the item-table row of a KG head: the (last) item linked to it, else a row of its own after the items'
        row = I + torch.arange(self.num_nodes)
        row.scatter_reduce_(0, item_entity[1:], torch.arange(1, I), reduce="amin", include_self=False)
        self.register_buffer("entity_item_row", row, persistent=False)

    def _get_item_encoder(self) -> nn.Module:
        d = int(self.cfg("embed_dim"))
        self.item_table = IdEmbedding(self.meta.num_items + self.num_nodes, d, init="xavier")
        self.entity_table = IdEmbedding(self.num_nodes, d, init="xavier")
        self.units = nn.ModuleList(CrossCompress(d) for _ in range(int(self.cfg("low_layers"))))
        return _MKRItems(self)

    def _get_query_encoder(self) -> nn.Module:
        d, L, p = int(self.cfg("embed_dim")), int(self.cfg("low_layers")), float(self.cfg("dropout_prob"))
        users = IdEmbedding(self.meta.num_users, d, init="xavier")
        return _UserMLP(self.meta.uid_field, users, sigmoid_mlp([d] * (L + 1), p))

    def build_blocks(self) -> None:
        super().build_blocks()
        d, L, H = int(self.cfg("embed_dim")), int(self.cfg("low_layers")), int(self.cfg("high_layers"))
        p = float(self.cfg("dropout_prob"))
        self.relation_table = IdEmbedding(self.meta.num_relations, d, init="xavier")
        self.tail_mlp = sigmoid_mlp([d] * (L + 1), p)
        self.kge_mlp = sigmoid_mlp([2 * d] * H, p) if H > 1 else nn.Identity()
        self.kge_pred = sigmoid_mlp([2 * d, d], p)

    def cross(self, item_rows: torch.Tensor, nodes: torch.Tensor):
        """``(v^L, e^L)``: item-table rows and entity nodes through the cross & compress units."""
        v, e = self.item_table(item_rows), self.entity_table(nodes)
        for unit in self.units:
            v, e = unit(v, e)
        return v, e

    # ---- losses -------------------------------------------------------------------------------
    def _get_loss_func(self):
        from recstudio.model.loss import build_loss
        return build_loss("bce")

    def rec_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        from recstudio.model.base.recommender import Recommender
        loss = Recommender.training_loss(self, batch)
        reg = float(self.cfg("reg_weight"))
        if reg:
            u = self.encode_query(batch)
            v = self.encode_items(batch[self.meta.iid_field])
            loss = loss + reg * ((u ** 2).sum() + (v ** 2).sum()) / 2
        return loss

    def kg_loss(self, kg_batch):
        _, head = self.cross(self.entity_item_row[kg_batch["head"]], kg_batch["head"])
        tail = self.tail_mlp(self.entity_table(kg_batch["pos_tail"]))
        hr = self.kge_mlp(torch.cat([head, self.relation_table(kg_batch["relation"])], -1))
        pred = torch.sigmoid(self.kge_pred(hr))
        score = torch.sigmoid((tail * pred).sum(-1))
        reg = float(self.cfg("reg_weight"))
        return -score.mean() + reg * ((head ** 2).sum() + (tail ** 2).sum()) / 2 / max(len(score), 1)

    def training_step(self, batch, batch_idx):
        if batch_idx % int(self.cfg("kge_interval")) == 0:
            return super().training_step(batch, batch_idx)   # a rec step, then a KG step
        opt = self.optimizers()
        rec = self.rec_loss(batch)
        opt.zero_grad()
        self.manual_backward(rec)
        opt.step()
        self._loss_sum += float(rec.detach())
        self._loss_count += 1
        self.log("train/loss", rec.detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=self._batch_size(batch), sync_dist=True)
        return None


class _UserMLP(nn.Module):
    """User vector ``MLP_L(u)`` (sigmoid layers on the user's embedding)."""

    def __init__(self, uid_field: str, embedding: IdEmbedding, mlp: nn.Module):
        super().__init__()
        self.uid_field, self.embedding, self.mlp = uid_field, embedding, mlp

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(self.embedding(batch[self.uid_field]))
