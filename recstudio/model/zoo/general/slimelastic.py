"""SLIM with an elastic-net penalty: one non-negative sparse regression per item (scikit-learn)."""
import warnings
from typing import List, Tuple

import numpy as np
import scipy.sparse as sp

from recstudio.model.family.neighbourhood import ItemItemRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def slim_columns(X: sp.csc_matrix, items: np.ndarray, params: dict, seed: int) -> Tuple[List, List, List]:
    """Fit the elastic nets of ``items`` (one target column each) on a private copy of ``X``; returns the
    ``(rows, cols, values)`` of their nonzero coefficients."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet
    X = X.copy()
    model = ElasticNet(fit_intercept=False, copy_X=False, precompute=False, selection="random",
                       random_state=seed, **params)
    rows, cols, vals = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        for j in items:
            lo, hi = X.indptr[j], X.indptr[j + 1]
            if lo == hi:
                continue
            y = np.zeros(X.shape[0])
            y[X.indices[lo:hi]] = X.data[lo:hi]
            saved = X.data[lo:hi].copy()
            X.data[lo:hi] = 0.0  # hide item j from its own regression (w_jj = 0)
            model.fit(X, y)
            X.data[lo:hi] = saved
            coef = model.sparse_coef_.tocsr()
            rows.append(coef.indices), cols.append(np.full(len(coef.indices), j)), vals.append(coef.data)
    return rows, cols, vals


@register_model("SLIMElastic", category="general", aliases=("SLIM", "SLIM-ElasticNet"),
                paper="X. Ning, G. Karypis. SLIM: Sparse Linear Methods for Top-N Recommender Systems. ICDM 2011.")
class SLIMElastic(ItemItemRecommender):
    """SLIM (Ning & Karypis, ICDM 2011): a sparse non-negative item-item matrix ``W`` with ``w_jj = 0``,
    fitted column by column with an elastic net on the binary train matrix ``X``,

        ``min_{w_j >= 0} 1/(2m) ||x_j - X w_j||^2 + alpha l1_ratio |w_j|_1 + alpha (1 - l1_ratio)/2 |w_j|^2``

    (scikit-learn's ``ElasticNet`` parameterisation, ``m`` users; column ``j`` is hidden from its own
    regression), ``score(u, .) = x_u W``. Coordinate descent on the sparse ``X`` (cost per sweep
    ``O(nnz)``), ``max_iter`` sweeps at most, random coordinate order seeded by ``seed``. The regressions
    are independent: ``n_jobs`` threads fit disjoint sets of items, each on its own copy of ``X``
    (scikit-learn's solver releases the GIL). ``W`` is sparse (L1 and positivity zero most weights).

    Departures from RecBole's SLIMElastic (same defaults ``alpha = 0.2``, ``l1_ratio = 0.02``, positive,
    item hidden, ``max_iter = 100``, ``tol = 1e-4``): no precomputed Gram matrix (RecBole passes
    ``precompute=True``; the optimum is the same, the sparse solver is cheaper for many items); the
    random coordinate order is seeded (RecBole's is not, so its runs differ); the input at evaluation is
    the user's known history (RecBole: the train matrix).

    Args (config keys):
        alpha: overall penalty weight.
        l1_ratio: share of the L1 penalty.
        positive_only: constrain ``W >= 0``.
        max_iter, tol: coordinate-descent limits.
        n_jobs: threads fitting items in parallel.

    Example:
        >>> model, metrics = recstudio.run(model="SLIMElastic", dataset="ml-100k", n_jobs=2)   # doctest: +SKIP
    """

    option_help = {"alpha": "elastic-net penalty weight (scikit-learn's alpha: L1 alpha*l1_ratio, "
                            "L2 alpha*(1-l1_ratio)/2)",
                   "l1_ratio": "share of L1 in the penalty, in [0, 1]",
                   "positive_only": "constrain the item-item weights to be non-negative",
                   "max_iter": "most coordinate-descent sweeps per item",
                   "tol": "coordinate-descent tolerance (duality gap) per item",
                   "n_jobs": "threads fitting disjoint sets of items at once"}

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        alpha, l1 = float(self.cfg("alpha")), float(self.cfg("l1_ratio"))
        if alpha <= 0:
            raise ConfigError(f"SLIMElastic needs alpha > 0, got {alpha}.")
        if not 0.0 <= l1 <= 1.0:
            raise ConfigError(f"SLIMElastic's l1_ratio must be in [0, 1], got {l1}.")
        n_jobs = int(self.cfg("n_jobs"))
        if n_jobs < 1:
            raise ConfigError(f"SLIMElastic's n_jobs must be >= 1, got {n_jobs}.")
        params = dict(alpha=alpha, l1_ratio=l1, positive=bool(self.cfg("positive_only")),
                      max_iter=int(self.cfg("max_iter")), tol=float(self.cfg("tol")))
        Xc = sp.csc_matrix(X, dtype=np.float64)
        n = X.shape[1]
        chunks = [c for c in np.array_split(np.arange(1, n), n_jobs) if len(c)]
        seed = int(self.config["seed"])
        if n_jobs == 1:
            parts = [slim_columns(Xc, chunks[0], params, seed)]
        else:
            from joblib import Parallel, delayed
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(slim_columns)(Xc, c, params, seed)
                                                             for c in chunks)
        rows = [a for p in parts for a in p[0]]
        cols = [a for p in parts for a in p[1]]
        vals = [a for p in parts for a in p[2]]
        if not vals:
            return sp.csr_matrix((n, n), dtype=np.float32)
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
