"""OPNN: an MLP over the field embeddings and their pairwise kernel (outer) products."""
from torch import nn

from recstudio.model.module.interaction import OuterProduct
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.ipnn import IPNN, PNN_PAPER


@register_model("OPNN", category="ctr", paper=PNN_PAPER)
class OPNN(IPNN):
    """Outer-product PNN (Qu et al., ICDM 2016): as :class:`IPNN` with the inner products replaced by the
    outer-product signal of every pair, ``p_ij = sum_{kl} K_ij,kl v_ik v_jl = v_i^T K_ij v_j``
    (:class:`~recstudio.model.module.interaction.OuterProduct`; ``kernel: mat`` a ``d x d`` matrix per pair,
    ``vec`` a diagonal, ``num`` a scalar); ``logit = MLP([v_1; ...; v_F; (p_ij)_{i<j}])``.

    Departures from the paper: the outer product of each pair is contracted with a learned kernel (the
    kernel product of the TOIS 2018 extension, Qu et al., "Product-based Neural Networks for User Response
    Prediction over Multi-field Categorical Data") instead of the ICDM paper's superposition
    ``f_S f_S^T`` of the summed embeddings; the IPNN departures too. No BARS Frappe setting exists for OPNN:
    the defaults are IPNN's (embedding 10, MLP [400, 400, 400], dropout 0.3, embedding regularizer 0.05).

    Args (config keys): those of :class:`IPNN` and ``kernel``; see ``opnn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="OPNN", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**IPNN.option_help, "kernel": "kernel of the pairwise outer products: mat (d x d), vec (d) or num (1)"}

    def product_layer(self) -> nn.Module:
        return OuterProduct(self.num_fields, self.embed_dim, self.cfg("kernel"))
