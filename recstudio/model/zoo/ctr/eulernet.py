"""EulerNet: feature interactions as linear combinations of orders in the complex (polar) space."""
from typing import Tuple

import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class EulerInteraction(nn.Module):
    """One Euler interaction layer over complex vectors ``r + i p`` (``[N, M_in, d]`` each -> ``[N, M_out, d]``):
    explicit part ``lambda' e^{i theta'}`` with ``log lambda' = log|z| A + b_lambda``, ``theta' = arg(z) A +
    b_theta`` (``A`` the learned ``M_in x M_out`` interaction orders), implicit part ``ReLU(W r) + i ReLU(W p)``,
    summed, optionally layer-normed."""

    def __init__(self, m_in: int, m_out: int, dim: int, layer_norm: bool, drop_ex: float, drop_im: float):
        super().__init__()
        self.d = dim
        orders = torch.eye(m_in, m_out) if m_in == m_out else torch.softmax(torch.randn(m_in, m_out) / 0.01, 0)
        self.orders = nn.Parameter(orders)
        self.im = nn.Linear(m_in * dim, m_out * dim)
        nn.init.xavier_uniform_(self.im.weight)
        self.bias_lam = nn.Parameter(torch.randn(1, dim, m_out) * 0.01)
        self.bias_theta = nn.Parameter(torch.randn(1, dim, m_out) * 0.01)
        self.drop_ex, self.drop_im = nn.Dropout(drop_ex), nn.Dropout(drop_im)
        self.norm_r = nn.LayerNorm(dim) if layer_norm else None
        self.norm_p = nn.LayerNorm(dim) if layer_norm else None

    def forward(self, z: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        r, p = z
        n = r.shape[0]
        log_lam = self.drop_ex(0.5 * torch.log(r ** 2 + p ** 2 + 1e-8)).transpose(1, 2)   # [N, d, M_in]
        theta = self.drop_ex(torch.atan2(p, r)).transpose(1, 2)
        lam = torch.exp(log_lam @ self.orders + self.bias_lam).transpose(1, 2)          # [N, M_out, d]
        theta = (theta @ self.orders + self.bias_theta).transpose(1, 2)
        r_im = torch.relu(self.im(self.drop_im(r.reshape(n, -1)))).reshape(n, -1, self.d)
        p_im = torch.relu(self.im(self.drop_im(p.reshape(n, -1)))).reshape(n, -1, self.d)
        o_r, o_p = r_im + lam * torch.cos(theta), p_im + lam * torch.sin(theta)
        if self.norm_r is not None:
            o_r, o_p = self.norm_r(o_r), self.norm_p(o_p)
        return o_r, o_p


@register_model("EulerNet", category="ctr",
                paper="Z. Tian, T. Bai, W. X. Zhao, J.-R. Wen, Z. Cao. EulerNet: Adaptive Feature Interaction Learning "
                      "via Euler's Formula for CTR Prediction. SIGIR 2023.")
class EulerNet(FeatureRecommender):
    """EulerNet (Tian et al., SIGIR 2023): each field embedding ``e_f`` becomes the complex vector
    ``mu_f e^{i e_f}`` (``r = mu cos e``, ``p = mu sin e``); by Euler's formula a product of powers of the
    fields, ``prod_f z_f^{a_f}``, is linear in the log-modulus and the phase, so each Euler interaction layer
    learns ``M`` interactions of adaptive orders ``A`` (``log lambda' = log|z| A``, ``theta' = arg(z) A``)
    plus an implicit ReLU-linear part; ``shape`` lists ``M`` per layer. ``logit = b + w^T (flatten(r_L) +
    flatten(p_L))`` (the real and imaginary outputs share ``w``). No first-order term.

    Departures from the paper: as FuxiCTR's EulerNet; an L2 penalty on the embeddings (``embed_reg``), Adam
    with early stopping on valid AUC. No BARS Frappe setting exists: FuxiCTR's default (one layer of 20
    interactions, layer norm, no dropout) with embedding 10, Adam 1e-3, batch 4096.

    Args (config keys): ``embed_dim``, ``shape``, ``layer_norm``, ``ex_dropout``, ``im_dropout``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``eulernet.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="EulerNet", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "shape": "number of learned interactions of each Euler interaction layer",
                   "layer_norm": "layer-normalise the real and imaginary outputs of each layer",
                   "ex_dropout": "dropout on the log-modulus and phase (explicit part)",
                   "im_dropout": "dropout on the input of the implicit part"}

    def build_interaction(self) -> None:
        shape = [int(m) for m in self.cfg("shape") or []]
        if not shape or min(shape) < 1:
            raise ConfigError(f"shape must list positive interaction counts, got {shape}.")
        sizes = [self.num_fields, *shape]
        self.layers = nn.Sequential(*[
            EulerInteraction(a, b, self.embed_dim, bool(self.cfg("layer_norm")), float(self.cfg("ex_dropout")),
                             float(self.cfg("im_dropout"))) for a, b in zip(sizes[:-1], sizes[1:])])
        self.mu = nn.Parameter(torch.ones(1, self.num_fields, 1))
        self.out = nn.Linear(shape[-1] * self.embed_dim, 1)
        nn.init.xavier_normal_(self.out.weight)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        r, p = self.layers((self.mu * torch.cos(x), self.mu * torch.sin(x)))
        return (self.out(r.flatten(1)) + self.out(p.flatten(1))).reshape(lead)
