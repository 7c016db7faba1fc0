"""SASRec: a causal self-attentive encoder of the user's item sequence, trained at every position."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP, SequentialRecommender
from recstudio.model.module.sequence import TransformerSeqEncoder
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class SASRecEncoder(TransformerSeqEncoder):
    """:class:`TransformerSeqEncoder` with the paper's block layout as an option.

    ``norm_first=True`` (the paper, Sec. III-C, and its official code): the input is
    ``sqrt(d) * item embedding + position embedding`` (the official code's scaling; without a
    LayerNorm there, it keeps the shared, output-sized item vectors from being swamped) followed by
    dropout; each sub-layer is ``x + Dropout(g(LayerNorm(x)))`` and the last block's output is
    layer-normalised. ``norm_first=False``: the parent's layout (LayerNorm on the embeddings, post-norm
    blocks, as in RecBole). Masks, padding and position handling are the parent's.
    """

    def __init__(self, num_items: int, dim: int, max_len: int, n_layers: int, n_heads: int, dropout: float,
                 item_embedding: nn.Module, norm_first: bool = True):
        super().__init__(num_items, dim, max_len, n_layers=n_layers, n_heads=n_heads, dropout=dropout, causal=True,
                         item_embedding=item_embedding, padding="left")
        self.norm_first = bool(norm_first)
        if self.norm_first:
            layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=dim, dropout=dropout, activation="relu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
            self.layer_norm = nn.Identity()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if not self.norm_first:
            return super().forward(seq)
        L = seq.size(1)
        if L > self.max_len:
            raise ConfigError(f"SASRecEncoder: input length {L} exceeds max_len={self.max_len}.")
        pos = torch.arange(L, device=seq.device)
        x = self.item_embedding(seq) * self.dim ** 0.5 + self.position_embedding(pos)
        x = self.encoder(self.dropout(x), mask=self.attention_mask(seq))
        return x.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("SASRec", category="seq",
                paper="W.-C. Kang, J. McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.")
class SASRec(SequentialRecommender):
    """SASRec (Kang & McAuley, ICDM 2018).

    The item sequence (the last ``max_seq_len`` items, left-padded so the latest is in the last
    column) is embedded with the *item tower's own table* (shared input/output embeddings, as in the
    paper) plus a learned position embedding, and encoded by ``n_layers`` causal self-attention
    blocks (position ``t`` attends to positions ``<= t`` only). The output ``F_t`` at position ``t``
    predicts item ``s_{t+1}`` with the score ``F_t . M_i`` (``score_func: inner_product``).

    Built on :class:`~recstudio.model.family.sequential.SequentialRecommender` (only the encoder is
    SASRec's own). Training uses every position of a sequence at once (one row per user from
    ``Seq2SeqDataset(mode='causal')``: targets are the inputs shifted by one), not the prefix
    expansion of some libraries. Losses (``loss`` key):

    - ``softmax`` (default): full-softmax cross-entropy over all items at each position — the
      stronger variant used by later work (e.g. RecBole's ``CE``); not the paper's objective.
    - ``bce``: the paper's objective, ``-log σ(F_t·M_{s_{t+1}}) - log σ(-F_t·M_j)`` with ``num_neg``
      (1 in the paper) negatives ``j`` per position, drawn uniformly from the items that are not in the
      user's training window (``sampler: masked_uniform``; the official code excludes the user's whole
      training set, which is the same whenever the history fits in ``max_seq_len + 1`` items).
      ``sampled_softmax`` and the other negative-based losses work too; ``uniform`` /
      ``popularity`` / ``inbatch`` samplers are accepted (negatives that hit an item of the window are
      then ignored by the loss). ``gbce`` with many negatives (e.g. ``num_neg 256``, ``gbce_t 0.75``)
      is gSASRec (Petrov & Macdonald, RecSys 2023).

    Evaluation (and ``recommend``) encode the user's latest ``max_seq_len`` known items and rank with
    the output at the last position, so nothing after the evaluated point is seen.

    Defaults follow the paper's ML-1M setting (ml-100k is a dense movie dataset too): 2 blocks, 1 head,
    dropout 0.2, ``max_seq_len`` 200, Adam with lr 1e-3 and betas (0.9, 0.98), batch 128; use
    ``dropout 0.5`` and ``max_seq_len 50`` for sparse data (Amazon, Steam). Leave-one-out split
    (``split_mode: loo``, the paper's protocol), but ranking against *all* items (the paper ranked
    the target among 100 sampled negatives: use ``eval_protocol sampled`` for that).

    Departures: ``embed_dim`` 64 instead of 50 (the common choice, e.g. RecBole); the default loss is
    the full softmax (above); evaluation is full ranking; regularisation only by dropout (the paper's
    official code has ``l2_emb = 0`` too). ``norm_first: false`` switches to the RecBole-style
    post-norm layout of :class:`TransformerSeqEncoder`.

    Args (config keys): ``embed_dim``, ``n_layers``, ``n_heads``, ``dropout``, ``max_seq_len``,
    ``norm_first``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``
    (item features added to the item embedding), ``adam_betas``; defaults in ``sasrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="SASRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "num_neg": "negatives per position for negative-based losses (bce: 1, as in the paper)",
        "n_layers": "number of self-attention blocks",
        "n_heads": "attention heads per block (embed_dim must be divisible by it)",
        "dropout": "dropout on the embeddings and inside the blocks (paper: 0.2 for ML-1M, 0.5 for sparse data)",
        "max_seq_len": "longest input sequence (the latest items are kept; paper: 200 for ML-1M, 50 for sparse data)",
        "norm_first": "paper's block layout x + Dropout(g(LayerNorm(x))) with a final LayerNorm (true), or "
                      "LayerNorm on the embeddings and post-norm blocks (false, RecBole-style)",
    }

    # ---- hooks -----------------------------------------------------------------------------
    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        return SASRecEncoder(self.num_tokens, c["embed_dim"], c["max_seq_len"], n_layers=c["n_layers"],
                             n_heads=c["n_heads"], dropout=c["dropout"], item_embedding=self.item_encoder,
                             norm_first=c["norm_first"])
