"""Negative samplers sharing one contract (see ``base.py`` and ``docs/losses_samplers.md``).

Every sampler is registered in ``SAMPLERS`` and can be built by name::

    >>> import torch
    >>> from recstudio.model.sampler import build_sampler
    >>> s = build_sampler("uniform", context={"num_items": 11}, seed=0)
    >>> log_pos_prob, neg_ids, log_neg_prob = s(None, 4, torch.tensor([1, 2]))
    >>> neg_ids.shape
    torch.Size([2, 4])
"""
from typing import Any, Dict, Optional, Union

from torch import nn

from recstudio.model.sampler.base import Sampler, accidental_hits, is_shared
from recstudio.model.sampler.inbatch import InBatchSampler
from recstudio.model.sampler.model_based import (ClusterPopularitySampler, ClusterUniformSampler, DNSSampler,
                                                 MIDXPopularitySampler, MIDXUniformSampler, ModelBasedSampler,
                                                 RetrieverSampler, SIRSampler)
from recstudio.model.sampler.mixed import MixedSampler
from recstudio.model.sampler.popularity import PopularitySampler
from recstudio.model.sampler.shared import SharedUniformSampler
from recstudio.model.sampler.uniform import MaskedUniformSampler, UniformSampler
from recstudio.utils.registry import Registry

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("uniform", summary="uniform over 1..num_items-1",
                  log_prob="-log(num_items - 1)")(UniformSampler)
SAMPLERS.register("masked_uniform", summary="uniform over items outside the user's history and positive",
                  log_prob="-log(num_items - 1 - |hist_u ∪ pos_u|)")(MaskedUniformSampler)
SAMPLERS.register("popularity", summary="p(i) ∝ count_i^alpha",
                  log_prob="alpha log count_i - log Σ_j count_j^alpha")(PopularitySampler)
SAMPLERS.register("shared_uniform", summary="num_neg uniform items shared by every row of the batch (one matmul)",
                  log_prob="-log(num_items - 1)")(SharedUniformSampler)
SAMPLERS.register("inbatch", summary="the other rows' positives",
                  log_prob="log(batch frequency) or log(count_i / Σ count)")(InBatchSampler)
# model-based (recstudio/model/sampler/model_based.py and the modules it gathers): refreshed from the model's item vectors
SAMPLERS.register("cluster_uni", summary="PRIS: k-means cluster ∝ exp(score to centroid)·size, uniform inside",
                  log_prob="exact", paper="Lian et al., WWW 2020")(ClusterUniformSampler)
SAMPLERS.register("cluster_pop", summary="PRIS: cluster ∝ exp(score)·popularity mass, popularity inside",
                  log_prob="exact", paper="Lian et al., WWW 2020")(ClusterPopularitySampler)
SAMPLERS.register("midx_uni", summary="MIDX: two-half k-means cells ∝ exp(q1·c1 + q2·c2)·size, uniform inside",
                  log_prob="exact", paper="Chen et al., WWW 2022")(MIDXUniformSampler)
SAMPLERS.register("midx_pop", summary="MIDX: cells ∝ exp(q1·c1 + q2·c2)·popularity mass, popularity inside",
                  log_prob="exact", paper="Chen et al., WWW 2022")(MIDXPopularitySampler)
SAMPLERS.register("sir", summary="sampling-importance-resampling ∝ exp(score) of a random block of ~M items",
                  log_prob="exact (softmax within the block / number of blocks)")(SIRSampler)
SAMPLERS.register("dns", summary="dynamic negative sampling: best-scoring of M uniform candidates",
                  log_prob="exact (order statistic of M uniform draws)", paper="Zhang et al., SIGIR 2013")(DNSSampler)
SAMPLERS.register("retriever", summary="a trained model's ANN top-n neighbours of the positive, mixed with uniform",
                  log_prob="exact")(RetrieverSampler)
SAMPLERS.register("mixed", summary="the other rows' positives plus num_neg uniform items (Yang et al., WWW 2020)",
                  log_prob="log((B q_batch(i) + K / (num_items - 1)) / (B + K))")(MixedSampler)


def build_sampler(spec: Union[str, type, nn.Module], context: Optional[Dict[str, Any]] = None,
                  **kwargs) -> Sampler:
    """A sampler from a registered name (any case), a class or an instance.

    Args:
        spec: e.g. ``"popularity"``, ``UniformSampler`` or ``UniformSampler(100, seed=0)``.
        context: values offered to the constructor if it takes them (``{"num_items": n}``).
        **kwargs: constructor options (``alpha``, ``seed``, ...); an unknown one raises ``ConfigError``.
    """
    return SAMPLERS.build(spec, Sampler, context, **kwargs)


__all__ = ["SAMPLERS", "Sampler", "build_sampler", "accidental_hits", "UniformSampler", "MaskedUniformSampler",
           "PopularitySampler", "InBatchSampler", "MixedSampler",
           "SharedUniformSampler", "is_shared", "ModelBasedSampler", "ClusterUniformSampler",
           "ClusterPopularitySampler", "MIDXUniformSampler", "MIDXPopularitySampler", "SIRSampler", "DNSSampler",
           "RetrieverSampler"]
