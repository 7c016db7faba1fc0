"""P3alpha: a three-step random walk on the user-item graph with powered transition probabilities."""
import scipy.sparse as sp

from recstudio.model.family.neighbourhood import RANDOM_WALK_HELP, ItemItemRecommender, parse_positive_int, \
    random_walk_weights
from recstudio.model.registry import register_model


@register_model("P3alpha", category="general", aliases=("P3a",),
                paper="C. Cooper, S. H. Lee, T. Radzik, Y. Siantos. Random Walks in Recommender Systems: Exact "
                      "Computation and Simulations. WWW 2014 (Companion).")
class P3alpha(ItemItemRecommender):
    """P3alpha (Cooper et al., 2014): the probability of a random walk user -> item -> user -> item, with
    transition probabilities raised to ``alpha``,

        ``W_ij = (P_iu^alpha P_ui^alpha)_ij``,  ``P_ui = x_ui / |I_u|``,  ``P_iu = x_ui / |U_i|``

    on the binary train matrix, ``W_ii = 0``; each row ``i`` keeps its ``k`` largest entries and (``normalize``)
    is divided by its sum. ``score(u, .) = x_u W``. Closed form (no epochs); computed ``block_entries //
    num_items`` rows at a time and held sparse.

    Departures from the paper: the top-k pruning and optional row normalisation follow the implementation
    of Dacrema et al. (RecSys 2019), whose defaults are used (``alpha = 1``, ``k = 100``, ``normalize =
    false``). RecBole has no P3alpha.

    Args (config keys):
        k: entries kept per row of ``W``.
        alpha: exponent of the transition probabilities.
        normalize: row-normalise ``W`` after pruning.
        block_entries: memory bound of one dense block.

    Example:
        >>> model, metrics = recstudio.run(model="P3alpha", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = dict(RANDOM_WALK_HELP)

    def item_weights(self, X: sp.csr_matrix) -> sp.spmatrix:
        return random_walk_weights(X, parse_positive_int(self.cfg("k"), "k", "P3alpha"), float(self.cfg("alpha")),
                                   0.0, bool(self.cfg("normalize")), int(self.cfg("block_entries")))
