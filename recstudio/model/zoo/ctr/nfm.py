"""NFM: bi-interaction pooling of the field embeddings followed by an MLP."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import MLP_HELP, mlp_tower
from recstudio.model.registry import register_model


def bi_interaction(emb: torch.Tensor) -> torch.Tensor:
    """``sum_{f<g} v_f * v_g`` of ``emb [*, F, d]`` -> ``[*, d]``, in O(F d).

    Example:
        >>> bi_interaction(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))
        tensor([[3., 8.]])
    """
    return 0.5 * (emb.sum(-2).pow(2) - emb.pow(2).sum(-2))


@register_model("NFM", category="ctr",
                paper="X. He, T.-S. Chua. Neural Factorization Machines for Sparse Predictive Analytics. SIGIR 2017.")
class NFM(FeatureRecommender):
    """Neural FM (He & Chua, SIGIR 2017): ``logit = w_0 + sum_f w_f + MLP(f_BI)`` with the bi-interaction
    pooling ``f_BI = sum_{f<g} v_f * v_g`` (a ``d``-vector, computed in O(F d)).

    Departures from the paper: no dropout on the bi-interaction vector itself (dropout after each hidden
    layer), optional batch norm in the MLP, an L2 penalty on the embeddings (``embed_reg``), Adam with early
    stopping on valid AUC. Defaults follow BARS / FuxiCTR NFM_frappe_x1_012 (embedding 10, MLP
    [400, 400, 400], no batch norm, dropout 0.4, embedding regularizer 1e-4, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``,
    ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``nfm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="NFM", dataset="frappe")   # doctest: +SKIP
    """

    option_help = {**FEATURE_HELP, **MLP_HELP, "mlp_hidden": "hidden layer sizes of the MLP over the bi-interaction vector"}

    def build_interaction(self) -> None:
        self.mlp = mlp_tower(self, self.embed_dim)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(bi_interaction(emb)).squeeze(-1)
