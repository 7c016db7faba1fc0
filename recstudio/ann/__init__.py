"""Approximate-nearest-neighbour top-k: one ``Index`` API over exact torch and faiss backends.

Example:
    >>> import torch
    >>> from recstudio.ann import build_index
    >>> index = build_index("exact", torch.randn(100, 8), metric="ip")
    >>> scores, ids = index.search(torch.randn(2, 8), k=5)
    >>> ids.shape
    torch.Size([2, 5])
"""
from recstudio.ann.base import INDEXES, METRICS, Index, build_index, check_metric
from recstudio.ann.exact import TorchExactIndex
from recstudio.ann.faiss_index import FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex, faiss_available

__all__ = ["INDEXES", "METRICS", "Index", "build_index", "check_metric", "TorchExactIndex", "FaissFlatIndex",
           "FaissIVFIndex", "FaissHNSWIndex", "faiss_available"]
