"""FPMC: matrix factorisation (user -> item) plus factorised first-order Markov chains (last item -> item)."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, item_table
from recstudio.model.registry import register_model


class FPMCEncoder(nn.Module):
    """At every position ``t``: ``[V^UI_u ; V^LI_{s_t}]`` (``[B, L, 2 d]``, zeros at padding)."""

    def __init__(self, num_users: int, num_items: int, dim: int):
        super().__init__()
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.last_item = IdEmbedding(num_items, dim, init="xavier")

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        u = self.user(user).unsqueeze(1).expand(-1, seq.size(1), -1)
        out = torch.cat([u, self.last_item(seq)], -1)
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("FPMC", category="seq",
                paper="S. Rendle, C. Freudenthaler, L. Schmidt-Thieme. Factorizing Personalized Markov Chains for "
                      "Next-Basket Recommendation. WWW 2010.")
class FPMC(UserSequentialRecommender):
    """FPMC (Rendle et al., WWW 2010), with baskets of one item (the sequential setting).

    The score of item ``i`` for user ``u`` whose latest item is ``l`` is
    ``x_{u,l,i} = <V^UI_u, V^IU_i> + <V^IL_i, V^LI_l>``: an MF term and a factorised transition
    ``l -> i`` (the user-independent FMC part; the ``<V^UL_u, V^LU_l>`` term of the paper's tensor
    factorisation cancels in the ranking and is left out, as in the paper). It is one inner product of
    the query ``[V^UI_u ; V^LI_l]`` with the item tower's vector ``[V^IU_i ; V^IL_i]`` (``2 embed_dim``
    wide), so ANN retrieval is exact. Every position ``t`` of the user's latest ``max_seq_len + 1``
    items is a training example (``l = s_t``, target ``s_{t+1}``).

    Loss: ``bpr`` with one negative per position from the items outside the row's window (the paper's
    S-BPR, RecBole's setting); any loss of the sequential base works (e.g. ``loss: softmax``).

    Departures from the paper: SGD with bootstrap sampling is replaced by Adam over mini-batches of
    users (all positions of a row at once); L2 regularisation is ``train.weight_decay``; evaluation ranks
    all items. Defaults: RecBole's (``embed_dim`` 64, BPR, Adam 1e-3), ``max_seq_len`` 50 (how many of
    a user's latest transitions are trained per epoch; RecBole trains all of them).

    Args (config keys): ``embed_dim`` (size of each factor), ``max_seq_len``, ``loss``, ``sampler``,
    ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields`` (added to the item tower's
    ``[V^IU_i ; V^IL_i]``; the last-item table ``V^LI`` is ids only); defaults in ``fpmc.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="FPMC", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "embed_dim": "size of each factor matrix (the query and item vectors are 2 x embed_dim wide)",
        "max_seq_len": "the user's latest transitions trained at once (one prediction reads only the last item)",
    }

    def _get_item_encoder(self) -> nn.Module:
        return item_table(self, 2 * self.cfg("embed_dim"))  # [V^IU_i ; V^IL_i]

    def _get_sequence_encoder(self) -> nn.Module:
        return FPMCEncoder(self.meta.num_users, self.num_tokens, self.cfg("embed_dim"))
