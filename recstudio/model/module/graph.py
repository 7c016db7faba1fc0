"""Sparse helpers of graph models: the normalised user-item adjacency, sparse products and edge dropout.

Nodes of the bipartite graph are numbered users first, then items: node ``u`` is user id ``u``
(``0..num_users-1``, id 0 = padding) and node ``num_users + i`` is item id ``i``. Padding ids have no
edges, so their rows of the adjacency are empty.

The adjacency is a CSR tensor: on CPU a CSR product is about ten times faster than a COO one, and because
the matrix is symmetric :func:`spmm` back-propagates with the same matrix (no transpose). Edge dropout keeps
the sparsity structure and zeroes values, symmetrically, so the dropped matrix stays symmetric.

Example:
    >>> import scipy.sparse as sp
    >>> R = sp.csr_matrix(np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=np.float32))  # 3 users x 3 items
    >>> adj = normalized_adjacency(R)
    >>> adj.layout, adj.shape, adj._nnz()
    (torch.sparse_csr, torch.Size([6, 6]), 6)
    >>> spmm(adj, torch.ones(6, 2)).shape
    torch.Size([6, 2])
"""
import warnings
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch

from recstudio.utils.errors import DataError


def bipartite_matrix(interactions: sp.spmatrix) -> sp.csr_matrix:
    """The symmetric ``(U + I) x (U + I)`` binary adjacency ``[[0, R], [R^T, 0]]`` of a ``U x I`` matrix ``R``
    (repeated interactions count once)."""
    r = sp.csr_matrix(interactions, dtype=np.float32)
    r.sum_duplicates()
    r.data[:] = 1.0
    return sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)


def normalized_adjacency(interactions: sp.spmatrix, self_loops: bool = False) -> torch.Tensor:
    """``L = D^-1/2 A D^-1/2`` of the bipartite graph of ``interactions`` (a ``U x I`` scipy matrix) as a
    float32 ``torch.sparse_csr`` tensor; ``self_loops`` adds the identity after normalising (``L + I``, as
    NGCF). Isolated nodes (padding ids, items never trained on) get an all-zero row (a 1 on the diagonal
    with ``self_loops``).

    Raises:
        DataError: a matrix with no interaction at all.
    """
    if interactions.nnz == 0:
        raise DataError("the training graph has no interactions; graph models need at least one train edge.")
    a = bipartite_matrix(interactions)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    d = sp.diags(inv_sqrt)
    lap = (d @ a @ d).tocsr()
    if self_loops:
        lap = (lap + sp.eye(a.shape[0], dtype=np.float32, format="csr")).tocsr()
    return to_torch_csr(lap)


def to_torch_csr(m: sp.spmatrix) -> torch.Tensor:
    """A scipy matrix as a float32 ``torch.sparse_csr`` tensor (sorted column indices)."""
    m = sp.csr_matrix(m, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    return _csr_tensor(torch.as_tensor(m.indptr.astype(np.int64)), torch.as_tensor(m.indices.astype(np.int64)),
                       torch.as_tensor(m.data), m.shape, check=True)


def _csr_tensor(crow, col, values, shape, check: bool) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=check)


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse ``adj``: the gradient of ``x`` is ``adj @ grad``."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.adj @ grad


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x`` for a SYMMETRIC sparse ``adj`` ``[N, N]`` (CSR or COO) and dense ``x`` ``[N, d]``,
    differentiable in ``x`` (not in ``adj``)."""
    if x.requires_grad and torch.is_grad_enabled():
        return _SymmetricSpMM.apply(adj, x)
    return adj @ x


def undirected_edge_ids(adj: torch.Tensor) -> torch.Tensor:
    """For each stored entry of a symmetric CSR ``adj``: the id ``0..E-1`` of its undirected edge (an entry and
    its mirror share one), ``-1`` on the diagonal."""
    crow, col = adj.crow_indices(), adj.col_indices()
    n = adj.shape[0]
    row = torch.repeat_interleave(torch.arange(n), crow[1:] - crow[:-1])
    key = torch.minimum(row, col) * n + torch.maximum(row, col)
    _, ids = torch.unique(key, return_inverse=True)
    diag = row == col
    if diag.any():  # renumber so that off-diagonal edges are 0..E-1
        _, ids = torch.unique(torch.where(diag, torch.full_like(key, -1), key), return_inverse=True)
        ids = ids - 1
    return torch.where(diag, torch.full_like(ids, -1), ids)


def edge_dropout(adj: torch.Tensor, edge_ids: torch.Tensor, p: float,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``adj`` (symmetric CSR) with each undirected edge dropped with probability ``p`` (both directions) and
    the kept ones scaled by ``1 / (1 - p)``; self-loops (``edge_ids == -1``) stay. NGCF's node dropout as its
    code and RecBole implement it (on edges), made symmetric. The structure is kept: a dropped entry
    becomes an explicit zero."""
    if p <= 0:
        return adj
    num_edges = int(edge_ids.max()) + 1 if edge_ids.numel() else 0
    keep = (torch.rand(num_edges, device=adj.device, generator=generator) >= p).to(adj.dtype) / (1.0 - p)
    scale = torch.where(edge_ids >= 0, keep[edge_ids.clamp(min=0)], torch.ones_like(adj.values()))
    return _csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values() * scale, adj.shape, check=False)
