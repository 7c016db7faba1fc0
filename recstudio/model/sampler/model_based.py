"""Model-based negative samplers: proposals that follow the model's own scores.

Every sampler here keeps a *snapshot* of the item vectors, refreshed by ``update(item_vectors=...)``
(item-tower models call it at the start of every epoch, or every ``sampler_refresh_steps`` steps;
see ``ItemTowerRecommender.refresh_sampler``), and needs the batch's query vectors in ``forward``.
Scores between a query ``q`` and a vector ``v`` are ``q·v`` (``metric='ip'``) or ``-||q - v||²``
(``metric='l2'``); ``metric='auto'`` follows the model's score function (cosine → ip of the
normalised vectors, euclidean → l2).

* ``cluster_uni`` / ``cluster_pop`` (PRIS, Lian et al., WWW 2020): one k-means over the items; a
  draw picks cluster c with probability ∝ ``exp(s(q, μ_c)) · m_c`` (``m_c`` = the cluster's size, or
  its popularity mass), then an item of c uniformly (or ∝ popularity). Exact
  ``log q(i) = s(q, μ_{c(i)}) + log w_i - log Σ_c exp(s(q, μ_c)) m_c`` (``w_i`` = 1 or ``count_i``).
* ``midx_uni`` / ``midx_pop`` (MIDX, Chen et al., "Fast variational autoencoder with inverted
  multi-index for collaborative filtering", WWW 2022): the vectors are split into two halves, each
  k-means quantised (codebooks ``C¹``, ``C²``); a draw picks the cell (k1, k2) with probability ∝
  ``exp(s(q¹, C¹_k1) + s(q², C²_k2)) · m_{k1,k2}`` over the non-empty cells (computed exactly over
  all K² cells), then an item of the cell uniformly (or ∝ popularity). Exact
  ``log q(i) = s(q¹, C¹_{a1(i)}) + s(q², C²_{a2(i)}) + log w_i - log Z(q)``.
* ``sir`` (sampling-importance-resampling): M uniform candidates, resampled ∝ ``exp(s(q, v))``
  (the importance weight softmax / uniform). Its marginal tends to the snapshot softmax as M grows;
  the reported ``log q(i) = s_i - logsumexp_pool(s) + log M - log(num_items - 1)`` is the
  self-normalised estimate of that softmax (**approximate**, not the exact SIR marginal).
* ``dns`` (dynamic negative sampling, Zhang et al., SIGIR 2013): each negative is the highest-scoring
  of M uniform candidates. Exact ``q(i) = (r_i^M - (r_i - 1)^M) / Y^M`` with ``Y = num_items - 1`` and
  ``r_i`` the number of items scoring ≤ ``s_i`` (ties have probability 0 with real-valued scores);
  computing ``r_i`` scores the whole catalogue per query (in row chunks).
* ``retriever``: a trained item-tower model (a checkpoint) proposes, for each positive p, one of the
  ``top_n`` nearest items to p in its ANN index (``recstudio.ann``) with probability ``1 - λ``, else a
  uniform item (``λ = uniform_mix`` keeps every item in the support). Exact
  ``q(i | p) = λ / Y + (1 - λ) [i ∈ N(p)] / |N(p)|``. It proposes from the retriever's fixed
  vectors, so ``update`` changes nothing.

None of them excludes the positive or the user's history (the proposal would no longer have a
closed form): the models mask accidental hits (``neg_is_pos``). The padding id 0 and, for the
``*_pop`` samplers, items with count 0 are never drawn (``log q = -inf``).
"""
import math
from typing import Callable, Optional, Tuple, Union

import torch

from recstudio.model.sampler.base import Sampler, check_ids
from recstudio.model.sampler.kmeans import BACKENDS, kmeans
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor
METRICS = ("auto", "ip", "l2")


def pairwise_score(q: Tensor, v: Tensor, metric: str) -> Tensor:
    """``[B, N]`` scores of queries ``q [B, d]`` against vectors ``v [N, d]``."""
    dot = q @ v.t()
    if metric == "l2":
        return 2 * dot - (q * q).sum(-1, keepdim=True) - (v * v).sum(-1)
    return dot


def row_score(q: Tensor, v: Tensor, metric: str) -> Tensor:
    """``[B, M]`` scores of ``q [B, d]`` against per-row vectors ``v [B, M, d]``."""
    dot = (q.unsqueeze(1) * v).sum(-1)
    if metric == "l2":
        return 2 * dot - (q * q).sum(-1, keepdim=True) - (v * v).sum(-1)
    return dot


class ModelBasedSampler(Sampler):
    """Base of the samplers that need the query vectors and a snapshot of the item vectors.

    Args:
        num_items: catalogue size including the padding id 0.
        metric: ``'ip'``, ``'l2'`` or ``'auto'`` (the model's score function decides at refresh).
        item_counts: training counts per item id (the popularity of the ``*_pop`` samplers).
        generator, seed: see :class:`Sampler`.
    """

    needs_query = True
    needs_item_vectors = True

    def __init__(self, num_items: int, metric: str = "auto", item_counts: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)
        if metric not in METRICS:
            raise ConfigError(f"{type(self).__name__}: metric must be one of {METRICS}, got {metric!r}.")
        self.metric = metric
        self.query_map: Optional[Callable[[Tensor], Tensor]] = None
        self.refreshes = 0
        self.register_buffer("vectors", torch.empty(0), persistent=False)
        self.register_buffer("counts", torch.empty(0, dtype=torch.float64), persistent=False)
        if item_counts is not None:
            self.set_counts(item_counts)

    # ---------------------------------------------------------------- refresh
    def bind(self, score_func) -> None:
        """Follow ``score_func``: its query map (e.g. normalisation) and, for ``metric='auto'``, its metric."""
        self.query_map = score_func.query_vector
        if self.metric == "auto":
            self.metric = "l2" if getattr(score_func, "metric", "ip") == "l2" else "ip"

    def set_counts(self, item_counts) -> None:
        counts = torch.as_tensor(item_counts).detach().to(torch.float64).flatten().clone()
        if counts.numel() != self.num_items:
            raise DataError(f"{type(self).__name__}: item_counts has {counts.numel()} entries; expected num_items = "
                            f"{self.num_items}.")
        if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
            raise DataError(f"{type(self).__name__}: item_counts must be finite and >= 0.")
        counts[0] = 0.0
        self.counts = counts.to(self.counts.device)

    def update(self, item_vectors: Optional[Tensor] = None, item_counts: Optional[Tensor] = None) -> None:
        """Store new counts and / or a new snapshot of the item vectors ``[num_items, d]`` (row 0 = padding)
        and rebuild the proposal from them."""
        if item_counts is not None:
            self.set_counts(item_counts)
        if item_vectors is None:
            return
        v = item_vectors.detach()
        if v.dim() != 2 or v.shape[0] != self.num_items:
            raise DataError(f"{type(self).__name__}: item_vectors must be [num_items={self.num_items}, d], got "
                            f"{tuple(v.shape)}.")
        self.vectors = v.float().clone()
        self.rebuild()
        self.refreshes += 1

    def rebuild(self) -> None:
        """Recompute the proposal's tables from ``self.vectors`` (subclasses)."""

    @property
    def score_metric(self) -> str:
        return "ip" if self.metric == "auto" else self.metric

    # ---------------------------------------------------------------- helpers
    def ready(self, query: Optional[Tensor]) -> Tensor:
        if query is None:
            raise ConfigError(f"{type(self).__name__} is model-based: it needs the batch's query vectors. Use it "
                              "with an item-tower model (it passes them), or call sampler(query, k, pos).")
        if self.vectors.numel() == 0:
            raise ConfigError(f"{type(self).__name__} has no item vectors yet: call update(item_vectors=...) "
                              "(item-tower models do at the start of training).")
        q = query.detach()
        if self.query_map is not None:
            q = self.query_map(q)
        return q.to(self.vectors.device, torch.float32)

    def rows(self, query: Tensor, pos_items: Tensor) -> Tuple[Tensor, int]:
        """Per-row queries and the number of positives per row (``pos_items`` [B] or [B, P])."""
        b = pos_items.shape[0]
        if query.dim() != 2 or query.shape[0] != b:
            raise ConfigError(f"{type(self).__name__}: query must be [B, d] with B = {b} (one per row of "
                              f"pos_items), got {tuple(query.shape)}.")
        return query, pos_items.numel() // max(b, 1)

    def finish(self, query, pos_items, neg, log_pos, log_neg, k) -> Tuple[Tensor, Tensor, Tensor]:
        dtype, dev = self.prob_dtype(query), pos_items.device
        shape = (*pos_items.shape, k)
        return (log_pos.reshape(pos_items.shape).to(dev, dtype), neg.reshape(shape).to(dev),
                log_neg.reshape(shape).to(dev, dtype))

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, metric={self.metric!r}, refreshes={self.refreshes}"


class QuantizedSampler(ModelBasedSampler):
    """Cells from k-means quantisation of the item vectors (one codebook: PRIS; two halves: MIDX).

    Args:
        num_items: catalogue size including padding 0.
        num_clusters: K, codewords per codebook (clamped to the number of items).
        metric: ``'ip'`` | ``'l2'`` | ``'auto'``.
        kmeans_iters: Lloyd iterations at each refresh.
        kmeans_backend: ``'auto'`` (faiss when installed), ``'faiss'`` or ``'torch'``.
        alpha: popularity exponent of the ``*_pop`` variants (weight ``count^alpha``).
        item_counts: training counts per item id (required by the ``*_pop`` variants).
        generator, seed: see :class:`Sampler`.
    """

    parts = 1
    within = "uniform"

    def __init__(self, num_items: int, num_clusters: int = 16, metric: str = "auto", kmeans_iters: int = 10,
                 kmeans_backend: str = "auto", alpha: float = 1.0, item_counts: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, metric, item_counts, generator, seed)
        if int(num_clusters) < 1:
            raise ConfigError(f"{type(self).__name__}: num_clusters must be >= 1, got {num_clusters}.")
        if kmeans_backend not in BACKENDS:
            raise ConfigError(f"{type(self).__name__}: kmeans_backend must be one of {BACKENDS}, got {kmeans_backend!r}.")
        if float(alpha) < 0:
            raise ConfigError(f"{type(self).__name__}: alpha must be >= 0, got {alpha}.")
        self.num_clusters, self.kmeans_iters = int(num_clusters), int(kmeans_iters)
        self.kmeans_backend, self.alpha = kmeans_backend, float(alpha)
        self.kmeans_seed = 0 if seed is None else int(seed)
        self.codebooks = []
        self.splits = []

    def item_weights(self) -> Tensor:
        """``w_i`` [num_items] float64: 1 (uniform within a cell) or ``count_i^alpha``; 0 at the padding."""
        if self.within == "uniform":
            w = torch.ones(self.num_items, dtype=torch.float64, device=self.vectors.device)
        else:
            if self.counts.numel() == 0:
                raise ConfigError(f"{type(self).__name__} draws by popularity: give item_counts (the model's "
                                  "training counts) before the first refresh.")
            w = self.counts.to(self.vectors.device).pow(self.alpha)
        w[0] = 0.0
        return w

    def rebuild(self) -> None:
        v = self.vectors[1:]
        d = v.shape[1]
        if self.parts == 2 and d < 2:
            raise ConfigError(f"{type(self).__name__} splits the vectors in two halves; they have d = {d}.")
        bounds = [0, d] if self.parts == 1 else [0, d // 2, d]
        self.splits = [(bounds[p], bounds[p + 1]) for p in range(self.parts)]
        self.codebooks, cell = [], torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
        for p, (a, b) in enumerate(self.splits):
            centroids, labels = kmeans(v[:, a:b], self.num_clusters, self.kmeans_iters,
                                       self.kmeans_seed + self.refreshes * 7919 + p, self.kmeans_backend)
            self.codebooks.append(centroids.to(v.device))
            cell = cell * centroids.shape[0] + labels.to(v.device)
        self.num_cells = int(torch.tensor([c.shape[0] for c in self.codebooks]).prod())
        w = self.item_weights()
        if float(w.sum()) <= 0:
            raise DataError(f"{type(self).__name__}: every item has weight 0 (all counts 0); nothing can be drawn.")
        self.item_cell = torch.cat([cell.new_full((1,), -1), cell])  # [num_items], padding -1
        self.log_w = torch.log(w)  # -inf at the padding and at items of count 0 (pop)
        order = torch.sort(cell, stable=True).indices
        self.sorted_items = order + 1
        sizes = torch.bincount(cell, minlength=self.num_cells)
        self.cell_start = torch.cumsum(sizes, 0) - sizes
        self.cell_size = sizes
        mass = torch.zeros(self.num_cells, dtype=torch.float64, device=v.device).index_add_(0, cell, w[1:])
        self.log_mass = torch.log(mass)  # -inf for empty (or zero-popularity) cells
        self.cum_w = torch.cumsum(w[1:][order], 0)  # inclusive, over the items sorted by cell
        self.cum_before = torch.cat([self.cum_w.new_zeros(1), self.cum_w])[self.cell_start]

    def cell_scores(self, q: Tensor) -> Tensor:
        """``[B, num_cells]`` score of each cell (sum of the parts' codeword scores), float64."""
        out = None
        for (a, b), c in zip(self.splits, self.codebooks):
            s = pairwise_score(q[:, a:b], c, self.score_metric).double()
            out = s if out is None else (out.unsqueeze(2) + s.unsqueeze(1)).reshape(q.shape[0], -1)
        return out

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        q, per_row = self.rows(self.ready(query), pos_items)
        dev, b, draws = self.vectors.device, q.shape[0], k * per_row
        score = self.cell_scores(q)  # [B, C]
        logits = score + self.log_mass
        log_z = torch.logsumexp(logits, 1, keepdim=True)
        cdf = torch.cumsum(torch.exp(logits - log_z), 1)
        u = self.rand((b, draws), dev) * cdf[:, -1:]
        cells = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(max=self.num_cells - 1)
        start, size = self.cell_start[cells], self.cell_size[cells]
        if self.within == "uniform":
            r = torch.minimum((self.rand((b, draws), dev) * size).long(), size - 1)
            at = start + r
        else:
            target = self.cum_before[cells] + self.rand((b, draws), dev) * torch.exp(self.log_mass[cells])
            at = torch.searchsorted(self.cum_w, target.contiguous(), right=True)
            at = torch.minimum(torch.maximum(at, start), start + size - 1)
        neg = self.sorted_items[at]
        log_neg = score.gather(1, cells) + self.log_w[neg] - log_z
        log_pos = self._log_prob_rows(score, log_z, pos_items.reshape(b, -1).to(dev))
        return self.finish(query, pos_items, neg, log_pos, log_neg, k)

    def _log_prob_rows(self, score: Tensor, log_z: Tensor, items: Tensor) -> Tensor:
        cell = self.item_cell[items]
        lp = score.gather(1, cell.clamp(min=0)) + self.log_w[items] - log_z
        return torch.where(cell >= 0, lp, torch.full_like(lp, float("-inf")))

    def log_prob(self, items, pos_items=None, user_hist=None, query=None) -> Tensor:
        """Exact ``log q(items[b, m] | query[b])`` [B, M] (``-inf`` at the padding / zero-weight items)."""
        q = self.ready(query)
        score = self.cell_scores(q)
        log_z = torch.logsumexp(score + self.log_mass, 1, keepdim=True)
        flat = items.reshape(items.shape[0], -1).long().to(self.vectors.device)
        return self._log_prob_rows(score, log_z, flat).reshape(items.shape)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_clusters={self.num_clusters}, parts={self.parts}, "
                f"within={self.within!r}")


class ClusterUniformSampler(QuantizedSampler):
    """PRIS with uniform sampling inside a cluster (``cluster_uni``); see the module docstring."""
    parts, within = 1, "uniform"


class ClusterPopularitySampler(QuantizedSampler):
    """PRIS with popularity sampling inside a cluster (``cluster_pop``); see the module docstring."""
    parts, within = 1, "popularity"


class MIDXUniformSampler(QuantizedSampler):
    """MIDX, two k-means codebooks over the two halves, uniform in a cell (``midx_uni``)."""
    parts, within = 2, "uniform"


class MIDXPopularitySampler(QuantizedSampler):
    """MIDX, two k-means codebooks over the two halves, popularity in a cell (``midx_pop``)."""
    parts, within = 2, "popularity"


class _PoolSampler(ModelBasedSampler):
    """Base of SIR and DNS: ``num_candidates`` uniform candidates per draw scored with the snapshot."""

    def __init__(self, num_items: int, num_candidates: int = 32, metric: str = "auto",
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        super().__init__(num_items, metric, None, generator, seed)
        if int(num_candidates) < 1:
            raise ConfigError(f"{type(self).__name__}: num_candidates must be >= 1, got {num_candidates}.")
        self.num_candidates = int(num_candidates)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_candidates={self.num_candidates}"


class SIRSampler(_PoolSampler):
    """Sampling-importance-resampling (``sir``): M uniform candidates per row, the K negatives
    resampled from them with replacement ∝ ``exp(s(q, v))``. ``log q`` is the pool's self-normalised
    estimate of the snapshot softmax (approximate; see the module docstring).

    Args:
        num_items: catalogue size including padding 0.
        num_candidates: M, the size of the uniform pool of each row.
        metric: ``'ip'`` | ``'l2'`` | ``'auto'``.
        generator, seed: see :class:`Sampler`.
    """

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        q, per_row = self.rows(self.ready(query), pos_items)
        dev, b, m = self.vectors.device, q.shape[0], self.num_candidates
        pool = self.randint(1, self.num_items, (b, m), dev)
        s = row_score(q, self.vectors[pool], self.score_metric).double()
        log_norm = torch.logsumexp(s, 1, keepdim=True) - math.log(m) + math.log(self.num_items - 1)
        cdf = torch.cumsum(torch.softmax(s, 1), 1)
        u = self.rand((b, k * per_row), dev) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(max=m - 1)
        neg = pool.gather(1, pick)
        log_neg = s.gather(1, pick) - log_norm
        pos = pos_items.reshape(b, -1).to(dev)
        log_pos = row_score(q, self.vectors[pos], self.score_metric).double() - log_norm
        return self.finish(query, pos_items, neg, log_pos, log_neg, k)


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


class RetrieverSampler(Sampler):
    """A trained item-tower model as the proposal (``retriever``): for a positive p, with probability
    ``1 - uniform_mix`` one of the ``top_n`` items nearest to p in the retriever's ANN index
    (uniformly), else a uniform item of the catalogue. Exact ``log q`` (module docstring).

    Args:
        num_items: catalogue size including padding 0 (must equal the retriever's: same dataset).
        checkpoint: the retriever: a checkpoint / run directory (``recstudio.load``) or a model.
        top_n: neighbours per item taken from the index.
        uniform_mix: λ in (0, 1], the share of uniform draws (keeps every item in the support).
        index: ANN index name of ``recstudio.ann`` (``flat``: faiss brute force, exact fallback).
        generator, seed: see :class:`Sampler`.
    """

    def __init__(self, num_items: int, checkpoint: Union[str, "torch.nn.Module", None] = None, top_n: int = 100,
                 uniform_mix: float = 0.5, index: str = "flat", generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        super().__init__(num_items, generator, seed)
        if checkpoint is None:
            raise ConfigError("the retriever sampler needs a trained model: set sampler_checkpoint to a checkpoint "
                              "or run directory of an item-tower model (e.g. a BPR) trained on the same dataset.")
        if not 0.0 < float(uniform_mix) <= 1.0:
            raise ConfigError(f"RetrieverSampler: uniform_mix must be in (0, 1] (it keeps every item in the support), "
                              f"got {uniform_mix}.")
        if int(top_n) < 1:
            raise ConfigError(f"RetrieverSampler: top_n must be >= 1, got {top_n}.")
        self.uniform_mix, self.top_n, self.index_name = float(uniform_mix), int(top_n), index
        self.source = checkpoint if isinstance(checkpoint, str) else type(checkpoint).__name__
        self.register_buffer("table", self._neighbours(checkpoint), persistent=False)  # [N, n] sorted, pad num_items
        self.register_buffer("table_size", (self.table < num_items).sum(1), persistent=False)

    def _neighbours(self, checkpoint) -> Tensor:
        model = checkpoint
        if isinstance(checkpoint, str):
            import recstudio
            model = recstudio.load(checkpoint)
        if not hasattr(model, "item_vectors") or not hasattr(model, "score_func"):
            raise ConfigError(f"the retriever ({type(model).__name__}) must be an item-tower model with item vectors.")
        if model.meta.num_items != self.num_items:
            raise DataError(f"the retriever was trained with {model.meta.num_items} item ids, this model has "
                            f"{self.num_items}: train the retriever on the same dataset.")
        from recstudio.ann import build_index
        from recstudio.model.scorer import require_decomposable
        require_decomposable(model.score_func, "the retriever sampler")
        with torch.no_grad():
            raw = model.item_vectors().detach().cpu().float()
            v = model.score_func.item_vector(raw)[1:]
            q = model.score_func.query_vector(raw)[1:] if model.score_func.metric != "ip" else v
        ids = torch.arange(1, self.num_items)
        n = min(self.top_n, self.num_items - 2)
        index = build_index(self.index_name, v, metric=model.score_func.metric, ids=ids)
        _, found = index.search(q, n + 1)
        found = found.masked_fill(found == ids[:, None], -1)  # never the item itself
        found = found.sort(1, descending=True).values[:, :n]  # keep n, drop the self / pads
        table = torch.cat([torch.full((1, n), -1, dtype=torch.long), found])
        return table.masked_fill(table <= 0, self.num_items).sort(1).values  # pad = num_items, at the end

    def _log_q(self, items: Tensor, pos: Tensor) -> Tensor:
        """``log q(items[b, m] | pos[b])`` for items [B, M], positives [B]."""
        rows = self.table[pos]
        at = torch.searchsorted(rows, items.contiguous()).clamp(max=rows.shape[1] - 1)
        member = (rows.gather(1, at) == items).double()
        size = self.table_size[pos].double().unsqueeze(1)
        lam = torch.where(size > 0, torch.full_like(size, self.uniform_mix), torch.ones_like(size))
        p = lam / (self.num_items - 1) + (1 - lam) * member / size.clamp(min=1)
        lp = torch.log(p)
        ok = (items >= 1) & (items < self.num_items)
        return torch.where(ok, lp, torch.full_like(lp, float("-inf")))

    def forward(self, query, num_neg, pos_items, user_hist=None) -> Tuple[Tensor, Tensor, Tensor]:
        k = self.check(num_neg, pos_items, user_hist)
        check_ids(pos_items, self.num_items, "pos_items")
        dev = self.table.device
        pos = pos_items.reshape(-1).long().to(dev)
        p = pos.shape[0]
        size = self.table_size[pos]
        unif = self.randint(1, self.num_items, (p, k), dev)
        r = torch.minimum((self.rand((p, k), dev) * size.unsqueeze(1)).long(), (size - 1).clamp(min=0).unsqueeze(1))
        near = self.table[pos].gather(1, r)
        use_near = (self.rand((p, k), dev) >= self.uniform_mix) & (size > 0).unsqueeze(1)
        neg = torch.where(use_near, near, unif)
        log_neg = self._log_q(neg, pos)
        log_pos = self._log_q(pos.unsqueeze(1), pos).squeeze(1)
        dtype, out = self.prob_dtype(query), pos_items.device
        shape = (*pos_items.shape, k)
        return (log_pos.reshape(pos_items.shape).to(out, dtype), neg.reshape(shape).to(out),
                log_neg.reshape(shape).to(out, dtype))

    def log_prob(self, items, pos_items=None, user_hist=None) -> Tensor:
        if pos_items is None:
            raise ConfigError("RetrieverSampler.log_prob needs pos_items (the proposal depends on the positive).")
        flat = items.reshape(items.shape[0], -1).long().to(self.table.device)
        return self._log_q(flat, pos_items.reshape(-1).long().to(self.table.device)).reshape(items.shape)

    def extra_repr(self) -> str:
        return (f"num_items={self.num_items}, source={self.source!r}, top_n={self.top_n}, "
                f"uniform_mix={self.uniform_mix}")


__all__ = ["ModelBasedSampler", "QuantizedSampler", "ClusterUniformSampler", "ClusterPopularitySampler",
           "MIDXUniformSampler", "MIDXPopularitySampler", "SIRSampler", "DNSSampler", "RetrieverSampler",
           "pairwise_score"]
