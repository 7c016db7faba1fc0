"""CML: collaborative metric learning, users and items as points in a unit ball, ranked by distance."""
import torch

from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.model.loss import build_loss
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import EuclideanScorer
from recstudio.utils.errors import ConfigError


@register_model("CML", category="general",
                paper="C.-K. Hsieh, L. Yang, Y. Cui, T.-Y. Lin, S. Belongie, D. Estrin. Collaborative Metric "
                      "Learning. WWW 2017.")
class CML(TwoTowerRecommender):
    """Collaborative metric learning (Hsieh et al., WWW 2017): ``score(u, i) = -||u - v_i||^2`` (squared
    euclidean distance, ``EuclideanScorer(squared=True)``: decomposable, an L2 ANN index is exact),
    trained with the large-margin hinge loss over ``num_neg`` sampled unobserved items ``k``::

        L = Σ_k [ margin + ||u - v_i||^2 - ||u - v_k||^2 ]_+

    averaged over the negatives (``loss: hinge``), or WARP-weighted by the estimated rank of the
    positive from the first violating negative (``loss: warp``, the paper's rank weighting
    ``log(rank + 1)`` replaced by WARP's harmonic ``L(rank)``). After every optimizer step every user and
    item vector is clipped to the unit ball (``||x|| <= 1``, ``torch.renorm``), the paper's norm
    constraint; vectors start at ``N(0, 1/d)`` and are clipped before training.

    Departures: no covariance (de-correlation) regulariser and no feature-projection loss (the paper's
    optional terms); Adam instead of AdaGrad.

    Args (config keys): ``embed_dim``, ``margin``, ``loss`` (hinge or warp), ``sampler``, ``num_neg``;
    defaults in ``cml.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="CML", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **{k: v for k, v in TOWER_HELP.items() if k != "score_func"},
        "loss": "hinge (mean over the negatives) or warp (the first violating negative, rank-weighted)",
        "margin": "the hinge margin between the squared distances of the positive and a negative",
    }

    def _get_loss_func(self):
        if self.cfg("loss") not in ("hinge", "warp"):
            raise ConfigError(f"CML loss must be 'hinge' or 'warp', got {self.cfg('loss')!r}.")
        if self.cfg("margin") <= 0:
            raise ConfigError(f"CML margin must be > 0, got {self.cfg('margin')}.")
        return build_loss(self.cfg("loss"), context=self._block_context(), margin=self.cfg("margin"))

    def _get_score_func(self):
        return EuclideanScorer(squared=True)

    def _tables(self):
        return self.query_encoder.embedding.embedding.weight, self.item_encoder.embedding.weight

    def build_blocks(self) -> None:
        super().build_blocks()
        std = self.cfg("embed_dim") ** -0.5
        with torch.no_grad():
            for table in self._tables():
                table.normal_(std=std)
                table[0].zero_()
        self.clip_to_unit_ball()

    @torch.no_grad()
    def clip_to_unit_ball(self) -> None:
        for table in self._tables():
            table.copy_(torch.renorm(table, p=2, dim=0, maxnorm=1.0))

    def optimizer_step(self, *args, **kwargs):
        out = super().optimizer_step(*args, **kwargs)
        self.clip_to_unit_ball()
        return out
