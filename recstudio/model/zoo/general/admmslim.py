"""ADMM SLIM: SLIM's constrained, L1 + L2 regularised item-item regression solved by ADMM."""
import numpy as np
import scipy.sparse as sp

from recstudio.model.family.neighbourhood import ItemItemRecommender, parse_positive_int
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def admm_slim_weights(X: sp.spmatrix, lambda1: float, lambda2: float, alpha: float, rho: float, steps: int,
                      positive_only: bool) -> np.ndarray:
    """ADMM SLIM's item-item matrix ``C`` (dense float32 ``[n, n]``) of a binary ``X`` (``m x n``).

    ``D = lambda2 diag(mu^alpha) + rho I`` (``mu_j`` the column mean of ``X``), ``P = (G + D)^-1`` with
    ``G = X^T X``; ``steps`` times: ``B~ = P G + P (rho C - Gamma)``, ``B = B~ - P diagMat(diag(B~) / diag(P))``
    (so ``diag(B) = 0``), ``C = S_{lambda1/rho}(B + Gamma / rho)`` (soft threshold, then ``max(., 0)`` if
    ``positive_only``), ``Gamma += rho (B - C)``.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    n = X.shape[1]
    mu = np.asarray(X.mean(axis=0)).ravel()
    G = (X.T @ X).toarray()
    diag = lambda2 * np.power(mu, alpha) + rho
    P = np.linalg.inv(G + np.diag(diag)).astype(np.float32)
    B_aux = (P @ G).astype(np.float32)
    del G
    p_diag = np.diag(P).copy()
    gamma = np.zeros((n, n), dtype=np.float32)
    C = np.zeros((n, n), dtype=np.float32)
    thr = lambda1 / rho
    for _ in range(steps):
        B = B_aux + P @ (rho * C - gamma)
        B -= P * (np.diag(B) / (p_diag + 1e-7))[None, :]
        C = B + gamma / rho
        C = np.sign(C) * np.maximum(np.abs(C) - thr, 0.0)
        if positive_only:
            np.maximum(C, 0.0, out=C)
        gamma += rho * (B - C)
    return C


@register_model("ADMMSLIM", category="general", aliases=("ADMM-SLIM",),
                paper="H. Steck, M. Dimakopoulou, N. Riabov, T. Jebara. ADMM SLIM: Sparse Recommendations for "
                      "Many Users. WSDM 2020.")
class ADMMSLIM(ItemItemRecommender):
    """ADMM SLIM (Steck et al., WSDM 2020): the SLIM objective

        ``min_B 1/2 ||X - X B||_F^2 + lambda1 |B|_1 + lambda2/2 ||diag(mu^alpha)^(1/2) B||_F^2``
        ``s.t. diag(B) = 0 (, B >= 0)``

    on the binary train matrix ``X``, with a popularity-weighted L2 term (``mu_j`` = column mean of ``X``),
    solved by ADMM with the split ``B = C``: ``steps`` iterations of an EASE-like closed-form ``B``-step
    (one ``n x n`` inverse, computed once), a soft-threshold ``C``-step and the dual update (see
    :func:`admm_slim_weights`). ``score(u, .) = x_u C`` with the sparse ``C`` held sparse.

    Memory and time: dense ``n x n`` float32 matrices during the fit (``O(n^2)`` memory, ``O(steps n^3)``
    time), like EASE; for very many items use SparseEASE or SLIMElastic.

    Departures from RecBole's ADMMSLIM (same defaults ``lambda1 = 3``, ``lambda2 = 200``, ``alpha = 0.5``,
    ``rho = 4000``, 100 iterations, positive only): the item-bias variant (``center_columns``) is not
    offered; no random noise is added to the scores (RecBole adds ``1e-5 U(0, 1)``); the evaluation input
    is the user's known history (RecBole: the train matrix).

    Args (config keys):
        lambda1: L1 weight.
        lambda2: L2 weight.
        alpha: exponent of the item popularity in the L2 weights.
        rho: ADMM penalty.
        steps: ADMM iterations (RecBole's ``k``).
        positive_only: constrain ``C >= 0``.

    Example:
        >>> model, metrics = recstudio.run(model="ADMMSLIM", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {"lambda1": "L1 regularisation weight",
                   "lambda2": "L2 regularisation weight (times mu_j^alpha for item j)",
                   "alpha": "exponent of the item popularity mu_j (column mean) in the L2 weights",
                   "rho": "ADMM penalty on ||B - C||^2",
                   "steps": "ADMM iterations",
                   "positive_only": "constrain the item-item weights to be non-negative"}

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        rho = float(self.cfg("rho"))
        l1, l2 = float(self.cfg("lambda1")), float(self.cfg("lambda2"))
        if rho <= 0 or l1 < 0 or l2 < 0:
            raise ConfigError(f"ADMMSLIM needs rho > 0 and lambda1, lambda2 >= 0, got rho={rho}, lambda1={l1}, "
                              f"lambda2={l2}.")
        C = admm_slim_weights(X, l1, l2, float(self.cfg("alpha")), rho,
                              parse_positive_int(self.cfg("steps"), "steps", "ADMMSLIM"),
                              bool(self.cfg("positive_only")))
        return sp.csr_matrix(C)
