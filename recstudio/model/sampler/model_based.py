"""Model-based negative samplers: proposals that follow the model's own scores.

This module gathers them (``snapshot.py``: the base; ``quantized.py``: cluster / MIDX; ``pool.py``: SIR / DNS;
``retriever.py``), so ``recstudio.model.sampler.model_based.<Name>`` keeps working.

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
* ``sir`` (sampling-importance-resampling over a random partition): every call shuffles the items into
  ``G = max(1, Y // M)`` blocks of about M (``Y = num_items - 1``); a row picks a block uniformly and
  resamples from it ∝ ``exp(s(q, v))``. Exact ``log q(i) = s_i - log Σ_{j ∈ block(i)} exp(s_j) - log G``
  (textbook SIR, with i.i.d. uniform candidates, has no closed-form marginal: see ``SIRSampler``).
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
from recstudio.model.sampler.pool import DNSSampler, SIRSampler
from recstudio.model.sampler.quantized import (ClusterPopularitySampler, ClusterUniformSampler, MIDXPopularitySampler,
                                               MIDXUniformSampler, QuantizedSampler)
from recstudio.model.sampler.retriever import RetrieverSampler
from recstudio.model.sampler.snapshot import METRICS, ModelBasedSampler, pairwise_score, row_score

__all__ = ["ModelBasedSampler", "QuantizedSampler", "ClusterUniformSampler", "ClusterPopularitySampler",
           "MIDXUniformSampler", "MIDXPopularitySampler", "SIRSampler", "DNSSampler", "RetrieverSampler",
           "pairwise_score", "row_score", "METRICS"]
