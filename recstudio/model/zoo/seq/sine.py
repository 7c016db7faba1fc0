"""SINE: sparse-interest network — activate a few of many concept prototypes, build one embedding per
intention, aggregate them by the predicted next intention."""
from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.seq_blocks import causal_softmax_pool
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def _prefix_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``scores [B, L, K]`` -> ``[B, L(t), L(j), K]``: softmax over the valid ``j <= t`` for every prefix ``t``."""
    L = scores.size(1)
    allowed = torch.ones(L, L, dtype=torch.bool, device=scores.device).tril() & valid[:, None, :]  # [B, t, j]
    s = scores.unsqueeze(1).masked_fill(~allowed.unsqueeze(-1), float("-inf"))
    p = torch.softmax(s, dim=2)
    return p.masked_fill(~allowed.unsqueeze(-1), 0.0)  # rows of padding prefixes (nothing allowed) -> 0


class SINEEncoder(nn.Module):
    """The SINE user vector of every prefix ``t`` of ``seq`` (``[B, L, d]``, zeros at padding); see
    :class:`SINE`. Every softmax over positions runs over ``j <= t``."""

    def __init__(self, item_embedding: nn.Module, dim: int, n_prototypes: int, k: int, tau: float):
        super().__init__()
        std = 0.01
        self.item_embedding, self.k, self.tau = item_embedding, int(k), float(tau)
        self.w1 = nn.Parameter(torch.randn(dim, dim) * std)
        self.w2 = nn.Parameter(torch.randn(dim) * std)
        self.w3 = nn.Parameter(torch.randn(dim, dim) * std)
        self.w4 = nn.Parameter(torch.randn(dim) * std)
        self.wk1 = nn.Parameter(torch.randn(k, dim, dim) * std)
        self.wk2 = nn.Parameter(torch.randn(k, dim) * std)
        self.prototypes = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_prototypes, dim)))
        self.ln_c, self.ln_apt = nn.LayerNorm(dim, eps=1e-12), nn.LayerNorm(dim, eps=1e-12)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        valid = seq != 0
        x = self.item_embedding(seq)  # [B, L, d]
        # concept activation: self-attentive prefix vector z_t, top-k prototypes, gated by sigmoid(score)
        z = causal_softmax_pool(torch.tanh(x @ self.w1) @ self.w2, x, valid)  # [B, L, d]
        s = z @ self.prototypes.t()  # [B, L, P]
        top, idx = s.topk(self.k, dim=-1)  # [B, L, k]
        cu = self.prototypes[idx] * torch.sigmoid(top).unsqueeze(-1)  # [B, L(t), k, d]
        # intention assignment P(k | j) under prefix t's concepts
        xn = F.normalize(x @ self.w3, dim=-1)  # [B, L(j), d]
        p_kj = torch.softmax(torch.einsum("bjd,btkd->btjk", xn, self.ln_c(cu)), dim=-1)  # [B, t, j, k]
        # attention weighting P(j | k) over the prefix, interest embeddings
        a = (torch.tanh(torch.einsum("bjd,kde->bjke", x, self.wk1)) * self.wk2).sum(-1)  # [B, j, k]
        p_jk = _prefix_softmax(a, valid)  # [B, t, j, k]
        delta = F.normalize(torch.einsum("btjk,bjd->btkd", p_kj * p_jk, x), dim=-1)  # [B, t, k, d]
        # prototype sequence -> predicted intention C_apt, aggregation of the interests
        x_bar = torch.einsum("btjk,btkd->btjd", p_kj, cu)  # [B, t, j, d]
        w_apt = torch.tanh(x_bar @ self.w3) @ self.w4  # [B, t, j]
        L = seq.size(1)
        allowed = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril() & valid[:, None, :]
        w_apt = torch.softmax(w_apt.masked_fill(~allowed, float("-inf")), dim=-1).masked_fill(~allowed, 0.0)
        c_apt = self.ln_apt((w_apt.unsqueeze(-1) * x_bar).sum(2))  # [B, t, d]
        e = torch.softmax((delta * c_apt.unsqueeze(2)).sum(-1) / self.tau, dim=-1)  # [B, t, k]
        v = (e.unsqueeze(-1) * delta).sum(2)
        return v.masked_fill(~valid.unsqueeze(-1), 0.0)

    def covariance_regulariser(self) -> torch.Tensor:
        """Sum of the squared off-diagonal entries of the prototypes' covariance / 2 (the paper's L_c)."""
        c = self.prototypes - self.prototypes.mean(dim=1, keepdim=True)
        cov = c @ c.t() / c.size(1)
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / 2


@register_model("SINE", category="seq",
                paper="Q. Tan, J. Zhang, J. Yao, N. Liu, J. Zhou, H. Yang, X. Hu. Sparse-Interest Network for "
                      "Sequential Recommendation. WSDM 2021.")
class SINE(SequentialRecommender):
    """SINE (Tan et al., WSDM 2021): multi-interest sequential recommendation with a sparse set of concepts.

    For the user's items ``x_j``: **concept activation** -- a self-attentive vector ``z = sum_j softmax_j(w_2^T
    tanh(W_1 x_j)) x_j`` selects the ``interest_size`` (``K``) prototypes of ``prototype_size`` learned concepts
    ``C`` with the largest ``C z``, gated by ``sigmoid(C z)``; **intention assignment** --
    ``P(k|j) = softmax_k(norm(W_3 x_j) . LN(C_k))``; **attention weighting** -- ``P(j|k) = softmax_j(w_{k,2}^T
    tanh(W_{k,1} x_j))``; **interest embeddings** ``phi_k = norm(sum_j P(k|j) P(j|k) x_j)``; **interest
    aggregation** -- the predicted intention ``C_apt = LN(sum_j softmax_j(w_4^T tanh(W_3 xbar_j)) xbar_j)``,
    ``xbar_j = sum_k P(k|j) C_k``, weights ``e_k = softmax_k(phi_k . C_apt / tau)``; the user vector is
    ``v = sum_k e_k phi_k``, scored by the inner product with the (shared) item embeddings. The loss adds
    ``reg_weight`` times the prototypes' covariance regulariser ``L_c`` (off-diagonal covariance, the paper's
    Eq. 15).

    Training predicts the next item at every position: for each prefix ``t`` the whole computation runs over
    positions ``j <= t`` (all softmaxes over positions are prefix softmaxes, padding masked;
    :class:`SINEEncoder`), which at the last position is the paper's model (``O(L^2)`` memory in the prefix
    dimension).

    Defaults: RecBole's SINE (``embed_dim`` 64, 50 prototypes, 3 interests, ``tau`` 0.1, full softmax,
    ``max_seq_len`` 50, Adam 1e-3, batch 128), with the paper's ``reg_weight`` 0.1 always applied (RecBole adds
    it with its NLL loss only).

    Departures: padding is masked in every softmax (RecBole's implementation does not); full ranking.

    Args (config keys): ``embed_dim``, ``prototype_size``, ``interest_size``, ``tau``, ``reg_weight``,
    ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``;
    defaults in ``sine.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SINE", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "prototype_size": "number of learned concept prototypes (the paper: hundreds to thousands)",
        "interest_size": "interests K activated per sequence (<= prototype_size)",
        "tau": "temperature of the interest aggregation softmax (> 0)",
        "reg_weight": "weight of the prototypes' covariance regulariser (0 = off)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if not 1 <= c["interest_size"] <= c["prototype_size"]:
            raise ConfigError(f"SINE needs 1 <= interest_size <= prototype_size, got {c['interest_size']} and "
                              f"{c['prototype_size']}.")
        if c["tau"] <= 0:
            raise ConfigError(f"SINE tau must be > 0, got {c['tau']}.")
        return SINEEncoder(self.item_encoder, c["embed_dim"], c["prototype_size"], c["interest_size"], c["tau"])

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().training_loss(batch)
        w = self.cfg("reg_weight")
        return loss + w * self.query_encoder.encoder.covariance_regulariser() if w else loss
