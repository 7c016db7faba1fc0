"""RepeatNet: a repeat-explore mixture - re-consume an item of the history or explore a new one."""
from typing import Dict, Tuple

import torch
from torch import nn

from recstudio.model.base.itemtower import ItemTowerRecommender
from recstudio.model.module.seq_blocks import packed_rnn
from recstudio.model.family.sequential import ITEM_SEQ, SEQ_HELP, TARGET_SEQ, SequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class _AdditiveAttention(nn.Module):
    """``e_tj = v^T tanh(Dropout(U h_j) + Dropout(W h_t))`` over the history positions ``j`` of each query
    ``t``, softmax over the allowed ``j`` (``[P, L]`` weights; all zero when no ``j`` is allowed)."""

    def __init__(self, hidden: int, dropout: float, bias: bool):
        super().__init__()
        self.u = nn.Linear(hidden, hidden, bias=bias)
        self.w = nn.Linear(hidden, hidden, bias=bias)
        self.v = nn.Linear(hidden, 1, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, memory: torch.Tensor, query: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        # memory [P, L, H] (the query's row), query [P, H], allowed bool [P, L]
        e = self.v(torch.tanh(self.dropout(self.u(memory)) + self.dropout(self.w(query)).unsqueeze(1))).squeeze(-1)
        # a query with no allowed position (an empty row) gets all-zero weights
        return torch.softmax(e.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)


class RepeatNetCore(nn.Module):
    """GRU states of the sequence and, for queries at positions ``t``, the three parts of RepeatNet:
    the mode probabilities ``[P(r), P(e)]``, the repeat attention over the history ``j <= t`` and the
    explore logits (history items and padding at ``-inf``)."""

    def __init__(self, item_embedding: nn.Module, num_items: int, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.item_embedding = item_embedding
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.mode_attention = _AdditiveAttention(hidden, dropout, bias=False)
        self.mode = nn.Linear(hidden, 2, bias=False)
        self.repeat_attention = _AdditiveAttention(hidden, dropout, bias=True)
        self.explore_attention = _AdditiveAttention(hidden, dropout, bias=True)
        self.explore = nn.Linear(2 * hidden, num_items, bias=False)
        self.dropout = nn.Dropout(dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, seq: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``seq [B, L]``; queries at ``(rows [P], cols [P])``. Returns ``mode [P, 2]``, ``alpha_r [P, L]``
        (repeat weights over the row's positions) and ``explore_logits [P, num_items]``."""
        real = seq != 0
        h = packed_rnn(self.gru, self.item_embedding(seq), real)  # [B, L, H]
        memory, query = h[rows], h[rows, cols]
        L = seq.size(1)
        allowed = real[rows] & (torch.arange(L, device=seq.device) <= cols.unsqueeze(1))  # [P, L]
        a_mode = self.mode_attention(memory, query, allowed)
        mode = torch.softmax(self.mode(torch.bmm(a_mode.unsqueeze(1), memory).squeeze(1)), dim=-1)
        alpha_r = self.repeat_attention(memory, query, allowed)
        a_e = self.explore_attention(memory, query, allowed)
        c_e = torch.bmm(a_e.unsqueeze(1), memory).squeeze(1)
        logits = self.dropout(self.explore(torch.cat([c_e, query], dim=-1)))
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen.scatter_(1, seq[rows].masked_fill(~allowed, 0), True)  # history items (and padding column 0)
        seen[:, 0] = True
        return mode, alpha_r, logits.masked_fill(seen, float("-inf"))


class RepeatNetQuery(nn.Module):
    """Query encoder: ``log P(i)`` ``[B, num_items]`` of the next item after the latest ``max_len`` items
    (the full mixture distribution at the last position; column 0 is ``-inf``)."""

    def __init__(self, core: RepeatNetCore, max_len: int):
        super().__init__()
        self.core, self.max_len = core, int(max_len)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        seq = batch[ITEM_SEQ][:, -self.max_len:]
        B, L = seq.shape
        rows = torch.arange(B, device=seq.device)
        cols = torch.full_like(rows, L - 1)
        mode, alpha_r, logits = self.core(seq, rows, cols)
        repeat = torch.zeros_like(logits).scatter_add_(1, seq, alpha_r)
        explore = torch.softmax(logits, dim=-1)
        prob = mode[:, :1] * repeat + mode[:, 1:] * explore
        prob = torch.where((seq != 0).any(-1, keepdim=True), prob, explore)  # no history: explore mode only
        out = prob.clamp(min=1e-30).log()
        out[:, 0] = float("-inf")
        return out


@register_model("RepeatNet", category="seq",
                paper="P. Ren, Z. Chen, J. Li, Z. Ren, J. Ma, M. de Rijke. RepeatNet: A Repeat Aware Neural "
                      "Recommendation Machine for Session-based Recommendation. AAAI 2019.")
class RepeatNet(SequentialRecommender):
    """RepeatNet (Ren et al., AAAI 2019).

    A GRU encodes the items ``x_1..x_t`` into states ``h_1..h_t``. The next item is drawn from a mixture of
    two modes, ``P(i) = P(r) P(i | r) + P(e) P(i | e)``:

    - **repeat-explore mechanism**: ``[P(r), P(e)] = softmax(W_re c_re)``, ``c_re`` the additive attention
      summary ``sum_j a_j h_j`` with ``a = softmax_j(v_re^T tanh(U_re h_j + W_re h_t))``;
    - **repeat decoder**: ``P(i | r) = sum_{j: x_j = i} softmax_j(v_r^T tanh(U_r h_j + W_r h_t))``, a
      distribution over the items of the history only;
    - **explore decoder**: ``c_e`` an attention summary like ``c_re``, ``f = W_e [c_e; h_t]`` with the
      history items set to ``-inf``, ``P(i | e) = softmax(f)``: a distribution over the other items.

    **Loss** (the model's own; there is no ``loss`` / ``sampler`` key): the negative log-likelihood of the
    mixture, ``-log(P(target) + 1e-8)``, averaged over every position of the window that has a next item
    (causal: position ``t`` sees ``x_1..x_t``). With ``joint_train: true`` the mode loss
    ``-[1(target in history) log P(r) + 1(target not in history) log P(e)]`` is added (the paper trains
    both jointly; RecBole's default is off). Ranking uses ``log P(i)`` over all items; the output layer
    ``W_e`` is the model's own (not the item table), so ANN retrieval does not apply (``supports_ann``
    is false).

    Departures: users' histories (the latest ``max_seq_len`` items) replace sessions; dropout sits where
    RecBole puts it (on the attention projections and on the explore logits; the paper does not say);
    the mode attention ignores padding (RecBole's attends to it); the mode loss is a mean over positions
    (RecBole's broadcasts it over the batch). Evaluation masks the history by default, so the repeat mode
    then only shifts mass between modes (on ml-100k nobody re-rates a movie); on data with repeats
    (``dedup: all``: re-listens, items revisited in a session) set ``eval_mask_history: false`` so that
    the items the repeat mode recommends are ranked and a repeated target counts (docs/metrics.md).

    Args (config keys): ``embed_dim``, ``hidden_dim``, ``dropout``, ``joint_train``, ``max_seq_len``,
    ``item_feature_fields``; defaults in ``repeatnet.yaml`` (RecBole's: d 64, hidden 64, dropout 0.5,
    Adam 1e-3, max length 50).

    Example:
        >>> model, metrics = recstudio.run(model="RepeatNet", dataset="ml-100k")     # doctest: +SKIP
    """

    supports_ann = False
    option_help = {
        "embed_dim": SEQ_HELP["embed_dim"],
        "max_seq_len": SEQ_HELP["max_seq_len"],
        "item_feature_fields": SEQ_HELP["item_feature_fields"],
        "hidden_dim": "GRU state size (RecBole: 64)",
        "dropout": "dropout on the attention projections and the explore logits (RecBole: 0.5)",
        "joint_train": "add the repeat / explore mode loss to the mixture NLL (RecBole default: false)",
    }

    def _get_query_encoder(self) -> nn.Module:
        c = self.config
        if not 0.0 <= c["dropout"] < 1.0:
            raise ConfigError(f"RepeatNet dropout must be in [0, 1), got {c['dropout']}.")
        core = RepeatNetCore(self.item_encoder, self.meta.num_items, c["embed_dim"], c["hidden_dim"], c["dropout"])
        return RepeatNetQuery(core, c["max_seq_len"])

    def _get_score_func(self):
        return None  # scores are the mixture's log-probabilities, not query . item products

    def build_blocks(self) -> None:
        # the mixture NLL is RepeatNet's own objective: none of the base's loss / sampler checks apply
        ItemTowerRecommender.build_blocks(self)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return state.clone()

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        return state.gather(1, items.unsqueeze(1)).squeeze(1) if items.dim() == 1 else state.gather(1, items)

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Mixture NLL ``-log(P(target) + 1e-8)`` at every position with a next item (+ the mode loss with
        ``joint_train``). ``P(target | r)`` is summed from the repeat weights of the history positions
        holding the target, ``P(target | e)`` is one entry of the explore softmax."""
        seq, target = batch[ITEM_SEQ], batch[TARGET_SEQ]
        rows, cols = ((target > 0) & (seq != 0)).nonzero(as_tuple=True)
        tgt = target[rows, cols]
        mode, alpha_r, logits = self.query_encoder.core(seq, rows, cols)
        in_history = seq[rows] == tgt.unsqueeze(1)  # [P, L] (positions > t carry zero repeat weight)
        p_repeat = (alpha_r * in_history).sum(-1)
        p_explore = torch.exp(logits.gather(1, tgt.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=-1))
        prob = mode[:, 0] * p_repeat + mode[:, 1] * p_explore
        loss = -(prob + 1e-8).log().mean()
        if self.cfg("joint_train"):
            repeat = (in_history & (torch.arange(seq.size(1), device=seq.device) <= cols.unsqueeze(1))).any(-1)
            loss = loss - torch.where(repeat, (mode[:, 0] + 1e-8).log(), (mode[:, 1] + 1e-8).log()).mean()
        return loss
