"""ENMF: efficient neural matrix factorisation, a whole-data (non-sampling) weighted squared loss."""
from typing import Dict

import torch
from torch import nn

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.registry import register_model
from recstudio.model.scorer.neural import GMFScorer
from recstudio.utils.errors import ConfigError


@register_model("ENMF", category="general",
                paper="C. Chen, M. Zhang, Y. Zhang, Y. Liu, S. Ma. Efficient Neural Matrix Factorization without "
                      "Sampling for Recommendation. ACM TOIS 2020.")
class ENMF(TwoTowerRecommender):
    """ENMF, user-based (Chen et al., TOIS 2020): ``score(u, i) = h^T (p_u ⊙ q_i)``, trained on every
    (user, item) cell of the batch's users without sampling. With ``c0`` the weight of the unobserved
    cells (``negative_weight``) and ``R_u`` the user's training items, the weighted squared loss
    ``Σ_u Σ_i c_ui (y_ui - s_ui)^2`` (``c = 1`` on observed cells, ``c0`` elsewhere) is, up to a
    constant, computed in ``O((|B| + N) d^2)``::

        L = c0 Σ_{d,d'} (Σ_i q_id q_id') (Σ_{u in B} p_ud p_ud') h_d h_d'
            + Σ_{u in B} Σ_{i in R_u} ((1 - c0) s_ui^2 - 2 s_ui)
            + reg_weight (||P|| + ||Q||)

    One training example is a user (``dataset_type: user``, the user's training row); dropout
    (``dropout``) is applied to ``p_u`` in the observed term, as in the paper's code and RecBole.

    Departures: batches of users each epoch (the paper's user-based variant); RecBole 1.2.1 iterates
    interactions, so a user's loss is repeated once per interaction within an epoch. Adam instead of
    the paper's Adagrad.

    Args (config keys): ``embed_dim``, ``dropout``, ``negative_weight``, ``reg_weight``; defaults in
    ``enmf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="ENMF", dataset="ml-100k")     # doctest: +SKIP
    """

    dataset_type = "user"
    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k not in ("score_func", "loss", "sampler", "num_neg",
                                                            "sampler_alpha")},
        "dropout": "dropout on the user vector in the observed-cells term",
        "negative_weight": "weight c0 of every unobserved (user, item) cell",
        "reg_weight": "weight of reg_weight * (||P|| + ||Q||) (Frobenius norms of the whole tables)",
    }

    def _dataset_kwargs(self):
        return {"dense": False}

    def _get_score_func(self) -> nn.Module:
        scorer = GMFScorer(self.cfg("embed_dim"))
        with torch.no_grad():  # RecBole's xavier-normal init of the h layer (1 x d)
            scorer.h.normal_(std=(2.0 / (self.cfg("embed_dim") + 1)) ** 0.5)
        return scorer

    def build_blocks(self) -> None:
        c = self.config
        if not 0.0 <= c["dropout"] < 1.0 or not 0.0 <= c["negative_weight"] <= 1.0 or c["reg_weight"] < 0:
            raise ConfigError("ENMF needs 0 <= dropout < 1, 0 <= negative_weight <= 1 and reg_weight >= 0; got "
                              f"{c['dropout']}, {c['negative_weight']}, {c['reg_weight']}.")
        super().build_blocks()
        self.dropout = nn.Dropout(c["dropout"])

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        c0 = self.cfg("negative_weight")
        users = batch[self.meta.uid_field]
        user_table = self.query_encoder.embedding.embedding.weight
        item_table = self.item_encoder.embedding.weight
        p = self.encode_query(batch)                                   # [B, d]
        ptr, items = batch["history_indptr"], batch["history_indices"]
        row = torch.repeat_interleave(torch.arange(len(users), device=p.device), ptr[1:] - ptr[:-1],
                                      output_size=len(items))
        pos = self.score_func(self.dropout(p)[row], self.encode_items(items))   # [nnz]
        h = self.score_func.h
        whole = c0 * ((item_table.t() @ item_table) * (p.t() @ p) * torch.outer(h, h)).sum()
        observed = ((1.0 - c0) * pos.square() - 2.0 * pos).sum()
        return whole + observed + self.cfg("reg_weight") * (user_table.norm() + item_table.norm())
