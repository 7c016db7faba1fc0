"""DIN: a local activation unit pools the user's behaviour sequence w.r.t. the target item.

Also the shared base of the behaviour-sequence CTR rankers (:class:`BehaviourSequenceRecommender`, used by
DIEN and BST) and the Dice activation.
"""
from typing import Dict, List

import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import get_activation
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

SEQUENCE_HELP = {**FEATURE_HELP,
                 "max_seq_len": "behaviour sequence length: the last max_seq_len items the user interacted with "
                                "before the row (time order; fewer are padded and masked)"}


class Dice(nn.Module):
    """Dice (Zhou et al., KDD 2018): ``f(s) = p(s) * s + (1 - p(s)) * alpha * s`` with
    ``p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))`` (batch statistics in training, running ones in
    evaluation) and a learned ``alpha`` per unit; inputs ``[*, dim]``.

    Example:
        >>> Dice(4)(torch.randn(3, 5, 4)).shape
        torch.Size([3, 5, 4])
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.norm(x.reshape(-1, x.shape[-1])).view_as(x))
        return p * x + (1 - p) * self.alpha * x


def tower(dims: List[int], activation: str, dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> activation -> [Dropout]`` per hidden layer, a plain linear last layer;
    ``activation: dice`` gives each layer its own :class:`Dice` (others: :func:`get_activation`)."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}.")
    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i == len(dims) - 2:
            break
        if batch_norm:
            layers.append(_AnyShapeBN(b))
        layers.append(Dice(b) if str(activation).lower() == "dice" else get_activation(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class _AnyShapeBN(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)


class LocalActivationUnit(nn.Module):
    """DIN's attention: ``a(e_j, v) = MLP([e_j, v, e_j - v, e_j * v])`` for every behaviour ``e_j`` ``[N, L, H]``
    and target ``v`` ``[N, H]`` -> scores ``[N, L]`` (masked positions 0, or ``-inf`` before a softmax)."""

    def __init__(self, dim: int, hidden: List[int], activation: str):
        super().__init__()
        self.mlp = tower([4 * dim, *hidden, 1], activation)

    def forward(self, keys: torch.Tensor, query: torch.Tensor, mask: torch.Tensor, softmax: bool) -> torch.Tensor:
        q = query[:, None].expand_as(keys)
        scores = self.mlp(torch.cat([keys, q, keys - q, keys * q], -1)).squeeze(-1)
        if softmax:
            scores = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            return torch.nan_to_num(scores, nan=0.0)      # a row without history: all weights 0
        return scores.masked_fill(~mask, 0.0)


class BehaviourSequenceRecommender(FeatureRecommender):
    """A CTR model that also reads the user's behaviour sequence before each row (``needs: history_seq``).

    The base embeds the row's user / context fields (``state['query']``, ``[B, Fq*d]``), the last
    ``max_seq_len`` items before the row with all item fields (``state['hist']``, ``[B, L, Fi*d]``, mask
    ``state['mask']``), and the target item (``[N, Fi*d]``); models implement :meth:`sequence_logit` (and may
    add to the state in :meth:`encode_history`). No first-order term. Top-k (``recommend``) reads the user's
    whole known history (every interaction in the data, time order).
    """

    needs = frozenset({"history_seq"})
    use_first_order = False
    history_padding = "left"
    option_help = dict(SEQUENCE_HELP)

    def build_interaction(self) -> None:
        if not self.item_keys:
            raise ConfigError(f"{self.model_name} embeds the behaviour sequence with the item fields; feature_fields "
                              "selects none: keep the item id (or an item feature).")
        if int(self.cfg("max_seq_len")) < 1:
            raise ConfigError(f"max_seq_len must be >= 1, got {self.cfg('max_seq_len')}.")
        self.item_dim = len(self.item_keys) * self.embed_dim
        self.query_dim = len(self.query_keys) * self.embed_dim
        self.build_sequence()

    def build_sequence(self) -> None:
        """Create the model's blocks (``self.item_dim``, ``self.query_dim`` are set)."""

    def encode_history(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Target-independent work on the history (once per row); default: none."""
        return state

    def sequence_logit(self, state: Dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """``[N]`` logits (without the global bias) from the row states ``[N, ...]`` and targets ``[N, Fi*d]``."""
        raise ConfigError(f"{type(self).__name__} must define sequence_logit(state, target).")

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        q_emb, _ = super().prepare_scoring(batch)
        items, lens = self.history_before(batch, int(self.cfg("max_seq_len")), self.history_padding)
        hist = self._item_part(items)[0].flatten(-2)
        return self.encode_history({"query": q_emb.flatten(-2), "hist": hist, "mask": items > 0, "len": lens,
                                    "items": items})

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        state = self.prepare_scoring(batch) if state is None else state
        target = self._item_part(items)[0].flatten(-2)
        if items.dim() == 1:
            return self.bias + self.sequence_logit(state, target)
        rows, k = items.shape
        rep = {key: v.repeat_interleave(k, 0) for key, v in state.items()}
        return (self.bias + self.sequence_logit(rep, target.reshape(rows * k, -1))).view(rows, k)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        state = self.prepare_scoring(batch) if state is None else state
        rows, n = state["query"].shape[0], self.meta.num_items
        per_item = rows * (state["hist"].shape[1] + 1) * max(self.item_dim, 1)
        chunk = max(1, self.score_chunk_elements // max(1, per_item))
        out = torch.empty(rows, n, device=state["query"].device, dtype=state["query"].dtype)
        for lo in range(0, n, chunk):
            items = torch.arange(lo, min(lo + chunk, n), device=out.device)
            out[:, lo:lo + len(items)] = self.score_candidates(batch, state, items[None].expand(rows, -1))
        return out


@register_model("DIN", category="ctr",
                paper="G. Zhou, X. Zhu, C. Song, Y. Fan, H. Zhu, X. Ma, Y. Yan, J. Jin, H. Li, K. Gai. Deep Interest "
                      "Network for Click-Through Rate Prediction. KDD 2018.")
class DIN(BehaviourSequenceRecommender):
    """DIN (Zhou et al., KDD 2018). The user's behaviours ``e_1..e_L`` (the last ``max_seq_len`` items before
    the row, each the concatenation of its item-field embeddings) are pooled w.r.t. the target item ``v``
    by the local activation unit, ``u = sum_j a(e_j, v) e_j`` with ``a = MLP([e_j, v, e_j - v, e_j * v])``
    (unnormalised weights, as in the paper; ``attention_softmax: true`` normalises them as the official
    code does), and ``y = MLP([user / context fields; v; u])`` with Dice (or PReLU, ...) activations.

    Departures from the paper: the behaviour sequence is every interaction before the row in time order
    (clicked or not, none of their labels used), ties in time in file order; no mini-batch aware
    regulariser (``embed_reg`` is a plain L2 on the embeddings); no first-order term; the activation unit reads
    ``[e_j, v, e_j - v, e_j * v]`` (the official code's, in place of the figure's outer product); with
    ``attention_activation: dice`` its batch statistics cover the padded positions too.
    Defaults: RecBole 1.2.1 (embedding 10, Adam 1e-3) with the paper's towers (attention [80, 40], DNN
    [200, 80], Dice).

    Args (config keys): ``embed_dim``, ``max_seq_len``, ``attention_hidden``, ``attention_activation``,
    ``attention_softmax``, ``mlp_hidden``, ``activation``, ``dropout``, ``batch_norm``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``din.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="DIN", dataset="ml-1m", label_threshold=4)   # doctest: +SKIP
    """

    option_help = {**SEQUENCE_HELP,
                   "attention_hidden": "hidden sizes of the local activation unit's MLP",
                   "attention_activation": "activation of the local activation unit (sigmoid, dice, prelu, ...)",
                   "attention_softmax": "normalise the attention weights with a softmax over the sequence (the "
                                        "official code); false: raw weights (the paper)",
                   "mlp_hidden": "hidden sizes of the prediction MLP",
                   "activation": "activation of the prediction MLP (dice, prelu, relu, ...)",
                   "dropout": "dropout after each hidden layer of the prediction MLP",
                   "batch_norm": "batch norm before each hidden activation of the prediction MLP"}

    def build_sequence(self) -> None:
        self.attention = LocalActivationUnit(self.item_dim, list(self.cfg("attention_hidden")),
                                             self.cfg("attention_activation"))
        self.mlp = tower([self.query_dim + 2 * self.item_dim, *self.cfg("mlp_hidden"), 1], self.cfg("activation"),
                         float(self.cfg("dropout")), bool(self.cfg("batch_norm")))

    def sequence_logit(self, state, target):
        w = self.attention(state["hist"], target, state["mask"], bool(self.cfg("attention_softmax")))
        interest = (w.unsqueeze(-1) * state["hist"]).sum(1)
        return self.mlp(torch.cat([state["query"], target, interest], -1)).squeeze(-1)
