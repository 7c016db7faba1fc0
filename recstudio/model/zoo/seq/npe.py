"""NPE: ReLU'd user embedding plus the ReLU'd sum of the context items' input embeddings."""
import torch
import torch.nn.functional as F
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


class NPEEncoder(nn.Module):
    """At every position ``t``: ``Dropout(ReLU(U_u)) + Dropout(ReLU(sum_{j=t-c+1..t} W_{s_j}))`` (``c =
    context_len``, input table ``W``; ``[B, L, d]``, zeros at padding)."""

    def __init__(self, num_users: int, num_items: int, dim: int, context_len: int, dropout: float):
        super().__init__()
        self.context_len = context_len
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.context = IdEmbedding(num_items, dim, init="xavier")  # W: input item table
        self.dropout = nn.Dropout(dropout)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        total = self.context(seq).cumsum(1)  # [B, L, d]
        c = self.context_len
        if c < seq.size(1):  # the sum over the latest c items: difference of prefix sums
            total = total - F.pad(total, (0, 0, c, 0))[:, :seq.size(1)]
        u = self.dropout(F.relu(self.user(user))).unsqueeze(1)
        out = u + self.dropout(F.relu(total))
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("NPE", category="seq",
                paper="T. Nguyen, A. Takasu. NPE: Neural Personalized Embedding for Collaborative Filtering. "
                      "IJCAI 2018.")
class NPE(UserSequentialRecommender):
    """NPE (Nguyen & Takasu, IJCAI 2018), in RecBole's sequential form.

    The preference of user ``u`` for item ``i`` in the context of the latest items ``C`` is
    ``< ReLU(U_u) + ReLU(sum_{j in C} W_j), V_i >``: a personal term and a context term built from the
    items' *input* embeddings ``W``, scored against the *output* item table ``V`` (the item tower; ANN
    works). Dropout (``dropout``) on both terms. The context at position ``t`` is the latest
    ``context_len`` items up to ``t`` (RecBole: the whole input window, ``context_len`` = ``max_seq_len``);
    every position of the user's latest ``max_seq_len + 1`` items is a training example.

    Departures from the paper: the context is the preceding items (the paper: the user's other items,
    unordered); the default loss is the full softmax (RecBole's ``CE``; the paper: negative-sampled
    logistic loss, ``loss: bce``); evaluation ranks all items. Defaults are RecBole's (``embed_dim`` 64,
    dropout 0.3, Adam 1e-3, ``max_seq_len`` 50), ``context_len`` 50.

    Args (config keys): ``embed_dim``, ``context_len``, ``dropout``, ``max_seq_len``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields`` (added to the output table ``V``);
    defaults in ``npe.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="NPE", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "context_len": "the latest items summed into the context term (>= max_seq_len: the whole input window)",
        "dropout": "dropout on the ReLU'd user and context terms (RecBole: 0.3)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["context_len"] < 1:
            raise ConfigError(f"NPE context_len must be >= 1, got {c['context_len']}.")
        return NPEEncoder(self.meta.num_users, self.meta.num_items, c["embed_dim"], c["context_len"], c["dropout"])
