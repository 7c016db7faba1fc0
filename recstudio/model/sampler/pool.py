"""Pool samplers: SIR (``sir``) resamples a random block of the catalogue by the snapshot's softmax, DNS
(``dns``) keeps the best-scoring of M uniform candidates; formulas in :mod:`recstudio.model.sampler.model_based`."""
import math
from typing import Optional, Tuple

import torch

from recstudio.model.sampler.base import check_ids
from recstudio.model.sampler.snapshot import ModelBasedSampler, pairwise_score, row_score
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


class _PoolSampler(ModelBasedSampler):
    """Base of SIR and DNS: pools of ``num_candidates`` items scored with the snapshot."""

    def __init__(self, num_items: int, num_candidates: int = 32, metric: str = "auto",
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, metric, None, generator, seed)
        if int(num_candidates) < 1:
            raise ConfigError(f"{type(self).__name__}: num_candidates must be >= 1, got {num_candidates}.")
        self.num_candidates = int(num_candidates)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_candidates={self.num_candidates}"


class SIRSampler(_PoolSampler):
    """Sampling-importance-resampling over a random partition of the catalogue (``sir``).

    At every call the items 1..Y (``Y = num_items - 1``) are shuffled into ``G = max(1, Y // M)`` blocks of
    ``M`` or ``M + 1`` items (``M = num_candidates``; one permutation from the sampler's generator, shared
    by the rows of the batch). Each row picks one block uniformly, scores it with the snapshot, and
    resamples its negatives from the block with replacement ∝ ``exp(s(q, v))``. The proposal of one draw is
    then exactly ``q(i) = exp(s_i) / (G · Σ_{j ∈ block(i)} exp(s_j))``: ``log q`` costs the scores of the
    block of each item asked about (the positive's block is scored for ``log_pos_prob``).

    Departure from textbook SIR (M candidates drawn i.i.d. uniformly): that procedure's marginal,
    ``(M/Y) · E[w_i / (w_i + S_{M-1})]`` with ``w = exp(s)`` and ``S_{M-1}`` the weight of the M - 1 other
    candidates, has no closed form (it is the 1-d integral ``(M/Y) w_i ∫ e^{-t w_i} φ(t)^{M-1} dt`` with
    ``φ(t) = mean_j e^{-t w_j}``, which costs O(Y) exponentials per quadrature node and query, more than
    the full softmax). Blocks of a random partition are pools drawn without replacement, and which block
    a row gets is the only randomness left, so the marginal is the closed form above. With ``M >= Y``
    there is one block and the proposal is the snapshot's softmax exactly.

    Args:
        num_items: catalogue size including padding 0.
        num_candidates: M, the block (pool) size.
        metric: ``'ip'`` | ``'l2'`` | ``'auto'``.
        generator, seed: see :class:`~recstudio.model.sampler.base.Sampler`.

    Example:
        >>> import torch
        >>> s = SIRSampler(11, num_candidates=5, metric="ip", seed=0)
        >>> s.update(item_vectors=torch.randn(11, 4))
        >>> q = torch.randn(2, 4)
        >>> lp, neg, lq = s(q, 3, torch.tensor([1, 2]))
        >>> every = s.log_prob(torch.arange(11).expand(2, 11), query=q)  # this call's partition
        >>> bool(torch.allclose(every.exp().sum(1), torch.ones(2, dtype=torch.float64)))
        True
        >>> bool(torch.allclose(lq.double(), every.gather(1, neg), atol=1e-6))
        True
    """

    def rebuild(self) -> None:
        self.repartition()

    def repartition(self) -> None:
        """Draw a new random partition of the items into ``num_groups`` blocks (``self.blocks`` [G, W], padded
        with 0; ``self.block_of`` [num_items], -1 at the padding)."""
        y, dev = self.num_items - 1, self.vectors.device
        g = max(1, y // self.num_candidates)
        width = -(-y // g)
        perm = self.randperm(y, dev) + 1
        flat = torch.zeros(g * width, dtype=torch.long, device=dev)
        flat[:y] = perm
        self.blocks = flat.reshape(width, g).t().contiguous()  # position r of the permutation -> block r mod G
        self.block_of = torch.full((self.num_items,), -1, dtype=torch.long, device=dev)
        self.block_of[perm] = torch.arange(y, device=dev) % g
        self.num_groups = g

    def _block_scores(self, q: Tensor, block: Tensor) -> Tensor:
        """``[B, W]`` scores of row b's query against the items of ``block[b]`` (-inf at the padding)."""
        items = self.blocks[block]
        s = row_score(q, self.vectors[items], self.score_metric).double()
        return s.masked_fill(items == 0, float("-inf"))

    def _log_q(self, q: Tensor, items: Tensor) -> Tensor:
        """Exact ``log q(items[b, m] | q[b])`` [B, M] under the current partition."""
        blocks = self.block_of[items]  # [B, M]
        b, m = items.shape
        rows = q.unsqueeze(1).expand(b, m, q.shape[1]).reshape(b * m, -1)
        lse = torch.logsumexp(self._block_scores(rows, blocks.clamp(min=0).reshape(-1)), 1).reshape(b, m)
        s = row_score(q, self.vectors[items], self.score_metric).double()
        lp = s - lse - math.log(self.num_groups)
        return torch.where(blocks >= 0, lp, torch.full_like(lp, float("-inf")))

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        q, per_row = self.rows(self.ready(query), pos_items)
        dev, b = self.vectors.device, q.shape[0]
        self.repartition()
        block = self.randint(0, self.num_groups, (b,), dev)
        s = self._block_scores(q, block)  # [B, W]
        log_norm = torch.logsumexp(s, 1, keepdim=True) + math.log(self.num_groups)
        cdf = torch.cumsum(torch.softmax(s, 1), 1)
        u = self.rand((b, k * per_row), dev) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(max=s.shape[1] - 1)
        # a padding slot has probability 0: searchsorted lands on it only if u hits the cdf's flat end exactly
        pick = torch.minimum(pick, (self.blocks[block] > 0).sum(1, keepdim=True) - 1)
        neg = self.blocks[block].gather(1, pick)
        log_neg = s.gather(1, pick) - log_norm
        log_pos = self._log_q(q, pos_items.reshape(b, -1).long().to(dev))
        return self.finish(query, pos_items, neg, log_pos, log_neg, k)

    def log_prob(self, items, pos_items=None, user_hist=None, query=None) -> Tensor:
        """Exact ``log q(items[b, m] | query[b])`` [B, M] under the partition of the last call (or refresh)."""
        q = self.ready(query)
        flat = items.reshape(items.shape[0], -1).long().to(self.vectors.device)
        ok = (flat >= 1) & (flat < self.num_items)
        lp = self._log_q(q, flat.clamp(0, self.num_items - 1))
        return torch.where(ok, lp, torch.full_like(lp, float("-inf"))).reshape(items.shape)


class DNSSampler(_PoolSampler):
    """Dynamic negative sampling (``dns``): each negative is the best-scoring of M uniform candidates
    (Zhang et al., "Optimizing top-n collaborative filtering via dynamic negative item sampling",
    SIGIR 2013). ``log q`` is exact (the distribution of the maximum of M uniform draws; see the
    module docstring) and costs one scoring of the catalogue per query.

    Args:
        num_items: catalogue size including padding 0.
        num_candidates: M, candidates per negative.
        metric: ``'ip'`` | ``'l2'`` | ``'auto'``.
        row_chunk: queries scored against the catalogue at once when computing ``log q``.
        generator, seed: see :class:`Sampler`.
    """

    def __init__(self, num_items: int, num_candidates: int = 32, metric: str = "auto", row_chunk: int = 1024,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, num_candidates, metric, generator, seed)
        self.row_chunk = max(1, int(row_chunk))

    def _log_q_rank(self, rank: Tensor) -> Tensor:
        """``log P(max of M uniform draws = the item of rank r)`` (r = 1 lowest ... Y highest)."""
        y, m = self.num_items - 1, self.num_candidates
        r = rank.double()
        # log(r^M - (r-1)^M) - M log Y = M log r + log(1 - (1 - 1/r)^M) - M log Y
        tail = torch.exp(m * torch.log1p(-1.0 / r))  # (1 - 1/r)^M, 0 at r = 1
        return m * torch.log(r) + torch.log1p(-tail) - m * math.log(y)

    def _chunks(self, q: Tensor):
        """``(rows, scores [b, Y], ranks [b, Y])`` per chunk of queries: every item's score and its rank
        (1 = lowest) among the catalogue; candidates are scored from the same matrix, so the ranks are
        consistent with the argmax."""
        for a in range(0, q.shape[0], self.row_chunk):
            full = pairwise_score(q[a:a + self.row_chunk], self.vectors[1:], self.score_metric)
            rank = torch.empty_like(full, dtype=torch.long)
            order = full.argsort(1)
            rank.scatter_(1, order, torch.arange(1, full.shape[1] + 1, device=full.device).expand_as(order))
            yield slice(a, a + self.row_chunk), full, rank

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        q, per_row = self.rows(self.ready(query), pos_items)
        dev, b, m, draws = self.vectors.device, q.shape[0], self.num_candidates, k * per_row
        pool = self.randint(1, self.num_items, (b, draws * m), dev)
        pos = pos_items.reshape(b, -1).to(dev)
        negs, log_negs, log_poss = [], [], []
        for rows, full, rank in self._chunks(q):
            cand = pool[rows].reshape(-1, draws, m)
            s = full.gather(1, cand.reshape(cand.shape[0], -1) - 1).reshape(cand.shape)
            neg = cand.gather(2, s.argmax(-1, keepdim=True)).squeeze(2)
            negs.append(neg)
            log_negs.append(self._log_q_rank(rank.gather(1, neg - 1)))
            log_poss.append(self._log_q_rank(rank.gather(1, (pos[rows] - 1).clamp(min=0))))
        return self.finish(query, pos_items, torch.cat(negs), torch.cat(log_poss), torch.cat(log_negs), k)

    def log_prob(self, items, pos_items=None, user_hist=None, query=None) -> Tensor:
        q = self.ready(query)
        flat = items.reshape(items.shape[0], -1).long().to(self.vectors.device)
        ok = (flat >= 1) & (flat < self.num_items)
        lp = torch.cat([self._log_q_rank(rank.gather(1, (flat[rows] - 1).clamp(min=0)))
                        for rows, _, rank in self._chunks(q)])
        return torch.where(ok, lp, torch.full_like(lp, float("-inf"))).reshape(items.shape)


__all__ = ["SIRSampler", "DNSSampler"]
