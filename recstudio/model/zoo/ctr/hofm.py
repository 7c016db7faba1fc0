"""HOFM: higher-order factorization machines (ANOVA kernels up to a given order)."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


def anova_kernel(x: torch.Tensor, order: int) -> torch.Tensor:
    """``sum_{f_1 < ... < f_t} sum_k prod_s x_{f_s k}`` of ``x [N, F, d]`` for ``t = order``, by the dynamic
    programme ``a_t <- a_t + a_{t-1} * x_f`` over the fields (Blondel et al., 2016), O(F t d).

    Example:
        >>> anova_kernel(torch.tensor([[[1.0], [2.0], [3.0]]]), 2)   # 1*2 + 1*3 + 2*3
        tensor([11.])
    """
    a = [torch.ones_like(x[:, 0])] + [torch.zeros_like(x[:, 0]) for _ in range(order)]
    for f in range(x.shape[1]):
        for t in range(order, 0, -1):
            a[t] = a[t] + a[t - 1] * x[:, f]
    return a[order].sum(-1)


@register_model("HOFM", category="ctr",
                paper="M. Blondel, A. Fujino, N. Ueda, M. Ishihata. Higher-Order Factorization Machines. NIPS 2016.")
class HOFM(FeatureRecommender):
    """Higher-order FM (Blondel et al., NIPS 2016): ``logit = w_0 + sum_f w_f + sum_{t=2}^{m}
    sum_{f_1<...<f_t} <p^(t)_{f_1}, ..., p^(t)_{f_t}>`` (``m = order``), each order with its own ``embed_dim``
    vectors (with ``reuse_embedding: true`` all orders share one), the ANOVA kernels computed by the paper's
    dynamic programme in O(F m d). A field's table row holds the ``order - 1`` vectors side by side
    (``embedding_width``).

    Departures from the paper: mini-batch Adam with early stopping on valid AUC instead of coordinate
    descent; an L2 penalty on the embeddings (``embed_reg``). Defaults follow BARS / FuxiCTR
    HOFM_frappe_x1_003 (order 3, separate embeddings, embedding 10, regularizer 1e-6, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``order``, ``reuse_embedding``, ``embed_reg``, ``feature_fields``,
    ``label_field``, ``label_threshold``, ``loss``; see ``hofm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="HOFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP,
                   "embed_dim": "size of each order's vector of a field",
                   "order": "highest interaction order m (>= 2)",
                   "reuse_embedding": "all orders share one vector per feature (false: one vector per order)"}

    def _orders(self) -> int:
        order = int(self.cfg("order"))
        if order < 2:
            raise ConfigError(f"order must be >= 2, got {order}.")
        return order

    def embedding_width(self) -> int:
        copies = 1 if self.cfg("reuse_embedding") else self._orders() - 1
        return int(self.cfg("embed_dim")) * copies

    def build_interaction(self) -> None:
        self.order, self.d = self._orders(), int(self.cfg("embed_dim"))
        self.reuse = bool(self.cfg("reuse_embedding"))

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        out = x.new_zeros(x.shape[0])
        for t in range(2, self.order + 1):
            part = x if self.reuse else x[..., (t - 2) * self.d:(t - 1) * self.d]
            out = out + anova_kernel(part, t)
        return out.reshape(lead)
