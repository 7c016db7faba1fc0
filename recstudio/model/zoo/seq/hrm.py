"""HRM: two-layer pooling of the user vector and the latest items' vectors."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, causal_windows
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError

POOLINGS = ("max", "average")


class HRMEncoder(nn.Module):
    """At every position ``t``: layer 1 pools the embeddings of items ``t-k+1..t`` (``k = high_order``; the real
    ones only), layer 2 pools ``[Dropout(u); that]``; output the layer-2 vector (``[B, L, d]``, zeros at
    padding). Dropout on the user vector and on the layer-2 inputs."""

    def __init__(self, item_embedding: nn.Module, num_users: int, dim: int, high_order: int, pool_1: str,
                 pool_2: str, dropout: float):
        super().__init__()
        self.item_embedding, self.high_order, self.pool_1, self.pool_2 = item_embedding, high_order, pool_1, pool_2
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _pool(x: torch.Tensor, valid: torch.Tensor, how: str) -> torch.Tensor:
        """Pool ``x [..., k, d]`` over ``k`` where ``valid [..., k]``."""
        if how == "max":
            return x.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(-2)
        v = valid.unsqueeze(-1).to(x.dtype)
        return (x * v).sum(-2) / v.sum(-2).clamp(min=1.0)

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        B, L = seq.shape
        pad = seq == 0
        win = causal_windows(seq, self.high_order)  # [B, L, k]; the last slot is position t itself
        valid = (win != 0) | pad.unsqueeze(-1)  # padding positions: any finite value, zeroed below
        items = self._pool(self.item_embedding(win), valid, self.pool_1)  # [B, L, d]
        u = self.dropout(self.user(user)).unsqueeze(1).expand(B, L, -1)
        both = self.dropout(torch.stack([u, items], 2))  # [B, L, 2, d]
        out = self._pool(both, torch.ones(both.shape[:-1], dtype=torch.bool, device=seq.device), self.pool_2)
        return out.masked_fill(pad.unsqueeze(-1), 0.0)


@register_model("HRM", category="seq",
                paper="P. Wang, J. Guo, Y. Lan, J. Xu, S. Wan, X. Cheng. Learning Hierarchical Representation "
                      "Model for Next Basket Recommendation. SIGIR 2015.")
class HRM(UserSequentialRecommender):
    """HRM (Wang et al., SIGIR 2015), in the sequential form of RecBole (the latest items as the basket).

    Layer 1 aggregates the embeddings of the latest ``high_order`` items (``pooling_1``: ``max`` or
    ``average``) into a transaction vector; layer 2 aggregates it with the user vector ``u``
    (``pooling_2``), giving the hybrid representation that scores item ``i`` by ``<., v_i>`` with the shared
    item embeddings (ANN works). Dropout (``dropout``) on the user vector and the layer-2 inputs. Every
    position ``t`` of the user's latest ``max_seq_len + 1`` items is a training example (items
    ``t-high_order+1..t`` -> ``s_{t+1}``).

    Departures from the paper: baskets are the latest ``high_order`` single items (the paper: the previous
    transaction); the default loss is the full softmax (RecBole's ``CE``; the paper's softmax over all
    items with negative sampling is ``loss: sampled_softmax``); Adam instead of SGD; evaluation ranks all
    items. Defaults are RecBole's (``embed_dim`` 64, ``high_order`` 2, max / max pooling, dropout 0.2,
    Adam 1e-3); ``max_seq_len`` 50 bounds how many of a user's latest positions are trained.

    Args (config keys): ``embed_dim``, ``high_order``, ``pooling_1``, ``pooling_2``, ``dropout``,
    ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``, ``score_func``, ``gbce_t``, ``item_feature_fields``;
    defaults in ``hrm.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="HRM", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "max_seq_len": "the user's latest positions trained at once, and the longest evaluation input (one "
                       "prediction reads only the last `high_order` items)",
        "high_order": "the latest items pooled into the transaction vector (RecBole: 2)",
        "pooling_1": "layer-1 pooling over the items: max or average",
        "pooling_2": "layer-2 pooling over [user; transaction]: max or average",
        "dropout": "dropout on the user vector and the layer-2 inputs (RecBole: 0.2)",
    }

    def _get_sequence_encoder(self) -> nn.Module:
        c = self.config
        if c["high_order"] < 1:
            raise ConfigError(f"HRM high_order must be >= 1, got {c['high_order']}.")
        for key in ("pooling_1", "pooling_2"):
            if c[key] not in POOLINGS:
                raise ConfigError(f"HRM {key} must be one of {POOLINGS}, got {c[key]!r}.")
        return HRMEncoder(self.item_encoder, self.meta.num_users, c["embed_dim"], c["high_order"], c["pooling_1"],
                          c["pooling_2"], c["dropout"])
