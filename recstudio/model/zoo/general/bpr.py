"""BPR: matrix factorisation trained with the Bayesian Personalised Ranking loss."""
from recstudio.model.base.itemtower import TwoTowerRecommender
from recstudio.model.registry import register_model


@register_model("BPR", category="general",
                paper="S. Rendle, C. Freudenthaler, Z. Gantner, L. Schmidt-Thieme. BPR: Bayesian Personalized "
                      "Ranking from Implicit Feedback. UAI 2009.")
class BPR(TwoTowerRecommender):
    """Matrix factorisation ``score(u, i) = p_u . q_i`` trained by maximising
    ``ln sigma(score(u, i) - score(u, j))`` over triples where ``j`` is an item the user has not
    interacted with (Rendle et al., UAI 2009).

    Negatives are drawn uniformly from the user's non-interacted items, afresh every epoch, as in
    the paper's sampling of ``D_S``. Departures from the paper, as in common practice (RecBole):
    mini-batch Adam instead of per-triple SGD with bootstrap sampling, and regularisation through
    the optimizer's weight decay (default 0) instead of per-parameter lambdas.

    Args (config keys): ``embed_dim``, ``num_neg``, ``sampler``, ``loss``, ``score_func``; see
    ``bpr.yaml`` for the defaults and ``run.py -m BPR --help`` for every key.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="BPR", dataset="ml-100k", epochs=5)   # doctest: +SKIP
    """
