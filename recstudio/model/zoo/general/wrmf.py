"""WRMF / iALS: weighted matrix factorisation for implicit feedback, fitted by alternating least squares."""
from typing import Dict, Optional

import torch

from recstudio.model.base.itemtower import TwoTowerRecommender, _UserIdQuery
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model


@register_model("WRMF", category="general", aliases=("iALS", "ALS"),
                paper="Y. Hu, Y. Koren, C. Volinsky. Collaborative Filtering for Implicit Feedback Datasets. "
                      "ICDM 2008.")
class WRMF(TwoTowerRecommender):
    """Weighted regularised MF (Hu et al., ICDM 2008): minimise
    ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (sum_u |x_u|^2 + sum_i |y_i|^2)`` over ALL user-item
    pairs, with preference ``p_ui = 1`` for observed pairs (0 otherwise) and confidence
    ``c_ui = 1 + alpha * r_ui`` (``r_ui = 1`` for each observed pair; 1 for unobserved ones).

    Alternating least squares, as in the paper: each epoch solves every user row exactly given the
    item factors, ``x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^-1 Y^T C_u p_u``, then every item row given
    the user factors. The ``Y^T Y`` trick makes a row cost ``O(n_u d^2 + d^3)``; rows of a batch are
    solved together with a batched Cholesky factorisation. No SGD, no optimizer
    (``fit_mode = 'alternating'``); early stopping on the validation metric after each epoch.

    Departure from the paper: ``lambda`` is not scaled by the row's count (the paper's plain form;
    Rendle et al. 2021 discuss scaled variants). The logged training loss is the weighted squared
    error on the observed pairs only.

    Args (config keys): ``embed_dim`` (factors), ``alpha``, ``reg_weight`` (lambda); defaults in
    ``wrmf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="WRMF", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "als"
    fit_mode = "alternating"
    option_help = {"embed_dim": "number of latent factors",
                   "alpha": "confidence slope: c = 1 + alpha * r for observed pairs",
                   "reg_weight": "L2 regularisation lambda of both factor matrices",
                   "score_func": "score function (inner_product: x_u . y_i)"}

    def _get_item_encoder(self):
        emb = IdEmbedding(self.meta.num_items, self.cfg("embed_dim"), init="normal", init_std=0.01)
        emb.embedding.weight.requires_grad_(False)
        return emb

    def _get_query_encoder(self):
        emb = IdEmbedding(self.meta.num_users, self.cfg("embed_dim"), init="normal", init_std=0.01)
        emb.embedding.weight.requires_grad_(False)
        return _UserIdQuery(self.meta.uid_field, emb)

    def configure_optimizers(self):
        return None

    def alternating_step(self, batch: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        uid = self.meta.uid_field
        users_side = uid in batch
        solve_for = self.query_encoder.embedding.weight if users_side else self.item_encoder.weight
        fixed = self.item_encoder.weight if users_side else self.query_encoder.embedding.weight
        rows = batch[uid] if users_side else batch[self.meta.iid_field]
        x, loss = self.solve_rows(fixed, batch["indptr"], batch["indices"], batch["values"])
        x[rows == 0] = 0.0  # the padding id stays zero
        solve_for[rows] = x
        return loss

    def solve_rows(self, Y: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor):
        """Exact least-squares rows ``x`` for the CSR rows ``(indptr, indices, values)`` given the fixed
        factors ``Y``; returns ``(x [B, d], weighted squared error on the observed pairs)``."""
        d = Y.shape[1]
        alpha, reg = self.config["alpha"], self.config["reg_weight"]
        lens = indptr[1:] - indptr[:-1]
        n_rows, width = len(lens), int(lens.max()) if len(lens) else 0
        row = torch.repeat_interleave(torch.arange(n_rows, device=Y.device), lens)
        pos = torch.arange(len(indices), device=Y.device) - indptr[row]
        Yp = Y.new_zeros(n_rows, max(width, 1), d)
        Yp[row, pos] = Y[indices]
        Cm1 = Y.new_zeros(n_rows, max(width, 1))  # c - 1 on observed pairs, 0 on padding
        Cm1[row, pos] = alpha * values.to(Y.dtype)
        A = (Yp * Cm1[..., None]).transpose(1, 2) @ Yp + (Y.T @ Y + reg * torch.eye(d, device=Y.device))
        b = (Yp * (1.0 + Cm1)[..., None]).sum(1) * (lens > 0)[:, None]  # sum_j c_j y_j (p = 1 observed)
        chol = torch.linalg.cholesky(A)
        x = torch.cholesky_solve(b[..., None], chol).squeeze(-1)
        err = (1.0 - (Yp @ x[..., None]).squeeze(-1)) ** 2 * (1.0 + Cm1)
        loss = (err * (Cm1 > 0)).sum() / max(len(indices), 1)
        return x, loss
