"""WRMF / iALS: weighted matrix factorisation for implicit feedback, fitted by alternating least squares."""
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from recstudio.model.base.itemtower import TwoTowerRecommender, _UserIdQuery
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError

#: padded (row, nonzero) slots solved at once; bounds the [rows, width, d] gather of a chunk
_CHUNK_SLOTS = 1 << 16


@register_model("WRMF", category="general", aliases=("iALS", "ALS"),
                paper="Y. Hu, Y. Koren, C. Volinsky. Collaborative Filtering for Implicit Feedback Datasets. "
                      "ICDM 2008.")
class WRMF(TwoTowerRecommender):
    """Weighted regularised matrix factorisation (Hu, Koren, Volinsky, ICDM 2008), a.k.a. iALS.

    Minimises, over ALL user-item pairs,

        ``L(X, Y) = sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)``

    with preference ``p_ui = 1`` for observed pairs (0 otherwise) and confidence ``c_ui = 1 + alpha r_ui``
    (``r_ui`` = 1 per observed pair, or the ``confidence_field`` value; ``c_ui = 1`` for unobserved pairs).
    Scores are ``x_u . y_i`` (inner product: full ranking and ANN top-k work).

    Fitting is the paper's alternating least squares, not SGD (``fit_mode = 'alternating'``: no
    optimizer, factors are tables with ``requires_grad=False``). An epoch solves every user row given the
    item factors, then every item row given the user factors:

        ``x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^-1 Y^T C_u p(u)``

    ``Y^T Y`` is computed once per sweep (at the first batch of each side), so a row costs
    ``O(n_u d^2 + d^3)``. Rows of a batch are solved together: sorted by their number of nonzeros, gathered
    into padded ``[rows, width, d]`` chunks, their ``d x d`` systems built with batched matmuls and solved
    exactly by batched Cholesky (``solver: cholesky``), or approximately by ``cg_steps`` conjugate-gradient
    steps warm-started from the current factors, never forming the systems (``solver: cg``, as in
    Takacs et al. 2011 and the ``implicit`` library). Early stopping on the validation metric after each
    epoch, as for every model.

    The logged ``train/loss`` (once per epoch, after the item sweep) is the exact objective ``L(X, Y)``
    above (all pairs, confidence-weighted, plus both lambda terms) divided by the number of train
    interactions. With the Cholesky solver it never increases.

    Departures from the paper: ``lambda`` is not scaled by a row's count (the paper's plain form;
    Rendle et al. 2021 discuss frequency-scaled variants); factors start from ``N(0, init_std^2)``; the
    default ``alpha`` / ``lambda`` were chosen on ml-100k (see ``wrmf.yaml``), the paper's ``alpha = 40``
    is one setting away. The paper's log confidence ``1 + alpha log(1 + r / eps)`` is not offered.

    Args (config keys):
        embed_dim: number of factors ``d``.
        alpha: confidence slope, ``c_ui = 1 + alpha r_ui``.
        reg_weight: ``lambda`` of both factor matrices.
        solver: ``cholesky`` (exact) or ``cg`` (conjugate gradient).
        cg_steps: conjugate-gradient steps per row and sweep (``solver: cg``).
        confidence_field: a float interaction field read as ``r_ui`` (e.g. ``rating``); null = 1.
        init_std: standard deviation of the factors' normal initialisation.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="WRMF", dataset="ml-100k")              # doctest: +SKIP
        >>> model, metrics = recstudio.run(model="iALS", dataset="ml-100k", solver="cg")  # doctest: +SKIP
    """

    dataset_type = "als"
    fit_mode = "alternating"
    option_help = {"embed_dim": "number of latent factors d",
                   "alpha": "confidence slope: c_ui = 1 + alpha * r_ui for observed pairs (1 for unobserved)",
                   "reg_weight": "L2 regularisation lambda of both factor matrices (not scaled by counts)",
                   "solver": "row solver: cholesky (exact) or cg (conjugate gradient, warm-started)",
                   "cg_steps": "conjugate-gradient steps per row and sweep when solver is cg",
                   "confidence_field": "float interaction field read as r_ui (e.g. rating); null: r_ui = 1 "
                                       "for every observed pair",
                   "init_std": "standard deviation of the normal initialisation of both factor tables"}
    # sweep state (class-level defaults too, for models rebuilt by recstudio.load without __init__)
    _side: Optional[str] = None
    _gram: Optional[torch.Tensor] = None
    _sweep_sum, _sweep_rows, _sweep_nnz = 0.0, 0, 0
    #: the objective L(X, Y) / train interactions after the last complete item sweep
    last_objective: Optional[float] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config["solver"] not in ("cholesky", "cg"):
            raise ConfigError(f"WRMF solver must be 'cholesky' or 'cg', got {self.config['solver']!r}.")
        if self.config["cg_steps"] < 1:
            raise ConfigError(f"WRMF cg_steps must be >= 1, got {self.config['cg_steps']}.")
        if self.config["alpha"] < 0 or self.config["reg_weight"] < 0:
            raise ConfigError("WRMF needs alpha >= 0 and reg_weight >= 0 (confidences c = 1 + alpha r must "
                              f"stay positive); got alpha={self.config['alpha']}, "
                              f"reg_weight={self.config['reg_weight']}.")
        self.reset_sweep()

    # ---- blocks ------------------------------------------------------------------------------
    def _factors(self, num: int) -> IdEmbedding:
        emb = IdEmbedding(num, self.cfg("embed_dim"), init="normal", init_std=self.cfg("init_std"))
        emb.embedding.weight.requires_grad_(False)
        return emb

    def _get_item_encoder(self) -> nn.Module:
        return self._factors(self.meta.num_items)

    def _get_query_encoder(self) -> nn.Module:
        return _UserIdQuery(self.meta.uid_field, self._factors(self.meta.num_users))

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()  # the model is x_u . y_i

    def _dataset_kwargs(self) -> Dict:
        field = self.cfg("confidence_field")
        return {} if field is None else {"value": field}

    @property
    def user_factors(self) -> torch.Tensor:
        """``X`` ``[num_users, d]`` (row 0 = padding, zero)."""
        return self.query_encoder.embedding.embedding.weight

    @property
    def item_factors(self) -> torch.Tensor:
        """``Y`` ``[num_items, d]`` (row 0 = padding, zero)."""
        return self.item_encoder.embedding.weight

    # ---- alternating least squares -----------------------------------------------------------
    def reset_sweep(self) -> None:
        """Forget the cached Gram matrix and the objective being summed (call after changing factors
        outside :meth:`alternating_step`; done at the start of every training epoch)."""
        self._side: Optional[str] = None
        self._gram: Optional[torch.Tensor] = None
        self._sweep_sum = 0.0
        self._sweep_rows = 0
        self._sweep_nnz = 0
        self.last_objective: Optional[float] = None

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.reset_sweep()

    def alternating_step(self, batch: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Solve the batch's rows (users or items, told apart by the id key) given the other side.

        Returns the epoch's objective per train interaction once the item sweep is complete, else None.
        """
        side = "user" if self.meta.uid_field in batch else "item"
        rows = batch[self.meta.uid_field] if side == "user" else batch[self.meta.iid_field]
        solved, fixed = ((self.user_factors, self.item_factors) if side == "user"
                         else (self.item_factors, self.user_factors))
        if side != self._side:  # the fixed side changed during the previous sweep: new Gram matrix
            self._side, self._gram = side, fixed.T @ fixed
            self._sweep_sum, self._sweep_rows, self._sweep_nnz = 0.0, 0, 0
        x0 = solved[rows] if self.config["solver"] == "cg" else None
        x, contrib = self.solve_rows(fixed, batch["indptr"], batch["indices"], batch["values"],
                                     gram=self._gram, x0=x0)
        solved[rows] = x.to(solved.dtype)
        self._sweep_sum += float(contrib)
        self._sweep_rows += int(rows.numel())
        self._sweep_nnz += int(batch["indices"].numel())
        if side == "item" and self._sweep_rows == self.meta.num_items - 1:
            # L(X, Y) = sum over items of their rows' terms (given X) + lambda |X|^2
            objective = self._sweep_sum + self.config["reg_weight"] * float((fixed.double() ** 2).sum())
            self.last_objective = objective / max(self._sweep_nnz, 1)
            return torch.tensor(self.last_objective)
        return None

    def solve_rows(self, Y: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor,
                   gram: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Least-squares rows for the CSR rows ``(indptr, indices, values)`` given the fixed factors ``Y``.

        Args:
            Y: the fixed side's factors ``[n, d]``.
            indptr, indices, values: the rows' nonzeros (``values`` = ``r``), ``indptr`` ``[B+1]``.
            gram: ``Y^T Y`` if already computed.
            x0: current rows ``[B, d]``: the warm start of ``solver: cg`` (zeros when omitted).

        Returns:
            ``(x [B, d], objective)``: the solved rows and their part of ``L(X, Y)``,
            ``sum_rows sum_all-cols c (p - x . y)^2 + lambda |x|^2``. Rows without nonzeros get 0 (exact).
        """
        d = Y.shape[1]
        alpha, reg = float(self.config["alpha"]), float(self.config["reg_weight"])
        cg = self.config["solver"] == "cg"
        gram = Y.T @ Y if gram is None else gram
        A0 = gram + reg * torch.eye(d, dtype=Y.dtype, device=Y.device)
        lens = indptr[1:] - indptr[:-1]
        x = Y.new_zeros(len(lens), d)
        objective = Y.new_zeros(())
        order = torch.argsort(lens, descending=True)
        sorted_lens = lens[order].tolist()
        start, n_rows = 0, sum(1 for n in sorted_lens if n > 0)
        while start < n_rows:  # chunks of rows of similar length, padded to the chunk's longest
            width = sorted_lens[start]
            stop = min(n_rows, start + max(1, _CHUNK_SLOTS // width))
            sel = order[start:stop]
            slot = torch.arange(width, device=Y.device)
            mask = slot[None, :] < lens[sel, None]
            flat = torch.where(mask, indptr[sel, None] + slot[None, :], 0)
            Yp = Y[indices[flat]] * mask[..., None]                       # [c, w, d], zero padding
            cm1 = alpha * values[flat].to(Y.dtype) * mask                  # c - 1, zero padding
            b = ((1.0 + cm1)[..., None] * Yp).sum(1)                       # Y^T C_u p(u)
            if cg:
                start_x = x0[sel].to(Y.dtype) if x0 is not None else Y.new_zeros(len(sel), d)
                xs = _conjugate_gradient(A0, Yp, cm1, b, start_x, int(self.config["cg_steps"]))
            else:
                A = A0 + (Yp * cm1[..., None]).transpose(1, 2) @ Yp
                xs = _cholesky_solve(A, b)
            x[sel] = xs
            s = (Yp @ xs[..., None]).squeeze(-1)                           # x . y on the row's nonzeros
            objective = objective + (((xs @ gram) * xs).sum() + reg * (xs * xs).sum()
                                     + (((1.0 + cm1) * (1.0 - s) ** 2 - s ** 2) * mask).sum())
            start = stop
        return x, objective


def _cholesky_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A^-1 b`` for SPD ``A`` ``[c, d, d]``; rows whose float32 factorisation fails are solved in float64."""
    L, info = torch.linalg.cholesky_ex(A)
    x = torch.cholesky_solve(b[..., None], L).squeeze(-1)
    bad = info != 0
    if bad.any():
        x[bad] = torch.linalg.solve(A[bad].double(), b[bad].double()).to(x.dtype)
    return x


def _conjugate_gradient(A0: torch.Tensor, Yp: torch.Tensor, cm1: torch.Tensor, b: torch.Tensor,
                        x: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` CG iterations on ``(A0 + Yp^T diag(cm1) Yp) x = b`` per row, from ``x``, using only
    products with ``A0`` and ``Yp`` (the ``d x d`` systems are never formed)."""
    def matvec(v):
        return v @ A0 + ((Yp @ v[..., None]).squeeze(-1) * cm1)[:, None, :].bmm(Yp).squeeze(1)

    r = b - matvec(x)
    p = r.clone()
    rs = (r * r).sum(1)
    for _ in range(steps):
        Ap = matvec(p)
        pAp = (p * Ap).sum(1)
        step = torch.where(pAp > 0, rs / pAp.clamp_min(1e-30), torch.zeros_like(rs))
        x = x + step[:, None] * p
        r = r - step[:, None] * Ap
        rs_new = (r * r).sum(1)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
    return x
