"""FM: factorization machines over one embedding per field."""
import torch

from recstudio.model.family.feature import FeatureRecommender
from recstudio.model.registry import register_model


def fm_pairwise(emb: torch.Tensor) -> torch.Tensor:
    """The FM second-order term ``sum_{f<g} <v_f, v_g>`` of ``emb [*, F, d]`` in O(F d):
    ``0.5 * sum_k ((sum_f v_fk)^2 - sum_f v_fk^2)``.

    Example:
        >>> fm_pairwise(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])).item()   # <(1,2),(3,4)> = 11
        11.0
    """
    total = emb.sum(-2)
    return 0.5 * (total.pow(2) - emb.pow(2).sum(-2)).sum(-1)


@register_model("FM", category="ctr",
                paper="S. Rendle. Factorization Machines. ICDM 2010.")
class FM(FeatureRecommender):
    """Factorization machine (Rendle, ICDM 2010) on categorical fields:
    ``y(x) = w_0 + sum_f w_f + sum_{f<g} <v_f, v_g>``, where each field f (user id, item id, user / item
    features, context fields) contributes its first-order weight ``w_f`` and its embedding ``v_f``
    (:class:`~recstudio.model.module.FieldEmbedding`), and the pairwise term is computed in O(F d)
    (the paper's Lemma 3.1). The logit is trained with pointwise binary cross-entropy on click labels.

    Departures from the paper: one field = one one-hot group (a token_seq field's pooled vector counts as
    one field, so pairs inside a field are not modelled), mini-batch Adam instead of SGD / ALS / MCMC,
    and regularisation by an L2 penalty on the embeddings (``embed_reg``, default 0) or the optimizer's weight
    decay, with early stopping on valid AUC (patience 2).
    Defaults follow the BARS / FuxiCTR Frappe_x1 setting (embedding 10, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``embed_reg``, ``feature_fields``, ``label_field``,
    ``label_threshold``, ``loss``; see ``fm.yaml`` and ``run.py -m FM --help``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="FM", dataset="frappe")   # doctest: +SKIP
        >>> metrics["auc"]                                                   # doctest: +SKIP
    """

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return fm_pairwise(emb)
