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

from recstudio.model.sampler.base import Sampler, accidental_hits
from recstudio.model.sampler.inbatch import InBatchSampler
from recstudio.model.sampler.popularity import PopularitySampler
from recstudio.model.sampler.uniform import MaskedUniformSampler, UniformSampler
from recstudio.utils.registry import Registry

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("uniform", summary="uniform over 1..num_items-1",
                  log_prob="-log(num_items - 1)")(UniformSampler)
SAMPLERS.register("masked_uniform", summary="uniform over items outside the user's history and positive",
                  log_prob="-log(num_items - 1 - |hist_u ∪ pos_u|)")(MaskedUniformSampler)
SAMPLERS.register("popularity", summary="p(i) ∝ count_i^alpha",
                  log_prob="alpha log count_i - log Σ_j count_j^alpha")(PopularitySampler)
SAMPLERS.register("inbatch", summary="the other rows' positives",
                  log_prob="log(batch frequency) or log(count_i / Σ count)")(InBatchSampler)


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
           "PopularitySampler", "InBatchSampler"]
