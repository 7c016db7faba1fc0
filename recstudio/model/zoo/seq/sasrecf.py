"""SASRecF: SASRec whose input items are their id embedding fused with their feature embeddings."""
from torch import nn

from recstudio.model.module.seq_blocks import FeatureConcatInput, ItemFieldEmbeddings, resolve_item_fields
from recstudio.model.registry import register_model
from recstudio.model.zoo.seq.sasrec import SASRec, SASRecEncoder


@register_model("SASRecF", category="seq",
                paper="W.-C. Kang, J. McAuley. Self-Attentive Sequential Recommendation. ICDM 2018 (feature "
                      "variant: RecBole's SASRecF, Zhao et al., RecBole, CIKM 2021).")
class SASRecF(SASRec):
    """SASRecF: SASRec (Kang & McAuley, ICDM 2018) with item features fused into the input sequence, the
    feature variant of RecBole (Zhao et al., CIKM 2021; there is no separate paper).

    Each input item ``i`` is ``W [e_i ; f_i^1 ; ... ; f_i^F] + b``: its id embedding concatenated with one
    embedding per field of ``feature_fields`` (token: embedding; token_seq, e.g. genres: mean of its tokens'
    embeddings; float: ``value * w + b``) and projected back to ``d``
    (:class:`~recstudio.model.module.seq_blocks.FeatureConcatInput`). The fused sequence goes through
    SASRec's encoder (:class:`~recstudio.model.zoo.seq.sasrec.SASRecEncoder`: ``sqrt(d)`` scaling,
    positions, causal blocks); the output at position ``t`` scores the next item against the item *id*
    embeddings only (as RecBole's SASRecF), so the output side stays an id table.

    Training, losses and evaluation are SASRec's / the sequential base's. The base's
    ``item_feature_fields`` (features *summed* into the id embedding, on the scored side too) remains
    available beside ``feature_fields``.

    Defaults: SASRec's (``sasrec.yaml``: 2 pre-norm blocks, 1 head, dropout 0.2, ``max_seq_len`` 200, full
    softmax, Adam 1e-3 with betas (0.9, 0.98)) plus ``feature_fields: [class]`` (ml-100k's genres,
    RecBole's ``selected_features``), so the effect of the features is measured against SASRec itself.

    Departures from RecBole's SASRecF: SASRec's pre-norm block layout and ``sqrt(d)`` input scaling
    (``norm_first: false`` gives RecBole's post-norm layout); training at every position at once.

    Args (config keys): SASRec's (``embed_dim``, ``n_layers``, ``n_heads``, ``dropout``, ``max_seq_len``,
    ``norm_first``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``)
    and ``feature_fields``; defaults in ``sasrecf.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SASRecF", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SASRec.option_help,
        "feature_fields": "item feature fields concatenated with the id embedding of every input item and "
                          "projected to embed_dim (at least one; ml-100k: class = genres)",
    }

    @property
    def needs(self) -> frozenset:
        return frozenset({"item_features"})

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        fields = ItemFieldEmbeddings(self.item_feats, resolve_item_fields(self, c["feature_fields"], "feature_fields"),
                                     c["embed_dim"], self.meta.num_items)
        return SASRecEncoder(self.num_tokens, c["embed_dim"], c["max_seq_len"], n_layers=c["n_layers"],
                             n_heads=c["n_heads"], dropout=c["dropout"],
                             item_embedding=FeatureConcatInput(self.item_encoder, fields),
                             norm_first=c["norm_first"])
