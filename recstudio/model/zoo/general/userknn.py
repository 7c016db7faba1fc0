"""UserKNN: user-based top-k neighbourhood collaborative filtering with sparse similarities."""
from typing import Any, Dict

import torch

from recstudio.model.base.towerfree import TowerFreeRecommender
from recstudio.model.family.neighbourhood import KNN_HELP, SparseMatrix, binary_matrix, knn_similarity, \
    parse_positive_int
from recstudio.model.registry import register_model


@register_model("UserKNN", category="general",
                paper="J. Herlocker, J. Konstan, A. Borchers, J. Riedl. An Algorithmic Framework for Performing "
                      "Collaborative Filtering. SIGIR 1999; asymmetric cosine: F. Aiolli. Efficient Top-N "
                      "Recommendation for Very Large Scale Binary Rated Datasets. RecSys 2013.")
class UserKNN(TowerFreeRecommender):
    """User-based KNN on the binary train matrix ``X`` (users x items):

        ``s_uv = g_uv / (d_uv + shrink + 1e-6)``,  ``g_uv = |I_u & I_v|`` (items in common)

    with ``d_uv = sqrt(|I_u| |I_v|)`` (cosine), ``|I_v|^alpha |I_u|^(1-alpha)`` (asymmetric cosine, ``v`` the
    neighbour) or ``|I_u| + |I_v| - g_uv`` (jaccard); ``s_uu = 0``. Each user ``u`` keeps the ``k`` most similar
    users ``N_k(u)`` and ``score(u, i) = sum_{v in N_k(u)} s_uv x_vi``. Both the neighbour weights ``S``
    (``num_users x k``) and ``X`` are sparse buffers (saved in checkpoints); the similarities are computed
    ``block_entries // num_users`` users at a time, so no dense users x users matrix is formed.

    The model is user-id based: a user's neighbours come from the train matrix, and their train rows are
    what is aggregated; the history of the evaluation phase only masks seen items (as in RecBole's
    ``knn_method: user``), so ``recommend`` for a user reflects the train data.

    Departures from RecBole's ItemKNN with ``knn_method: user`` (same defaults ``k = 100``, ``shrink = 0``,
    cosine): none in the model; asymmetric cosine and jaccard are added.

    Args (config keys):
        k: neighbours per user.
        shrink: added to the denominator of every similarity.
        similarity: ``cosine``, ``asymmetric_cosine`` or ``jaccard``.
        asymmetric_alpha: ``alpha`` of asymmetric cosine (0.5 = cosine).
        block_entries: memory bound of one dense similarity block.

    Example:
        >>> model, metrics = recstudio.run(model="UserKNN", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    fit_mode = "closed_form"
    option_help = dict(KNN_HELP)

    def build_blocks(self) -> None:
        m, n = self.meta.num_users, self.meta.num_items
        self.neighbours = SparseMatrix(m, m, keep_rows=True)  # S[u, v]: weight of neighbour v for user u
        self.interactions = SparseMatrix(m, n)                 # X, right-multiplied by S's rows

    def fit_closed_form(self, split) -> None:
        X = binary_matrix(split.matrix("train"))
        W = knn_similarity(X.T, parse_positive_int(self.cfg("k"), "k", "UserKNN"), float(self.cfg("shrink")),
                           self.cfg("similarity"), float(self.cfg("asymmetric_alpha")),
                           int(self.cfg("block_entries")))
        self.neighbours.set(W.T)  # column u of W holds u's neighbours: S = W^T
        self.interactions.set(X)

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> Any:
        rows = self.neighbours.dense_rows(batch[self.meta.uid_field])
        return self.interactions.right_multiply(rows)

    def score_all_candidates(self, batch, state: Any) -> torch.Tensor:
        return state.clone()

    def score_candidates(self, batch, state: Any, items: torch.Tensor) -> torch.Tensor:
        return state.gather(1, items.long()) if items.dim() == 2 else state.gather(1, items.long()[:, None])[:, 0]

    def score(self, batch, items: torch.Tensor) -> torch.Tensor:
        return self.score_candidates(batch, self.prepare_scoring(batch), items)
