"""NAIS: FISM with a learned attention over the user's history items, per target item."""
from typing import Dict

import torch
from torch import nn

from recstudio.data.types.base import csr_gather
from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

ALGORITHMS = ("prod", "concat")


@register_model("NAIS", category="general",
                paper="X. He, Z. He, J. Song, Z. Liu, Y.-G. Jiang, T.-S. Chua. NAIS: Neural Attentive Item "
                      "Similarity Model for Recommendation. IEEE TKDE 2018.")
class NAIS(TowerFreeRecommender):
    """NAIS (He et al., TKDE 2018): FISM whose history items are weighted by attention on the target::

        a_ij  = h^T ReLU(W f(p_j, q_i) + b),      f = p_j ⊙ q_i ('prod') or [p_j ; q_i] ('concat')
        w_ij  = exp(a_ij) / (Σ_{j' in R_u \\ {i}} exp(a_ij'))^beta
        score(u, i) = |R_u \\ {i}|^-alpha  Σ_{j in R_u \\ {i}} w_ij  p_j . q_i  +  b_i

    ``R_u`` is the user's training items (``needs: train_graph``); the target is always left out of
    its own user's history (the paper's formulation), so training and ranking score a pair the same
    way. ``beta`` < 1 smooths the softmax denominator for users with long histories (the paper's
    0.5). Trained with binary cross-entropy of each positive against ``num_neg`` sampled unobserved
    items plus RecBole's regulariser ``r1 ||P|| + r2 ||Q|| + r3 ||W||`` (Frobenius norms of the whole
    tables, ``reg_weights``).

    Histories are ragged (no padding to the longest user): every (pair, history item) term is one row,
    and the attention softmax is a segment logsumexp. Scoring is not decomposable (the attention sees
    the target), so this is a TowerFree model; full ranking scores one user at a time over item chunks
    of at most ``pair_budget`` (pair, history item) rows. It is slow on CPU: the attention costs
    ``|R_u| * weight_size * embed_dim`` per scored pair.

    Departures: no FISM pre-training of the embeddings (the paper initialises from FISM; RecBole
    makes it optional, off by default); RecBole 1.2.1 keeps the target in the history sum; Adam.

    Args (config keys): ``embed_dim``, ``weight_size``, ``algorithm``, ``alpha``, ``beta``,
    ``reg_weights``, ``pair_budget``, ``loss``, ``sampler``, ``num_neg``; defaults in ``nais.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NAIS", dataset="ml-100k")     # doctest: +SKIP
    """

    needs = frozenset({"train_graph"})
    option_help = {
        **TowerFreeRecommender.option_help,
        "embed_dim": "size of the item vectors p_j (history side) and q_i (target side)",
        "weight_size": "hidden size of the attention network",
        "algorithm": "attention input: 'prod' (p_j * q_i) or 'concat' ([p_j ; q_i])",
        "alpha": "exponent of the normalisation |R_u|^-alpha",
        "beta": "smoothing exponent of the attention softmax's denominator (1: plain softmax)",
        "reg_weights": "[r1, r2, r3]: weights of ||P||, ||Q|| and the attention layer's ||W|| added to the loss",
        "pair_budget": "largest number of (pair, history item) rows computed at once in full ranking (memory)",
    }

    def build_blocks(self) -> None:
        m, c = self.meta, self.config
        if c["algorithm"] not in ALGORITHMS:
            raise ConfigError(f"NAIS algorithm must be one of {ALGORITHMS}, got {c['algorithm']!r}.")
        if len(c["reg_weights"]) != 3 or min(c["reg_weights"]) < 0:
            raise ConfigError(f"NAIS reg_weights must be three weights >= 0, got {c['reg_weights']}.")
        if c["pair_budget"] < 1 or c["alpha"] < 0 or c["beta"] < 0:
            raise ConfigError("NAIS pair_budget must be >= 1 and alpha, beta >= 0.")
        d, w = c["embed_dim"], c["weight_size"]
        self.register_buffer("hist_indptr", m.train_indptr.long().clone(), persistent=False)
        self.register_buffer("hist_indices", m.train_indices.long().clone(), persistent=False)
        self.source = IdEmbedding(m.num_items, d, init="normal", init_std=0.01)   # p_j
        self.target = IdEmbedding(m.num_items, d, bias=True, init="normal", init_std=0.01)   # q_i, b_i
        self.attention = nn.Linear(d * (2 if c["algorithm"] == "concat" else 1), w)
        nn.init.xavier_normal_(self.attention.weight)
        nn.init.zeros_(self.attention.bias)
        self.h = nn.Parameter(torch.ones(w))

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[P]`` of the pairs ``(users[r], items[r])``."""
        c = self.config
        pairs = len(users)
        ptr, hist = csr_gather(self.hist_indptr, self.hist_indices, users)
        row = torch.repeat_interleave(torch.arange(pairs, device=users.device), ptr[1:] - ptr[:-1],
                                      output_size=len(hist))
        keep = hist != items[row]                       # the target leaves its own user's history
        hist, row = hist[keep], row[keep]
        p, q = self.source(hist), self.target(items)[row]          # [T, d]
        x = p * q if c["algorithm"] == "prod" else torch.cat([p, q], dim=-1)
        logits = torch.relu(self.attention(x)) @ self.h            # [T]
        sim = (p * q).sum(-1)
        zeros = logits.new_zeros(pairs)
        top = torch.full_like(zeros, float("-inf")).scatter_reduce(0, row, logits.detach(), "amax")
        top = torch.where(torch.isfinite(top), top, zeros)
        denom = zeros.index_add(0, row, torch.exp(logits - top[row]))
        lse = top + torch.log(denom.clamp(min=torch.finfo(denom.dtype).tiny))
        weights = torch.exp(logits - c["beta"] * lse[row])
        total = zeros.index_add(0, row, weights * sim)
        count = torch.bincount(row, minlength=pairs).to(total.dtype).clamp(min=1.0)
        return count.pow(-c["alpha"]) * total + self.target.get_bias(items)

    def score(self, batch: Dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        if items.dim() == 2:
            users = users.unsqueeze(1).expand_as(items)
        return self.pair_scores(users.reshape(-1), items.reshape(-1)).view(items.shape)

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        users = batch[self.meta.uid_field]
        n = self.meta.num_items
        lens = (self.hist_indptr[users + 1] - self.hist_indptr[users]).tolist()
        out = torch.empty(len(users), n, device=self.device)
        for r, (u, length) in enumerate(zip(users, lens)):
            chunk = max(1, self.config["pair_budget"] // max(length, 1))
            for lo in range(0, n, chunk):
                items = torch.arange(lo, min(lo + chunk, n), device=self.device)
                out[r, lo:lo + len(items)] = self.pair_scores(u.expand(len(items)), items)
        return out

    def regulariser(self) -> torch.Tensor:
        r1, r2, r3 = self.config["reg_weights"]
        return (r1 * self.source.embedding.weight.norm() + r2 * self.target.embedding.weight.norm()
                + r3 * self.attention.weight.norm())

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return super().training_loss(batch) + self.regulariser()
