"""PPNet: an MLP whose every hidden layer is scaled by personalised gates read from id embeddings."""
from typing import List

import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, flatten_rows
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean


@register_model("PPNet", category="ctr",
                paper="J. Chang et al. PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized "
                      "Prior Information. KDD 2023 (its PPNet, Kuaishou 2019, as described there).")
class PPNet(FeatureRecommender):
    """PPNet: an MLP over the concatenated field embeddings ``e`` whose hidden layer ``l`` is multiplied by a
    personalised gate ``g_l = 2 sigmoid(W^2_l ReLU(W^1_l [stopgrad(e); e_G]))``, where ``e_G`` concatenates the
    embeddings of the ``gate_fields`` (the prior: user id, item id, ...; ``user`` / ``item`` name the id
    fields) and the gate sees the other embeddings without back-propagating into them;
    ``logit = w_0 + sum_f w_f + w^T h_L``.

    Departures: PPNet has no paper of its own; this follows the description in the PEPNet paper and
    FuxiCTR's PPNet (gate hidden size ``gate_hidden``). Batch norm and dropout in the MLP, an L2 penalty on the
    embeddings (``embed_reg``), Adam with early stopping on valid AUC. No BARS Frappe setting exists: BARS'
    DNN_frappe_x1 MLP settings (embedding 10, MLP [400, 400, 400] + batch norm, dropout 0.2, embedding
    regularizer 0.05) with gates on the user and the item (hidden 64), Adam 1e-3, batch 4096.

    Args (config keys): ``embed_dim``, ``gate_fields``, ``gate_hidden``, ``mlp_hidden``, ``dropout``,
    ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``,
    ``loss``; see ``ppnet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="PPNet", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP,
                   "gate_fields": "fields whose embeddings drive the gates ('user' / 'item' name the id fields)",
                   "gate_hidden": "hidden size of each gate network"}

    def _gate_idx(self) -> List[int]:
        alias = {"user": self.meta.uid_field, "item": self.meta.iid_field}
        names = self.cfg("gate_fields") or []
        if not names:
            raise ConfigError("gate_fields must list at least one field (e.g. [user, item]).")
        out = []
        for name in names:
            field = name if name in self.used_fields else alias.get(name, name)
            if field not in self.used_fields:
                raise ConfigError(f"gate_fields: {name!r} is not a used field; the fields are {self.used_fields}."
                                  + did_you_mean(name, self.used_fields))
            out.append(self.used_fields.index(field))
        return out

    def build_interaction(self) -> None:
        idx = self._gate_idx()
        self.register_buffer("gate_idx", torch.tensor(idx, dtype=torch.long), persistent=False)
        dim = self.num_fields * self.embed_dim
        gate_in, gate_hidden = dim + len(idx) * self.embed_dim, int(self.cfg("gate_hidden"))
        hidden = [int(h) for h in self.cfg("mlp_hidden") or []]
        if not hidden:
            raise ConfigError("mlp_hidden must list at least one hidden layer.")
        self.layers, self.gates = nn.ModuleList(), nn.ModuleList()
        for a, b in zip([dim, *hidden[:-1]], hidden):
            block = [nn.Linear(a, b)]
            if self.cfg("batch_norm"):
                block.append(nn.BatchNorm1d(b))
            block.append(get_activation(self.cfg("activation")))
            if float(self.cfg("dropout")) > 0:
                block.append(nn.Dropout(float(self.cfg("dropout"))))
            self.layers.append(nn.Sequential(*block))
            self.gates.append(nn.Sequential(nn.Linear(gate_in, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, b),
                                            nn.Sigmoid()))
        self.out = nn.Linear(hidden[-1], 1)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        h = x.flatten(1)
        gate_in = torch.cat([h.detach(), x[:, self.gate_idx].flatten(1)], -1)
        for layer, gate in zip(self.layers, self.gates):
            h = layer(h) * 2 * gate(gate_in)
        return self.out(h).reshape(lead)
