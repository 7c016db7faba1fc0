"""ICLRec: CL4SRec-style sequence contrast plus contrast with latent intents found by k-means every epoch."""
from typing import Dict

import torch

from recstudio.model.family.sequential import ITEM_SEQ, SequentialRecommender
from recstudio.model.module.seq_blocks import nt_xent
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.cl4srec import CL4SRec, augment
from recstudio.utils.errors import ConfigError


@register_model("ICLRec", category="seq",
                paper="Y. Chen, Z. Liu, J. Li, J. McAuley, C. Xiong. Intent Contrastive Learning for Sequential "
                      "Recommendation. WWW 2022.")
class ICLRec(CL4SRec):
    """ICLRec (Chen et al., WWW 2022): SASRec's encoder and next-item loss plus two contrastive terms.

    At the start of every training epoch the representations ``h_u`` (mean of the encoder's outputs over the
    real positions) of all training sequences are clustered by k-means into ``num_intents`` latent intents
    ``c_1..c_K`` (scikit-learn, seeded by ``seed`` and the epoch) -- the E-step. In training (M-step), two views
    of each sequence are drawn with CL4SRec's crop / mask / reorder augmentations
    (:func:`~recstudio.model.zoo.seq.cl4srec.augment`), and

    ``L = L_next_item + cl_weight * L_SeqCL(z1, z2) + intent_weight * (L_ICL(z1, c_u) + L_ICL(z2, c_u))``

    where ``z`` are the views' mean representations, ``L_SeqCL`` is NT-Xent between the views and
    ``L_ICL(z, c_u) = -log exp(z . c_u / T) / sum_v exp(z . c_v / T)`` contrasts a view with the intent ``c_u``
    of its (unaugmented) sequence against the intents of the other sequences of the batch, other sequences of
    the same intent removed from the negatives (the paper's false-negative mitigation).

    Defaults: SASRec's encoder settings with ``max_seq_len`` 50 and the paper's ``num_intents`` 256 (capped by
    the number of training sequences), ``cl_weight`` 0.1, ``intent_weight`` 0.1, temperature 1, and CL4SRec's
    augmentation ratios; full softmax.

    Departures: the intents come from the mean of the outputs of the current epoch's model (the paper: the same,
    "mean" representation); SASRec's pre-norm encoder; full-softmax next-item loss; the first epoch already uses
    intents (of the initial model; the paper may warm up).

    Args (config keys): CL4SRec's and ``num_intents``, ``intent_weight``; defaults in ``iclrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="ICLRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **CL4SRec.option_help,
        "num_intents": "latent intents (k-means clusters of the training sequences' representations, per epoch)",
        "intent_weight": "weight of the intent contrastive loss",
    }

    def build_blocks(self) -> None:
        if self.cfg("num_intents") < 2:
            raise ConfigError(f"ICLRec num_intents must be >= 2, got {self.cfg('num_intents')}.")
        super().build_blocks()
        self._centroids = None

    def _mean_rep(self, seq: torch.Tensor) -> torch.Tensor:
        valid = (seq != 0).unsqueeze(-1).to(torch.float32)
        return (self.sequence_output(seq) * valid).sum(1) / valid.sum(1).clamp(min=1.0)

    def fused_epoch_blockers(self):
        # it iterates the training loader itself at an epoch's start, which fused epochs hand over as one batch
        return super().fused_epoch_blockers() + ["it reads the training loader's batches at epoch start"]

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        from sklearn.cluster import KMeans
        was = self.training
        self.eval()
        reps = []
        with torch.no_grad():
            for batch in self.trainer.train_dataloader:
                reps.append(self._mean_rep(batch[ITEM_SEQ].to(self.device)).cpu())
        self.train(was)
        x = torch.cat(reps).double().numpy()
        k = min(self.cfg("num_intents"), len(x))
        seed = int(self.config.get("seed") or 0) + int(self.current_epoch)
        km = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed).fit(x)
        self._centroids = torch.as_tensor(km.cluster_centers_, dtype=torch.float32, device=self.device)

    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        loss = SequentialRecommender.training_loss(self, batch)
        c = self.config
        seq = batch[ITEM_SEQ]
        views = [augment(seq, self.mask_token, c["crop_ratio"], c["mask_ratio"], c["reorder_ratio"])
                 for _ in range(2)]
        z1, z2 = (self._mean_rep(v) for v in views)
        if c["cl_weight"]:
            loss = loss + c["cl_weight"] * nt_xent(z1, z2, c["cl_temperature"])
        if c["intent_weight"] and self._centroids is not None:
            with torch.no_grad():
                intent = torch.cdist(self._mean_rep(seq), self._centroids).argmin(1)  # [B]
            cents = self._centroids[intent]  # [B, d]
            same = intent[:, None] == intent[None, :]
            off = same & ~torch.eye(len(intent), dtype=torch.bool, device=seq.device)
            target = torch.arange(len(intent), device=seq.device)
            for z in (z1, z2):
                logits = (z @ cents.t() / c["cl_temperature"]).masked_fill(off, float("-inf"))
                loss = loss + c["intent_weight"] * torch.nn.functional.cross_entropy(logits, target)
        return loss
