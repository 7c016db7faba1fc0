"""SparseEASE: EASE's ridge regression per item, restricted to each item's top-k co-occurring items."""
import numpy as np
import scipy.sparse as sp

from recstudio.model.family.neighbourhood import KNN_HELP, ItemItemRecommender, parse_positive_int, topk_per_column
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def sparse_ease_weights(X: sp.spmatrix, reg_weight: float, k: int, block_entries: int = 1 << 24) -> sp.csr_matrix:
    """``B`` ``[n, n]`` with column ``j`` supported on ``N(j)``, the (up to) ``k`` items co-occurring most with
    ``j`` (``g_ij > 0``, ``i != j``): ``B[N(j), j] = (G_NN + lambda I)^-1 G_Nj`` with ``G = X^T X`` (sparse).

    When every ``N(j)`` holds all other items this is exactly EASE (EASE's column ``j`` is the ridge
    regression of item ``j`` on all the others, which is what the constraint ``diag(B) = 0`` gives).

    Example:
        >>> X = sp.csr_matrix(np.array([[1., 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]]))
        >>> from recstudio.model.zoo.general.ease import ease_weights
        >>> bool(np.allclose(sparse_ease_weights(X, 1.0, 2).toarray(), ease_weights(X, 1.0)))
        True
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    n = X.shape[1]
    G = sp.csr_matrix(X.T @ X)
    off = G - sp.diags(G.diagonal())
    off.eliminate_zeros()
    support = topk_per_column(off, k, block_entries).tocsc()
    support.sort_indices()
    diag = G.diagonal()
    dense = G.toarray() if n * n <= block_entries else None  # small catalogues: gather blocks from a dense G
    Xc = None if dense is not None else sp.csc_matrix(X)
    rows, cols, vals = [], [], []
    for j in range(n):
        nb = support.indices[support.indptr[j]:support.indptr[j + 1]]
        if len(nb) == 0:
            continue
        if dense is not None:
            A, rhs = dense[np.ix_(nb, nb)], dense[nb, j]
        else:  # the block from the neighbours' columns of X only: O(their nonzeros), never all of G's rows
            Xn = Xc[:, nb]
            A, rhs = (Xn.T @ Xn).toarray(), G[nb, j].toarray().ravel()
        A[np.diag_indices_from(A)] = diag[nb] + reg_weight
        b = np.linalg.solve(A, rhs)
        rows.append(nb), cols.append(np.full(len(nb), j)), vals.append(b)
    if not vals:
        return sp.csr_matrix((n, n))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


@register_model("SparseEASE", category="general", aliases=("EASE-kNN",),
                paper="H. Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019 (sparse support as "
                      "in H. Steck, Markov Random Fields for Collaborative Filtering, NeurIPS 2019).")
class SparseEASE(ItemItemRecommender):
    """EASE with a sparse item-item matrix, so it scales past a dense ``n x n`` inverse.

    EASE's column ``j`` is the ridge regression of item ``j`` on all other items,
    ``B[-j, j] = (G_{-j,-j} + lambda I)^-1 G_{-j,j}`` (``G = X^T X``, binary train matrix). SparseEASE solves
    the same regression restricted to ``N(j)``, the ``k`` items co-occurring most with ``j``:

        ``B[N(j), j] = (G_{N(j),N(j)} + lambda I)^-1 G_{N(j),j}``,  ``B[i, j] = 0`` otherwise

    (one ``k x k`` solve per item, float64). ``G`` is a sparse product (held dense only when ``num_items^2 <=
    block_entries``; otherwise each block is ``X_N^T X_N`` from the neighbours' columns), the support is chosen
    ``block_entries // num_items`` columns at a time, and ``B`` has at most ``num_items x k`` nonzeros: time
    ``O(n k^3 + nnz(G))``, memory ``O(nnz(G) + n k)``, no dense ``n x n`` matrix. With ``k >= num_items - 1``
    and dense co-occurrence it is exactly EASE (tested). ``score(u, .) = x_u B``.

    Departures from EASE: the support restriction (an approximation chosen from co-occurrence counts, as in
    Steck's sparse MRF approximation, not SANSA's sparse approximate inverse). RecBole has no such model.

    Args (config keys):
        reg_weight: ``lambda`` added to the diagonal of each ``k x k`` Gram block (EASE's default 250).
        k: support size per item.
        block_entries: memory bound of one dense block while choosing the support.

    Example:
        >>> model, metrics = recstudio.run(model="SparseEASE", dataset="ml-100k", k=200)     # doctest: +SKIP
    """

    option_help = {"reg_weight": "L2 regularisation lambda added to the diagonal of each neighbourhood Gram block",
                   "k": "support size: each item is regressed on its k most co-occurring items",
                   "block_entries": KNN_HELP["block_entries"]}

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        reg = float(self.cfg("reg_weight"))
        if reg <= 0:
            raise ConfigError(f"SparseEASE needs reg_weight > 0, got {reg}.")
        return sparse_ease_weights(X, reg, parse_positive_int(self.cfg("k"), "k", "SparseEASE"),
                                   int(self.cfg("block_entries")))
