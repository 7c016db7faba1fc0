"""ESMM: CTR and CVR towers over shared embeddings, trained on pCTR and pCTCVR = pCTR * pCVR over every row."""
import torch
import torch.nn.functional as F

from recstudio.model.family.multitask import MULTITASK_HELP, MultiTaskFeatureRecommender, Towers
from recstudio.model.registry import register_model
from recstudio.model.zoo.ctr.sharedbottom import DEEP_HELP


def logit_of_product(log_probs: torch.Tensor) -> torch.Tensor:
    """``log p -> log(p / (1 - p))``, stable for log p <= 0 (clamped just below 0, so p = 1 gives a large
    finite logit)."""
    lp = log_probs.clamp(max=-1e-7)
    return lp - torch.log(-torch.expm1(lp))


@register_model("ESMM", category="ctr",
                paper="X. Ma, L. Zhao, G. Huang, Z. Wang, Z. Hu, X. Zhu, K. Gai. Entire Space Multi-Task Model: An "
                      "Effective Approach for Estimating Post-Click Conversion Rate. SIGIR 2018.")
class ESMM(MultiTaskFeatureRecommender):
    """Entire Space Multi-task Model (Ma et al., SIGIR 2018). The tasks are ordered events (impression ->
    click -> conversion; ``tasks`` lists click then click-and-convert): tower t, on the shared field
    embeddings ``x = [v_1; ...; v_F]``, gives the conditional logit ``a_t`` of ``p(y_t = 1 | y_{t-1} = 1, x)``
    (the CTR tower, the CVR tower), and the model's task probabilities over the entire space are the
    products ``p_t = prod_{s<=t} sigmoid(a_s)``: ``pCTR`` and ``pCTCVR = pCTR * pCVR``. The loss is
    ``sum_t weight_t * BCE(p_t, y_t)`` over every row (the paper's ``L = l(y, pCTR) + l(y & z, pCTCVR)``),
    so the CVR tower is never trained on the clicked rows alone. :meth:`conditional_logits` gives
    ``a_t`` (``sigmoid(a_2)`` is pCVR). The task logits are ``logit(p_t)``, computed from log-probabilities.

    The second task's label must be the joint event (``rating >= 5`` with a first task ``rating >= 4``;
    ``buy`` where a buy implies a click): the model cannot predict a second label above the first.
    More than two tasks chain the same way (ESM^2-style).

    Departures: towers are MLPs with batch norm / dropout (the paper: [360, 200, 80, 2] with ReLU);
    embedding 16 and towers [256, 128, 64] are our defaults.

    Args (config keys): ``tasks``, ``rank_task``, ``embed_dim``, ``tower_hidden``, ``dropout``,
    ``batch_norm``, ``activation``, ``embed_reg``, ``feature_fields``, ``loss``; see ``esmm.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="ESMM", dataset="ml-1m")   # doctest: +SKIP
        >>> metrics["auc@love"]                                             # pCTCVR's AUC, doctest: +SKIP
    """

    option_help = {**MULTITASK_HELP, **DEEP_HELP}

    def build_interaction(self) -> None:
        self.towers = Towers(self.num_tasks, self.num_fields * self.embed_dim, self.cfg("tower_hidden"), self.cfg)

    def conditional_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """``[*, F, d] -> [*, T]``: ``a_t``, the logit of task t given task t-1 (t = 1: its plain logit)."""
        x = emb.flatten(-2)
        return self.towers([x] * self.num_tasks)

    def task_logits(self, emb: torch.Tensor) -> torch.Tensor:
        return logit_of_product(F.logsigmoid(self.conditional_logits(emb)).cumsum(-1))
