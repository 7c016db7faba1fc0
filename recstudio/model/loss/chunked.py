"""Full softmax in bounded memory: the logits are computed one block of items at a time.

The full softmax over a catalogue of N items needs the ``[P, N]`` logits of P query positions, and its
backward pass another tensor of the same size: at a 1M-item catalogue and 2,048 positions that is 8 GB
each. :class:`ChunkedSoftmaxLoss` gives the same loss and the same gradients (to floating-point
rounding) holding only ``[P, C]`` logits at a time: the forward pass keeps a running log-sum-exp over
item blocks of C columns, the backward pass recomputes each block's logits from the saved query and
item vectors and accumulates the gradients (the recomputation trick of memory-efficient attention,
applied to the output layer; cf. the Cut Cross-Entropy of Wijmans et al., ICLR 2025). C is chosen
from a memory budget (``chunk_mb``) and the number of positions of the batch.

It needs the query and item vectors instead of the scores (``needs_vectors``): models whose score
function is an inner product or a cosine (every item-tower and sequential model with the default
scorers) hand them over; the padding item (row 0) is never a candidate.
"""
import math
from typing import Optional, Tuple

import torch

from recstudio.model.loss.base import Loss
from recstudio.utils.errors import ConfigError

Tensor = torch.Tensor


def decomposed_vectors(score_func, query: Tensor, item_vectors: Tensor) -> Tuple[Tensor, Tensor]:
    """``(q, v)`` with ``q @ v.T == score_func.score_all(query, item_vectors)`` for the decomposable
    inner-product and cosine score functions (the cosine's temperature folded into ``q``).

    Raises:
        ConfigError: for a score function that is not an inner product or a cosine.
    """
    metric = getattr(score_func, "metric", None)
    if metric == "ip":
        return score_func.query_vector(query), score_func.item_vector(item_vectors)
    if metric == "cosine":
        scale = 1.0 / float(getattr(score_func, "temperature", 1.0))
        return score_func.query_vector(query) * scale, score_func.item_vector(item_vectors)
    raise ConfigError(f"loss chunked_softmax needs an inner-product or cosine score function, got "
                      f"{type(score_func).__name__}; use loss softmax (scores every item at once) or "
                      f"score_func inner_product.")


def chunk_columns(rows: int, chunk_mb: float, num_items: int) -> int:
    """Item columns per block so that one ``[rows, C]`` float32 block fits in ``chunk_mb`` MB."""
    return max(1, min(num_items, int(chunk_mb * 2 ** 20 // (4 * max(rows, 1)))))


def _block_logits(query: Tensor, items: Tensor, start: int, stop: int, temperature: float) -> Tensor:
    logits = query @ items[start:stop].t()
    if temperature != 1.0:
        logits.mul_(1.0 / temperature)
    if start == 0:  # the padding item is never a candidate
        logits[:, 0] = float("-inf")
    return logits


def _exp_shifted_(block: Tensor) -> Tuple[Tensor, Tensor]:
    """In place: ``block <- exp(block - rowmax)``; returns ``(rowmax, rowsum)`` of the shifted exponentials
    (so that ``logsumexp = rowmax + log(rowsum)``), without the temporaries of ``torch.logsumexp``."""
    top = block.amax(dim=1)
    top = top.masked_fill(top == float("-inf"), 0.0)  # a block of the padding column only: exp(-inf) = 0
    block.sub_(top.unsqueeze(1)).exp_()
    return top, block.sum(dim=1)


class _OneBlockSoftmax(torch.autograd.Function):
    """The full softmax when the ``[P, N]`` logits fit the budget at once: one logits matmul forward, two
    backward, and one ``[P, N]`` buffer that the forward turns into the softmax in place and the backward
    into the gradient of the logits in place (no recomputation, no second ``[P, N]`` tensor). So its graph
    takes one backward pass: a second one (``retain_graph=True``) raises instead of reading the spent buffer."""

    @staticmethod
    def forward(ctx, query, items, pos_index, temperature):
        block = _block_logits(query, items, 0, items.shape[0], temperature)
        target = block.gather(1, pos_index.unsqueeze(1)).squeeze(1)
        top, total = _exp_shifted_(block)
        ctx.save_for_backward(query, items, pos_index, block, total)
        ctx.temperature, ctx.consumed = temperature, False
        return top + total.log() - target

    @staticmethod
    def backward(ctx, grad):
        if ctx.consumed:  # the buffer became the gradient: a second pass would read garbage
            raise RuntimeError("the full softmax's backward ran twice on the same graph (retain_graph=True); "
                               "recompute the loss for a second backward pass.")
        ctx.consumed = True
        query, items, pos_index, block, total = ctx.saved_tensors
        weight = grad / ctx.temperature
        dlogits = block.mul_((weight / total).unsqueeze(1))  # softmax x upstream grad / τ, in the saved buffer
        dlogits[torch.arange(len(pos_index), device=block.device), pos_index] -= weight
        grad_query = dlogits @ items if ctx.needs_input_grad[0] else None
        grad_items = dlogits.t() @ query if ctx.needs_input_grad[1] else None
        return grad_query, grad_items, None, None


class _ChunkedSoftmax(torch.autograd.Function):
    """Per-row ``logsumexp_j(q·v_j / τ) - q·v_pos / τ`` over item blocks of ``chunk`` columns."""

    @staticmethod
    def forward(ctx, query, items, pos_index, chunk, temperature):
        lse = torch.full((query.shape[0],), float("-inf"), dtype=query.dtype, device=query.device)
        for start in range(0, items.shape[0], chunk):
            top, total = _exp_shifted_(_block_logits(query, items, start, start + chunk, temperature))
            lse = torch.logaddexp(lse, top + total.log())
        target = (query * items[pos_index]).sum(-1) / temperature
        ctx.save_for_backward(query, items, pos_index, lse)
        ctx.chunk, ctx.temperature = chunk, temperature
        return lse - target

    @staticmethod
    def backward(ctx, grad):
        query, items, pos_index, lse = ctx.saved_tensors
        chunk, tau = ctx.chunk, ctx.temperature
        grad_query = torch.zeros_like(query) if ctx.needs_input_grad[0] else None
        grad_items = torch.zeros_like(items) if ctx.needs_input_grad[1] else None
        weight = grad.unsqueeze(1) / tau
        for start in range(0, items.shape[0], chunk):
            block = _block_logits(query, items, start, start + chunk, tau)
            prob = block.sub_(lse.unsqueeze(1)).exp_().mul_(weight)  # softmax x upstream grad / τ
            if grad_query is not None:
                grad_query.addmm_(prob, items[start:start + chunk])
            if grad_items is not None:
                grad_items[start:start + chunk].addmm_(prob.t(), query)
        if grad_query is not None:
            grad_query.sub_(items[pos_index] * weight)
        if grad_items is not None:
            grad_items.index_add_(0, pos_index, -query * weight)
        return grad_query, grad_items, None, None, None


def softmax_from_vectors(query: Tensor, items: Tensor, pos_index: Tensor, temperature: float = 1.0,
                         chunk: Optional[int] = None) -> Tensor:
    """Per-row full-softmax cross-entropy ``logsumexp_{j >= 1}(q·v_j / τ) - q·v_pos / τ`` from the vectors:
    in one block (fastest: no recomputation; ``chunk`` None or >= N) or in blocks of ``chunk`` items.

    Example:
        >>> q, v, pos = torch.randn(4, 8), torch.randn(50, 8), torch.tensor([1, 7, 7, 49])
        >>> ref = torch.log_softmax((q @ v.t())[:, 1:], -1).gather(1, (pos - 1)[:, None]).squeeze(1).neg()
        >>> torch.allclose(softmax_from_vectors(q, v, pos), ref, atol=1e-6)
        True
    """
    if chunk is None or chunk >= items.shape[0]:
        return _OneBlockSoftmax.apply(query, items, pos_index, float(temperature))
    return _ChunkedSoftmax.apply(query, items, pos_index, chunk, float(temperature))


class ChunkedSoftmaxLoss(Loss):
    """Full softmax cross-entropy computed over blocks of items, in bounded memory.

    ``loss = logsumexp_{j >= 1}(q·v_j / τ) - q·v_pos / τ``: exactly :class:`SoftmaxLoss` on the
    scores ``q·v`` (same value, same gradients for ``q`` and every ``v``), but the ``[P, N]``
    logits are never held: peak extra memory is one ``[P, C]`` block, C chosen so that a block
    takes ``chunk_mb`` MB (at least one column). Costs one extra logits matmul in the backward
    pass (the blocks are recomputed).

    Inputs: ``query`` [P, d], ``item_vectors`` [N, d] (row 0 = padding, never a candidate) and
    ``pos_index`` [P] (the positive's row); the framework passes them for models whose score
    function is an inner product or a cosine (see :func:`decomposed_vectors`).

    Args:
        temperature: τ, the scores are divided by it.
        chunk_mb: memory of one block of logits in MB (default 256).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.

    Example:
        >>> q, v = torch.randn(4, 8), torch.randn(100, 8)
        >>> pos = torch.tensor([3, 5, 7, 9])
        >>> full = torch.log_softmax((q @ v.t())[:, 1:], -1).gather(1, (pos - 1)[:, None]).neg().mean()
        >>> torch.allclose(ChunkedSoftmaxLoss(chunk_mb=0.0001)(query=q, item_vectors=v, pos_index=pos), full)
        True
    """

    needs_vectors = True

    def __init__(self, temperature: float = 1.0, chunk_mb: float = 256.0, reduction: str = "mean"):
        super().__init__(reduction)
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ConfigError(f"chunked_softmax: temperature must be a positive number, got {temperature}.")
        if not (chunk_mb > 0 and math.isfinite(chunk_mb)):
            raise ConfigError(f"chunked_softmax: chunk_mb must be a positive number of MB, got {chunk_mb}.")
        self.temperature, self.chunk_mb = float(temperature), float(chunk_mb)

    def forward(self, pos_score=None, neg_score=None, log_pos_prob=None, log_neg_prob=None,
                all_score=None, label=None, pos_index=None, neg_is_pos=None,
                query: Optional[Tensor] = None, item_vectors: Optional[Tensor] = None) -> Tensor:
        hint = "chunked_softmax takes the query and item vectors; the model's training_loss must pass them."
        query = self.require("query", query, hint)
        items = self.require("item_vectors", item_vectors, hint)
        pos = self.require("pos_index", pos_index, hint).long().reshape(-1)
        flat = query.reshape(-1, query.shape[-1])
        if flat.shape[0] != pos.shape[0]:
            raise ConfigError(f"chunked_softmax: {flat.shape[0]} query rows but {pos.shape[0]} positives.")
        chunk = chunk_columns(flat.shape[0], self.chunk_mb, items.shape[0])
        loss = softmax_from_vectors(flat, items, pos, self.temperature, chunk)
        return self.reduce(loss.reshape(query.shape[:-1]))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, chunk_mb={self.chunk_mb}, " + super().extra_repr()
