"""Exact top-k in torch: the reference every approximate index is compared against."""
from typing import Optional

import torch
import torch.nn.functional as F

from recstudio.ann.base import INDEXES, Index
from recstudio.utils.errors import ConfigError


def resolve_torch_device(device: Optional[str], default: torch.device) -> torch.device:
    """``None`` -> ``default``; ``'auto'`` -> CUDA when available; ``'cuda'`` without CUDA -> ConfigError."""
    if device is None:
        return default
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"invalid device {device!r} ({e}); use 'auto', 'cpu' or 'cuda[:n]'.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was requested but torch sees no CUDA GPU "
                          "(torch.cuda.is_available() is False); use device='cpu' or 'auto'.")
    return dev


@INDEXES.register("exact", summary="exact top-k by chunked torch matmul (CPU or CUDA); the reference")
class TorchExactIndex(Index):
    """Exact search: scores every item, in item chunks with a running top-k merge.

    Temporary memory is ``O(query_chunk_size * (k + item_chunk_size))``. Excluded labels get score
    ``-inf`` before the top-k (a vectorised scatter of the exclusion's COO entries per chunk).

    Args:
        item_chunk_size: items scored at once.
        device: where the vectors live and the search runs: ``None`` (the vectors' device), ``'auto'``
            (CUDA if available), ``'cpu'``, ``'cuda[:n]'``. Results come back on the queries' device.
        query_chunk_size: queries searched at once.
    """

    name = "exact"

    def __init__(self, item_chunk_size: int = 8192, device: Optional[str] = None, query_chunk_size: int = 4096):
        super().__init__(query_chunk_size=query_chunk_size)
        if int(item_chunk_size) <= 0:
            raise ConfigError(f"item_chunk_size must be positive, got {item_chunk_size}.")
        self.item_chunk_size = int(item_chunk_size)
        self.device_request = device
        self.vectors: Optional[torch.Tensor] = None
        self._sq_norms: Optional[torch.Tensor] = None

    def _build(self, vectors: torch.Tensor, metric: str) -> None:
        dev = resolve_torch_device(self.device_request, vectors.device)
        v = vectors.detach().to(dev)
        if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            v = v.float()
        if metric == "cosine":
            v = F.normalize(v, dim=1)
        self.vectors = v.contiguous()
        self._sq_norms = (v * v).sum(1) if metric == "l2" else None
        if self._labels is not None:
            self._labels = self._labels.to(dev)

    @property
    def device(self) -> torch.device:
        return self.vectors.device

    def _scores(self, q: torch.Tensor, start: int, end: int) -> torch.Tensor:
        x = self.vectors[start:end]
        s = q @ x.T
        if self.metric == "l2":  # -||q - x||^2 = 2 q.x - ||q||^2 - ||x||^2
            s = (2 * s - (q * q).sum(1, keepdim=True) - self._sq_norms[start:end]).clamp_max_(0)
        return s

    @torch.no_grad()
    def _search(self, queries, k, rows, pos):
        q = queries.detach().to(self.device, self.vectors.dtype)
        if self.metric == "cosine":
            q = F.normalize(q, dim=1)
        n, cs = self.ntotal, self.item_chunk_size
        bounds = None
        if rows.numel():  # sort the exclusion by position so each item chunk takes one slice
            rows, pos = rows.to(self.device), pos.to(self.device)
            pos, order = torch.sort(pos)
            rows = rows[order]
            bounds = torch.searchsorted(pos, torch.arange(0, n + cs, cs, device=self.device)).tolist()
        best_s = best_i = None
        for c, start in enumerate(range(0, n, cs)):
            end = min(n, start + cs)
            s = self._scores(q, start, end)
            if bounds is not None and bounds[c + 1] > bounds[c]:
                lo, hi = bounds[c], bounds[c + 1]
                s.index_put_((rows[lo:hi], pos[lo:hi] - start), s.new_full((), float("-inf")))
            top_s, top_i = s.topk(min(k, end - start), dim=1)
            top_i += start
            if best_s is None:
                best_s, best_i = top_s, top_i
            else:
                cat_s, cat_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i], 1)
                best_s, j = cat_s.topk(min(k, cat_s.shape[1]), dim=1)
                best_i = cat_i.gather(1, j)
        best_i = best_i.masked_fill(best_s == float("-inf"), -1)  # excluded items that filled the list
        return best_s, best_i
