"""RP3beta: a popularity-penalised three-step random walk on the user-item graph."""
import scipy.sparse as sp

from recstudio.model.family.neighbourhood import RANDOM_WALK_HELP, ItemItemRecommender, parse_positive_int, \
    random_walk_weights
from recstudio.model.registry import register_model


@register_model("RP3beta", category="general", aliases=("RP3b",),
                paper="B. Paudel, F. Christoffel, C. Newell, A. Bernstein. Updatable, Accurate, Diverse, and "
                      "Scalable Recommendations for Interactive Applications. ACM TiiS 7(1), 2017.")
class RP3beta(ItemItemRecommender):
    """RP3beta (Paudel et al., 2017): the probability of a random walk user -> item -> user -> item, with
    transition probabilities raised to ``alpha`` and the arrival item's popularity penalised by ``beta``,

        ``W_ij = (P_iu^alpha P_ui^alpha)_ij / |U_j|^beta``,  ``P_ui = x_ui / |I_u|``,  ``P_iu = x_ui / |U_i|``

    on the binary train matrix, ``W_ii = 0``; each row ``i`` keeps its ``k`` largest entries and (``normalize``)
    is divided by its sum. ``score(u, .) = x_u W``. Closed form (no epochs); computed ``block_entries //
    num_items`` rows at a time and held sparse (``num_items x k`` nonzeros).

    Departures from the paper: the top-k pruning and row normalisation follow the implementation of
    Dacrema et al. (RecSys 2019, "Are we really making much progress?"), whose defaults are used
    (``alpha = 1``, ``beta = 0.6``, ``k = 100``, ``normalize = true``). RecBole has no RP3beta.

    Args (config keys):
        k: entries kept per row of ``W``.
        alpha: exponent of the transition probabilities.
        beta: popularity penalty exponent (0 gives P3alpha).
        normalize: row-normalise ``W`` after pruning.
        block_entries: memory bound of one dense block.

    Example:
        >>> model, metrics = recstudio.run(model="RP3beta", dataset="ml-100k", beta=0.3)     # doctest: +SKIP
    """

    option_help = {**RANDOM_WALK_HELP, "beta": "popularity penalty: W_ij is divided by |U_j|^beta"}

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        return random_walk_weights(X, parse_positive_int(self.cfg("k"), "k", "RP3beta"), float(self.cfg("alpha")),
                                   float(self.cfg("beta")), bool(self.cfg("normalize")), int(self.cfg("block_entries")))
