"""DIEN: an interest-extractor GRU (with an auxiliary next-behaviour loss) and an attention-gated GRU (AUGRU)
that evolves the user's interest towards the target item."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.din import SEQUENCE_HELP, BehaviourSequenceRecommender, tower
from recstudio.utils.errors import ConfigError

EVOLUTIONS = ("augru", "agru", "aigru", "gru")


class AttentionGRUCell(nn.Module):
    """One GRU step whose update is gated by an attention score ``a`` ``[N]`` (Zhou et al., AAAI 2019, §4.3).

    With ``r = sigmoid(W_r x + U_r h + b_r)``, ``u = sigmoid(W_u x + U_u h + b_u)`` and
    ``h~ = tanh(W_h x + r * (U_h h + b_h))``:

    * ``augru``: ``u' = a * u``, ``h_new = (1 - u') * h + u' * h~`` (the paper's AUGRU);
    * ``agru``: ``h_new = (1 - a) * h + a * h~``;
    * ``aigru`` / ``gru``: a plain GRU step (AIGRU scales the input by ``a`` before the call).

    Example:
        >>> cell = AttentionGRUCell(3, 4, "augru")
        >>> cell(torch.randn(2, 3), torch.zeros(2, 4), torch.tensor([0.0, 1.0]))[0].abs().sum().item()
        0.0
    """

    def __init__(self, input_dim: int, hidden_dim: int, mode: str = "augru"):
        super().__init__()
        self.mode = mode
        self.x2h = nn.Linear(input_dim, 3 * hidden_dim)
        self.h2h = nn.Linear(hidden_dim, 3 * hidden_dim)

    def forward(self, x: torch.Tensor, h: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        xr, xu, xh = self.x2h(x).chunk(3, -1)
        hr, hu, hh = self.h2h(h).chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        u = torch.sigmoid(xu + hu)
        cand = torch.tanh(xh + r * hh)
        if self.mode == "augru":
            u = att[:, None] * u
        elif self.mode == "agru":
            u = att[:, None].expand_as(u)
        return (1 - u) * h + u * cand


@register_model("DIEN", category="ctr",
                paper="G. Zhou, N. Mou, Y. Fan, Q. Pi, W. Bian, C. Zhou, X. Zhu, K. Gai. Deep Interest Evolution "
                      "Network for Click-Through Rate Prediction. AAAI 2019.")
class DIEN(BehaviourSequenceRecommender):
    """DIEN (Zhou et al., AAAI 2019). The behaviours ``e_1..e_T`` (the last ``max_seq_len`` items before the row,
    each the concatenation of its item-field embeddings, width ``H``) go through the **interest extractor**, a
    GRU with hidden size ``H``: ``h_t = GRU(e_t, h_{t-1})``, trained also by the **auxiliary loss**
    ``L_aux = -mean_t [log sigmoid(<h_t, e_{t+1}>) + log(1 - sigmoid(<h_t, e^-_{t+1}>))]`` over the valid
    steps, ``e^-`` the embedding of an item drawn uniformly from the items other than ``e_{t+1}``'s. The
    **interest evolving layer** scores every state against the target ``v``: ``a_t = softmax_t(h_t W v)``
    (padding masked), and runs an AUGRU over ``h_1..h_T`` (the update gate scaled by ``a_t``); its last state
    ``h'_T`` is the evolved interest, and ``y = MLP([user / context fields; v; h'_T])`` (Dice / PReLU).
    Training minimises ``L_target + aux_weight * L_aux``.

    ``evolution`` selects the paper's variants of the evolving layer (its Table 3): ``augru`` (the default),
    ``agru`` (attention replaces the update gate), ``aigru`` (the GRU input scaled by ``a_t``) or ``gru``
    (no attention). ``aux_hidden: [100, 50]`` replaces the inner product of the auxiliary loss by an MLP over
    ``[h_t, e]`` (sigmoid hidden units, a logit out), as the official code does; ``aux_weight: 0`` turns the loss off.

    Departures from the paper: the behaviour sequence is every interaction before the row in time order
    (clicked or not, labels unused), ties in time in file order; negatives of the auxiliary loss are drawn
    uniformly from the items (the paper uses items the user did not click), and the loss is a mean over the
    valid steps (the paper sums over steps and averages over users); no first-order term; ``embed_reg`` is a
    plain L2 over the embeddings. Defaults: embedding 10, Adam 1e-3 (RecBole 1.2.1), prediction MLP [200, 80]
    with Dice (the paper / official code), ``aux_weight`` 1.0 (RecBole's ``alpha``).

    Args (config keys): ``embed_dim``, ``max_seq_len``, ``evolution``, ``attention_softmax``, ``aux_weight``,
    ``aux_hidden``, ``mlp_hidden``, ``activation``, ``dropout``, ``batch_norm``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``dien.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DIEN", dataset="ml-1m", label_threshold=4)   # doctest: +SKIP
    """

    history_padding = "right"
    option_help = {**SEQUENCE_HELP,
                   "evolution": "interest evolving layer: augru (the paper), agru, aigru or gru (no attention)",
                   "attention_softmax": "normalise the evolving layer's attention with a softmax over the "
                                        "sequence (the paper); false: sigmoid scores",
                   "aux_weight": "weight of the auxiliary next-behaviour loss (0: none)",
                   "aux_hidden": "hidden sizes of the auxiliary network over [h_t, e] ([]: the paper's inner "
                                 "product <h_t, e>)",
                   "mlp_hidden": "hidden sizes of the prediction MLP",
                   "activation": "activation of the prediction MLP (dice, prelu, relu, ...)",
                   "dropout": "dropout after each hidden layer of the prediction MLP",
                   "batch_norm": "batch norm before each hidden activation of the prediction MLP"}

    def build_sequence(self) -> None:
        mode = str(self.cfg("evolution")).lower()
        if mode not in EVOLUTIONS:
            raise ConfigError(f"evolution must be one of {list(EVOLUTIONS)}, got {self.cfg('evolution')!r}.")
        if float(self.cfg("aux_weight")) < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.cfg('aux_weight')}.")
        self.mode = mode
        h = self.item_dim
        self.extractor = nn.GRU(h, h, batch_first=True)
        self.att_proj = nn.Linear(h, h, bias=False) if mode != "gru" else None
        self.evolver = AttentionGRUCell(h, h, mode)
        aux_hidden = list(self.cfg("aux_hidden"))
        self.aux_net = tower([2 * h, *aux_hidden, 1], "sigmoid") if aux_hidden else None
        self.mlp = tower([self.query_dim + 2 * h, *self.cfg("mlp_hidden"), 1], self.cfg("activation"),
                         float(self.cfg("dropout")), bool(self.cfg("batch_norm")))

    def encode_history(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        # right-padded: the states at the valid steps do not depend on the padding after them
        state["interest"] = self.extractor(state["hist"])[0]
        return state

    def attention(self, interest: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``a_t`` ``[N, L]`` of the states ``[N, L, H]`` w.r.t. the targets ``[N, H]``, 0 at padding."""
        scores = (self.att_proj(interest) * target[:, None]).sum(-1)
        if bool(self.cfg("attention_softmax")):
            return torch.nan_to_num(scores.masked_fill(~mask, float("-inf")).softmax(-1), nan=0.0)
        return torch.sigmoid(scores) * mask

    def evolve(self, interest: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``h'_T`` ``[N, H]``: the evolving GRU over the states, each row stopped at its last valid step."""
        att = self.attention(interest, target, mask) if self.att_proj is not None else mask.to(interest.dtype)
        h = interest.new_zeros(interest.shape[0], interest.shape[-1])
        for t in range(interest.shape[1]):
            x = interest[:, t] * att[:, t, None] if self.mode == "aigru" else interest[:, t]
            new = self.evolver(x, h, att[:, t])
            h = torch.where(mask[:, t, None], new, h)
        return h

    def sequence_logit(self, state, target):
        final = self.evolve(state["interest"], target, state["mask"])
        return self.mlp(torch.cat([state["query"], target, final], -1)).squeeze(-1)

    def auxiliary_loss(self, state: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``L_aux``: ``h_t`` against the next behaviour and a sampled other item, mean over the valid steps
        (0 when no row has two behaviours)."""
        items, mask = state["items"], state["mask"]
        pairs = mask[:, 1:] & mask[:, :-1]
        if not bool(pairs.any()):
            return state["interest"].sum() * 0.0
        h = state["interest"][:, :-1][pairs]                     # [P, H]
        pos_items = items[:, 1:][pairs]
        n = self.meta.num_items - 1                              # real items 1..n
        if n < 2:
            raise ConfigError("DIEN's auxiliary loss needs at least 2 items to draw negatives; set aux_weight 0.")
        shift = torch.randint(1, n, pos_items.shape, device=pos_items.device)
        neg_items = (pos_items - 1 + shift) % n + 1              # uniform over the items other than pos
        pos = state["hist"][:, 1:][pairs]
        neg = self._item_part(neg_items)[0].flatten(-2)
        if self.aux_net is None:
            pos_logit, neg_logit = (h * pos).sum(-1), (h * neg).sum(-1)
        else:
            pos_logit = self.aux_net(torch.cat([h, pos], -1)).squeeze(-1)
            neg_logit = self.aux_net(torch.cat([h, neg], -1)).squeeze(-1)
        # -log sigmoid(pos) - log(1 - sigmoid(neg))
        return F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``L_target + aux_weight * L_aux`` (+ the ``embed_reg`` penalty)."""
        state = self.prepare_scoring(batch)
        logits = self.score_candidates(batch, state, batch[self.meta.iid_field])
        loss = self.loss_fn(pos_score=logits, label=self.ctr_labels(batch))
        weight = float(self.cfg("aux_weight"))
        if weight:
            loss = loss + weight * self.auxiliary_loss(state)
        reg = float(self.cfg("embed_reg", 0.0))
        if reg:
            loss = loss + reg / 2 * sum(p.pow(2).sum() for p in self.embedding.parameters())
        return loss
