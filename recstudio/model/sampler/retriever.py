"""A trained item-tower model's ANN neighbours of the positive as the proposal (``retriever``); formula in
:mod:`recstudio.model.sampler.model_based`."""
from typing import Optional, Tuple, Union

import torch

from recstudio.model.sampler.base import Sampler, check_ids
from recstudio.utils.errors import ConfigError, DataError

Tensor = torch.Tensor


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


__all__ = ["RetrieverSampler"]
