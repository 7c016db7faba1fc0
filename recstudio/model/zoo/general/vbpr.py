"""VBPR: BPR matrix factorisation with a visual (content) factor per item."""
import torch
from torch import nn

from recstudio.model.family.content import ContentRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


class _VBPRQuery(nn.Module):
    """``[gamma_u, theta_u, 1]`` of the batch's users."""

    def __init__(self, uid_field: str, num_users: int, dim: int):
        super().__init__()
        self.uid_field = uid_field
        self.embedding = IdEmbedding(num_users, dim, init="xavier")

    def forward(self, batch):
        u = self.embedding(batch[self.uid_field])
        return torch.cat([u, torch.ones_like(u[..., :1])], -1)


@register_model("VBPR", category="general",
                paper="R. He, J. McAuley. VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback. "
                      "AAAI 2016.")
class VBPR(ContentRecommender):
    """VBPR (He & McAuley, AAAI 2016): BPR-MF plus a content factor. For user ``u`` and item ``i`` with
    content (CNN) features ``f_i``::

        score(u, i) = beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i

    ``gamma`` (``embed_dim``) are the latent factors, ``theta_u`` (``content_embed_dim``) the user's visual
    factors, ``E`` the learned ``content_embed_dim x F`` projection of the content and ``beta'`` the visual
    bias vector; trained with the BPR loss over sampled negatives. The score is one inner product
    ``[gamma_u, theta_u, 1] . [gamma_i, E f_i, beta_i + beta' . f_i]``, so item vectors can be indexed for
    ANN top-k, and an item with content but no interactions still gets ``theta_u . E f_i + beta' . f_i``.

    The content is any :class:`~recstudio.data.content.ContentStore` (``content=``, ``content_path``, or a
    float_seq item field): rows of any shape are flattened (``F`` = their size); ``uint8`` images enter as
    pixels in ``[0, 1]`` (VBPR is meant for pre-extracted CNN features; raw pixels work but are a weak input).

    Departures from the paper: mini-batch Adam instead of SGD with per-parameter lambdas; regularisation is
    the optimizer's ``weight_decay`` (default 0) on every parameter; ``E`` and ``beta'`` start from
    N(0, 0.01^2) (paper: unstated).

    Args (config keys): ``embed_dim``, ``content_embed_dim``, ``sampler``, ``num_neg``, ``loss``; content keys
    ``content_path``, ``content_ids``, ``content_field``; defaults in ``vbpr.yaml``.

    Example:
        >>> from recstudio.data.content import ContentStore
        >>> store = ContentStore.from_npy("item_features.npy")   # + item_features.ids.txt     # doctest: +SKIP
        >>> model = recstudio.get_model("VBPR")(content=store, embed_dim=32)                  # doctest: +SKIP
        >>> model.fit(dataset)                                                                 # doctest: +SKIP
    """

    option_help = {
        **{k: v for k, v in ContentRecommender.option_help.items() if k != "score_func"},
        "embed_dim": "size of the latent factors gamma_u, gamma_i",
        "content_embed_dim": "size of the visual factors theta_u and of the content projection E f_i",
    }

    def _get_loss_func(self):
        if self.cfg("content_embed_dim") < 1 or self.cfg("embed_dim") < 1:
            raise ConfigError(f"VBPR needs embed_dim >= 1 and content_embed_dim >= 1, got {self.cfg('embed_dim')} "
                              f"and {self.cfg('content_embed_dim')}.")
        return super()._get_loss_func()

    def build_blocks(self) -> None:
        k, kc = self.cfg("embed_dim"), self.cfg("content_embed_dim")
        self.item_emb = IdEmbedding(self.meta.num_items, k, init="xavier")
        self.item_bias = IdEmbedding(self.meta.num_items, 1, init="normal", init_std=0.0)
        self.proj = nn.Linear(self.content_dim, kc, bias=False)        # E
        self.content_bias = nn.Linear(self.content_dim, 1, bias=False)  # beta'
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.normal_(self.content_bias.weight, std=0.01)
        super().build_blocks()

    def _get_item_encoder(self) -> nn.Module:
        return nn.Identity()  # items are encoded by encode_items_with

    def _get_query_encoder(self) -> nn.Module:
        dim = self.cfg("embed_dim") + self.cfg("content_embed_dim")
        return _VBPRQuery(self.meta.uid_field, self.meta.num_users, dim)

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def encode_items_with(self, ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        f = content.flatten(ids.dim())
        bias = self.item_bias(ids) + self.content_bias(f)
        return torch.cat([self.item_emb(ids), self.proj(f), bias], -1)
