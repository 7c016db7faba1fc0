"""DeepStyle: item style = projected content minus its category's embedding, plus a latent item factor."""
import torch
from torch import nn

from recstudio.model.family.content import ContentRecommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.module.features import FeatureEncoder
from recstudio.model.registry import register_model
from recstudio.model.scorer.simple import InnerProductScorer
from recstudio.utils.errors import ConfigError


@register_model("DeepStyle", category="general",
                paper="Q. Liu, S. Wu, L. Wang. DeepStyle: Learning User Preferences for Visual Recommendation. "
                      "SIGIR 2017.")
class DeepStyle(ContentRecommender):
    """DeepStyle (Liu, Wu & Wang, SIGIR 2017): an item's *style* is its visual (content) representation with
    its category's representation subtracted, and a user's preference is an inner product with the style
    plus a latent item factor::

        score(u, i) = p_u . (E f_i - l_{c_i} + q_i)

    ``f_i`` is the item content, ``E`` a learned linear projection to ``embed_dim``, ``l_c`` the embedding
    of category ``c`` (the ``category_field`` item feature: a token field, or a token_seq field whose
    categories are averaged), ``q_i`` the item's latent factor and ``p_u`` the user's; trained with BPR
    over sampled negatives. The item vector ``E f_i - l_{c_i} + q_i`` is decomposable (ANN works), and an
    item without interactions is still scored through its content and category.

    Departures from the paper: the CNN whose last layer gives ``E f_i`` is not trained end to end; the
    content is pre-extracted (any :class:`~recstudio.data.content.ContentStore`; uint8 images enter as
    pixels in [0, 1]) and ``E`` is a learned linear map. Items with several categories (ml-1m genres) use the
    mean of their category embeddings (the paper's items have one). Mini-batch Adam instead of SGD;
    regularisation is the optimizer's ``weight_decay``.

    Args (config keys): ``embed_dim``, ``category_field``, ``sampler``, ``num_neg``, ``loss``; content keys
    ``content_path``, ``content_ids``, ``content_field``; defaults in ``deepstyle.yaml``.

    Example:
        >>> model = recstudio.get_model("DeepStyle")(content="item_features.npy",
        ...                                          category_field="genre")       # doctest: +SKIP
        >>> model.fit(dataset)                                                      # doctest: +SKIP
    """

    needs = frozenset({"item_content", "item_features"})
    option_help = {
        **{k: v for k, v in ContentRecommender.option_help.items() if k != "score_func"},
        "category_field": "item feature (token or token_seq) holding each item's category, whose embedding is "
                          "subtracted from the projected content",
    }

    def build_blocks(self) -> None:
        m, k, name = self.meta, self.cfg("embed_dim"), self.cfg("category_field")
        spec = m.item_fields.get(name)
        if spec is None or spec.type not in ("token", "token_seq"):
            tokens = [n for n, s in m.item_fields.items() if s.type in ("token", "token_seq")]
            raise ConfigError(f"DeepStyle: category_field {name!r} is not a token / token_seq item feature of the "
                              f"data; its token item features are {tokens}. Set category_field to one of them.")
        self.item_emb = IdEmbedding(m.num_items, k, init="xavier")
        self.proj = nn.Linear(self.content_dim, k, bias=False)
        self.category_emb = FeatureEncoder({name: (spec.type, spec.size)}, k)
        super().build_blocks()

    def _get_item_encoder(self) -> nn.Module:
        return nn.Identity()  # items are encoded by encode_items_with

    def _get_score_func(self) -> nn.Module:
        return InnerProductScorer()

    def encode_items_with(self, ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        name = self.cfg("category_field")
        style = self.proj(content.flatten(ids.dim())) - self.category_emb({name: self.item_feats[name][ids]})
        return style + self.item_emb(ids)
