"""gSASRec: SASRec trained with many sampled negatives and the generalised BCE (gBCE) loss."""
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.sasrec import SASRec
from recstudio.utils.errors import ConfigError


@register_model("gSASRec", category="seq",
                paper="A. Petrov, C. Macdonald. gSASRec: Reducing Overconfidence in Sequential Recommendation "
                      "Trained with Negative Sampling. RecSys 2023.")
class gSASRec(SASRec):
    """gSASRec (Petrov & Macdonald, RecSys 2023): SASRec's causal self-attention encoder
    (:class:`~recstudio.model.zoo.seq.sasrec.SASRecEncoder`) trained with ``num_neg`` uniformly sampled
    negatives per position (256 in the paper) and the generalised binary cross-entropy

    ``gBCE = -(1/(K+1)) (beta log σ(s+) + Σ_k log(1 - σ(s-_k)))``,
    ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = K / (N - 1)``

    (:class:`~recstudio.model.loss.gbce.GBCELoss`; ``gbce_t`` is the calibration ``t``: 0 = BCE, 1 = full
    calibration). With many negatives and ``t`` near 1, the model's σ estimates the full-catalogue
    probability and the overconfidence of BCE with few negatives disappears; the paper reports gSASRec
    matching or beating BERT4Rec / full-softmax SASRec at a fraction of the cost.

    Everything but the objective is SASRec's (see its docstring: shared input/output item embeddings,
    learned positions, pre-norm blocks, every position trained at once, full-ranking evaluation).

    Defaults are the paper's ML-1M configuration (official code): ``embed_dim`` 128, 2 blocks, 1 head,
    dropout 0.5, ``max_seq_len`` 200, 256 negatives, ``t`` = 0.75, Adam lr 1e-3, batch 128.

    Departures from the paper: input and output item embeddings are shared (the paper's code can use a
    separate output table, ``reuse_item_embeddings``; sharing is SASRec's choice and keeps the model
    ANN-searchable); negatives are drawn from the items outside the row's window (``masked_uniform``)
    instead of all items; epochs are full passes over the users (the paper caps an epoch at 100
    batches); evaluation ranks all items.

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``dropout``, ``max_seq_len``,
    ``norm_first``, ``loss`` (gbce; any other loss makes it plain SASRec), ``sampler``, ``num_neg``,
    ``score_func``, ``gbce_t``, ``item_feature_fields``; defaults in ``gsasrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="gSASRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SASRec.option_help,
        "loss": "training loss: gbce (gSASRec's generalised BCE; other losses turn it into plain SASRec)",
        "num_neg": "sampled negatives per position (paper: 256)",
        "gbce_t": "gBCE calibration t in [0, 1] (paper: 0.75; 0 = plain BCE, 1 = fully calibrated)",
    }

    def build_blocks(self) -> None:
        if self.cfg("loss") != "gbce":
            raise ConfigError(f"gSASRec is SASRec trained with loss gbce; got loss {self.cfg('loss')!r}. "
                              "Use model SASRec for other losses.")
        super().build_blocks()
