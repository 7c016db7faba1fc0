"""Blocks of the neighbourhood and linear item-item models (ItemKNN, UserKNN, RP3beta, SLIM, ...).

- :func:`binary_matrix`: the binary train matrix of a split (repeated pairs count once);
- :func:`knn_similarity`: top-k cosine / asymmetric cosine / jaccard similarities with shrinkage, computed
  block by block over the columns, so no dense ``n x n`` matrix is ever formed (at most ``n x block``);
- :func:`topk_per_column`: keep the ``k`` largest entries of each column of a sparse matrix;
- :class:`SparseMatrix`: a sparse matrix held as persistent buffers (saved in checkpoints, any nnz on load)
  that right-multiplies dense batches (``x @ M``) and hands out dense rows;
- :class:`ItemItemRecommender`: the base of closed-form models scoring ``x_u @ W`` for a sparse item-item
  ``W`` and the user's multi-hot history ``x_u``.

Example:
    >>> X = sp.csr_matrix(np.array([[1., 1., 0.], [0., 1., 1.], [1., 1., 1.]]))
    >>> W = knn_similarity(X, k=1, similarity="jaccard")
    >>> W.toarray().astype(float).round(3).tolist()     # column j: the nearest neighbour of item j
    [[0.0, 0.667, 0.0], [0.667, 0.0, 0.667], [0.0, 0.0, 0.0]]
"""
import warnings
from typing import Any, Dict

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recstudio.data.types.base import csr_gather, csr_to_dense
from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.utils.errors import ConfigError

#: the similarities of :func:`knn_similarity`
SIMILARITIES = ("cosine", "asymmetric_cosine", "jaccard")
#: a held matrix with at least this share of nonzeros and at most DENSE_ENTRIES entries multiplies densely
DENSE_FRACTION = 0.2
DENSE_ENTRIES = 1 << 26
#: help text of the keys shared by the KNN models
KNN_HELP = {
    "k": "neighbours kept per item (per user for UserKNN): the k largest similarities",
    "shrink": "shrinkage term added to the similarity's denominator (0: none)",
    "similarity": "cosine | asymmetric_cosine | jaccard",
    "asymmetric_alpha": "exponent alpha of asymmetric cosine: |U_i & U_j| / (|U_i|^alpha |U_j|^(1-alpha)); "
                        "0.5 is the cosine",
    "block_entries": "most entries of one dense block (rows x block columns) formed while computing "
                     "similarities; bounds the memory, the full n x n matrix is never dense",
}


def binary_matrix(X: sp.spmatrix, dtype=np.float32) -> sp.csr_matrix:
    """``X`` as a binary CSR (every stored nonzero becomes 1, repeated pairs count once)."""
    X = sp.csr_matrix(X, dtype=dtype, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()
    X.data[:] = 1.0
    return X


def block_width(rows: int, block_entries: int) -> int:
    """Columns per block so that a dense ``rows x width`` block has at most ``block_entries`` entries."""
    if block_entries < 1:
        raise ConfigError(f"block_entries must be >= 1, got {block_entries}.")
    return max(1, int(block_entries) // max(1, rows))


def topk_dense_columns(S: np.ndarray, k: int, offset: int):
    """``(rows, cols, values)`` of the ``k`` largest entries of each column of the dense block ``S``
    (columns ``offset..offset+S.shape[1]-1`` of the full matrix), zeros dropped."""
    n, b = S.shape
    k = min(k, n)
    if k < n:
        idx = np.argpartition(-S, k - 1, axis=0)[:k]
    else:
        idx = np.broadcast_to(np.arange(n)[:, None], (n, b))
    vals = np.take_along_axis(S, idx, axis=0)
    cols = np.broadcast_to(np.arange(offset, offset + b)[None, :], idx.shape)
    keep = vals != 0
    return idx[keep], cols[keep], vals[keep]


def topk_per_column(M: sp.spmatrix, k: int, block_entries: int = 1 << 24) -> sp.csc_matrix:
    """``M`` with only the ``k`` largest entries of each column kept (ties broken by position)."""
    M = sp.csc_matrix(M)
    n, m = M.shape
    rows, cols, vals = [], [], []
    width = block_width(n, block_entries)
    for lo in range(0, m, width):
        hi = min(lo + width, m)
        r, c, v = topk_dense_columns(M[:, lo:hi].toarray(), k, lo)
        rows.append(r), cols.append(c), vals.append(v)
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=M.shape)


def knn_similarity(X: sp.spmatrix, k: int, shrink: float = 0.0, similarity: str = "cosine",
                   asymmetric_alpha: float = 0.5, block_entries: int = 1 << 24) -> sp.csc_matrix:
    """Column-wise top-``k`` similarities between the columns of ``X`` (``m x n``): ``W`` ``[n, n]`` CSC whose
    column ``j`` holds the ``k`` most similar columns ``i != j`` (zeros dropped).

    With ``c_i = |X_i|^2`` (the column's count for binary ``X``) and ``g_ij = X_i . X_j``:

    - cosine: ``g_ij / (sqrt(c_i c_j) + shrink + 1e-6)`` (RecBole's form);
    - asymmetric cosine (Aiolli, RecSys 2013): ``g_ij / (c_i^alpha c_j^(1-alpha) + shrink + 1e-6)``;
    - jaccard: ``g_ij / (c_i + c_j - g_ij + shrink + 1e-6)``.

    Computed for ``width`` columns at a time (``X^T X[:, block]``, sparse product, then dense
    ``n x width``), ``width = block_entries // n``: memory is ``O(block_entries + n k)``.
    """
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
    if k < 1:
        raise ConfigError(f"k (neighbours) must be >= 1, got {k}.")
    if shrink < 0:
        raise ConfigError(f"shrink must be >= 0, got {shrink}.")
    if not 0.0 <= asymmetric_alpha <= 1.0:
        raise ConfigError(f"asymmetric_alpha must be in [0, 1], got {asymmetric_alpha}.")
    X = sp.csc_matrix(X, dtype=np.float32)
    Xt = X.T.tocsr()
    n = X.shape[1]
    sq = np.asarray(X.multiply(X).sum(axis=0)).ravel().astype(np.float64)
    rows, cols, vals = [], [], []
    width = block_width(n, block_entries)
    for lo in range(0, n, width):
        hi = min(lo + width, n)
        G = (Xt @ X[:, lo:hi]).toarray().astype(np.float64)  # [n, b]: g_ij, i all, j in block
        G[np.arange(lo, hi), np.arange(hi - lo)] = 0.0
        ci, cj = sq[:, None], sq[None, lo:hi]
        if similarity == "cosine":
            denom = np.sqrt(ci) * np.sqrt(cj)
        elif similarity == "asymmetric_cosine":
            denom = np.power(ci, asymmetric_alpha) * np.power(cj, 1.0 - asymmetric_alpha)
        else:
            denom = ci + cj - G
        S = G / (denom + shrink + 1e-6)
        r, c, v = topk_dense_columns(S.astype(np.float32), k, lo)
        rows.append(r), cols.append(c), vals.append(v)
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n),
                         dtype=np.float32)


def drop_padding(M: sp.spmatrix) -> sp.csr_matrix:
    """``M`` with its row and column 0 (the padding id) set to 0."""
    keep = sp.diags((np.arange(M.shape[0]) > 0).astype(np.float32))
    keep_c = sp.diags((np.arange(M.shape[1]) > 0).astype(np.float32))
    return sp.csr_matrix(keep @ M @ keep_c)


def _torch_csr(indptr, indices, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(indptr, indices, values, shape, check_invariants=False)


class SparseMatrix(nn.Module):
    """A sparse float32 matrix ``M`` ``[rows, cols]`` kept in persistent buffers (so it is in the state dict
    and checkpoints; loading resizes the buffers to the saved nnz).

    ``right_multiply(x)`` is ``x @ M`` for a dense ``x`` ``[B, rows]`` (``M^T`` is held in CSR, so this is one
    sparse-CSR x dense product); ``dense_rows(ids)`` gives rows of ``M`` as a dense ``[B, cols]`` tensor.
    """

    _names = ("t_indptr", "t_indices", "t_values", "r_indptr", "r_indices", "r_values", "shape_")

    def __init__(self, rows: int, cols: int, keep_rows: bool = False):
        super().__init__()
        self.keep_rows = keep_rows
        self.register_buffer("shape_", torch.tensor([rows, cols], dtype=torch.long))
        self.register_buffer("t_indptr", torch.zeros(cols + 1, dtype=torch.long))
        self.register_buffer("t_indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("t_values", torch.zeros(0))
        if keep_rows:
            self.register_buffer("r_indptr", torch.zeros(rows + 1, dtype=torch.long))
            self.register_buffer("r_indices", torch.zeros(0, dtype=torch.long))
            self.register_buffer("r_values", torch.zeros(0))
        self._cache = None
        self._dense = None

    @property
    def nnz(self) -> int:
        return int(self.t_values.numel())

    def set(self, M: sp.spmatrix) -> None:
        """Hold ``M`` (a scipy matrix of this shape; explicit zeros are dropped)."""
        rows, cols = (int(v) for v in self.shape_)
        if M.shape != (rows, cols):
            raise ValueError(f"matrix of shape {M.shape}, expected {(rows, cols)}")
        M = sp.csr_matrix(M, dtype=np.float32)
        M.sum_duplicates()
        M.eliminate_zeros()
        device = self.t_values.device
        parts = [("t", M.T.tocsr())] + ([("r", M)] if self.keep_rows else [])
        for prefix, m in parts:
            m.sort_indices()
            setattr(self, f"{prefix}_indptr", torch.as_tensor(m.indptr.astype(np.int64), device=device))
            setattr(self, f"{prefix}_indices", torch.as_tensor(m.indices.astype(np.int64), device=device))
            setattr(self, f"{prefix}_values", torch.as_tensor(m.data.astype(np.float32), device=device))
        self._cache = None
        self._dense = None

    def to_scipy(self) -> sp.csr_matrix:
        rows, cols = (int(v) for v in self.shape_)
        mt = sp.csr_matrix((self.t_values.cpu().numpy(), self.t_indices.cpu().numpy(), self.t_indptr.cpu().numpy()),
                           shape=(cols, rows))
        return mt.T.tocsr()

    def _transposed(self) -> torch.Tensor:
        key = (self.t_values.data_ptr(), self.t_values.device, self.nnz)
        if self._cache is None or self._cache[0] != key:
            rows, cols = (int(v) for v in self.shape_)
            self._cache = (key, _torch_csr(self.t_indptr, self.t_indices, self.t_values, (cols, rows)))
        return self._cache[1]

    def right_multiply(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ M`` ``[B, cols]`` for a dense ``x`` ``[B, rows]``. A matrix denser than ``DENSE_FRACTION``
        with at most ``DENSE_ENTRIES`` entries is multiplied as a dense copy (made once, not saved): a dense
        product is many times faster than a sparse one at that density."""
        rows, cols = (int(v) for v in self.shape_)
        if rows * cols <= DENSE_ENTRIES and self.nnz >= DENSE_FRACTION * rows * cols:
            dense = self._transposed()
            key = ("dense", self._cache[0])
            if getattr(self, "_dense", None) is None or self._dense[0] != key:
                self._dense = (key, dense.to_dense().T.contiguous())
            return x.float() @ self._dense[1]
        return torch.sparse.mm(self._transposed(), x.float().T).T

    def dense_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of ``M`` as a dense ``[len(ids), cols]`` tensor (needs ``keep_rows=True``)."""
        ptr, idx, val = csr_gather(self.r_indptr, self.r_indices, ids.long(), self.r_values)
        return csr_to_dense(ptr, idx, int(self.shape_[1]), val)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._names:  # the saved matrix has its own nnz: take its sizes
            key = prefix + name
            if key in state_dict and name in self._buffers:
                self._buffers[name] = torch.empty_like(state_dict[key], device=self._buffers[name].device)
        self._cache = None
        self._dense = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def history_multi_hot(batch: Dict[str, torch.Tensor], num_items: int) -> torch.Tensor:
    """The batch users' history as a binary ``[B, num_items]`` float tensor (column 0, padding, is 0)."""
    if "history" in batch:
        x = (batch["history"] > 0).float()
    else:
        x = (csr_to_dense(batch["history_indptr"], batch["history_indices"], num_items) > 0).float()
    x[:, 0] = 0.0
    return x


class ItemItemRecommender(TowerFreeRecommender):
    """Base of closed-form models scoring ``score(u, .) = x_u W`` with a sparse item-item ``W``
    ``[num_items, num_items]`` (row / column 0, padding, empty) and ``x_u`` the user's binary known history
    (train for validation, train + valid for test, everything for ``recommend``).

    Subclasses implement :meth:`item_weights` (the scipy ``W`` from the binary train matrix); ``W`` is held
    in a :class:`SparseMatrix` (saved in checkpoints). Scoring a batch is one sparse x dense product;
    pair scores are gathered from it.
    """

    dataset_type = "user"
    fit_mode = "closed_form"

    def build_blocks(self) -> None:
        n = self.meta.num_items
        self.weights = SparseMatrix(n, n)

    def train_matrix(self, split) -> sp.csr_matrix:
        """The binary train matrix ``[num_users, num_items]`` (padding row / column 0 empty)."""
        return binary_matrix(split.matrix("train"))

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        raise ConfigError(f"{type(self).__name__} must define item_weights(X).")

    def fit_closed_form(self, split) -> None:
        X = self.train_matrix(split)
        W = sp.csr_matrix(self.item_weights(X))
        self.weights.set(drop_padding(W))

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        return self.weights.right_multiply(history_multi_hot(batch, self.meta.num_items))

    def score_all_candidates(self, batch, state: Any) -> torch.Tensor:
        return state.clone()

    def score_candidates(self, batch, state: Any, items: torch.Tensor) -> torch.Tensor:
        return state.gather(1, items.long()) if items.dim() == 2 else state.gather(1, items.long()[:, None])[:, 0]

    def score(self, batch, items: torch.Tensor) -> torch.Tensor:
        return self.score_candidates(batch, self.prepare_scoring(batch), items)


def parse_positive_int(value, name: str, model: str) -> int:
    """``value`` as an int >= 1, else a ConfigError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{model} needs {name} to be an integer >= 1, got {value!r}.")
    return int(value)



def row_normalize(M: sp.spmatrix) -> sp.csr_matrix:
    """Rows of ``M`` divided by their sums (empty rows stay 0): transition probabilities."""
    M = sp.csr_matrix(M, dtype=np.float64)
    sums = np.asarray(M.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ M)


def random_walk_weights(X: sp.spmatrix, k: int, alpha: float = 1.0, beta: float = 0.0, normalize: bool = False,
                        block_entries: int = 1 << 24) -> sp.csr_matrix:
    """The P3alpha / RP3beta item-item matrix ``W`` ``[n, n]`` of a binary ``X`` (``m x n``).

    ``P_ui = x_ui / |I_u|``, ``P_iu = x_ui / |U_i|`` (one step of the user-item random walk each way), each
    raised elementwise to ``alpha``; ``W_ij = (P_iu^alpha P_ui^alpha)_ij / pop_j^beta`` (``pop_j = |U_j|``, 0 for
    items without train interactions), ``W_ii = 0``; each row keeps its ``k`` largest entries, then with
    ``normalize`` is divided by its sum. Computed ``block_entries // n`` rows at a time.
    """
    if k < 1:
        raise ConfigError(f"k (neighbours) must be >= 1, got {k}.")
    if alpha <= 0:
        raise ConfigError(f"alpha must be > 0 (the exponent of the transition probabilities), got {alpha}.")
    if beta < 0:
        raise ConfigError(f"beta must be >= 0 (the popularity penalty), got {beta}.")
    X = binary_matrix(X, np.float64)
    n = X.shape[1]
    p_ui = row_normalize(X)
    p_iu = row_normalize(X.T)
    if alpha != 1.0:
        p_ui.data = np.power(p_ui.data, alpha)
        p_iu.data = np.power(p_iu.data, alpha)
    pop = np.asarray(X.sum(axis=0)).ravel()
    scale = np.divide(1.0, np.power(pop, beta), out=np.zeros_like(pop), where=pop > 0)
    rows, cols, vals = [], [], []
    width = block_width(n, block_entries)
    for lo in range(0, n, width):
        hi = min(lo + width, n)
        S = (p_iu[lo:hi] @ p_ui).toarray() * scale[None, :]  # [b, n]
        S[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        r, c, v = topk_dense_columns(np.ascontiguousarray(S.T), k, lo)  # top-k of each row i
        rows.append(c), cols.append(r), vals.append(v)
    W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return row_normalize(W) if normalize else W


RANDOM_WALK_HELP = {
    "k": "neighbours kept per item: the k largest entries of each row of W",
    "alpha": "exponent of the transition probabilities P_ui, P_iu (elementwise)",
    "normalize": "divide each row of W by its sum after the top-k selection",
    "block_entries": KNN_HELP["block_entries"],
}
