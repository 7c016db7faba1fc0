"""A two-tower recommender whose item tower is an MLP over the item content only (cold items get scores)."""
import torch
from torch import nn

from recstudio.model.family.content import ContentRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("ContentTwoTower", category="general",
                paper="X. Yi, J. Yang, L. Hong, D. Z. Cheng, L. Heik, D. Kang, A. Kumthekar, Z. Zhao, L. Wei, E. Chi. "
                      "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations. RecSys 2019.")
class ContentTwoTower(ContentRecommender):
    """A two-tower model with a content item tower (the item side of Yi et al., RecSys 2019, fed by item
    content): the item vector is ``MLP(f_i)`` over the item's content alone, the user vector an id
    embedding, and the score their inner product (or cosine, ``score_func``)::

        score(u, i) = e_u . MLP(f_i)

    Because no item id enters the item tower, an item with content but no interactions is scored exactly as
    a trained one, which is what the cold-start-item protocol (``recstudio.eval.cold_items``) measures. The
    content is any :class:`~recstudio.data.content.ContentStore`, rows flattened (uint8 images as pixels in
    [0, 1]; for images prefer pre-extracted CNN features).

    Departures from Yi et al.: users are id embeddings (their user tower reads features and history);
    negatives are sampled by ``sampler`` with the ``loss`` key (default BPR over one uniform negative)
    instead of in-batch softmax with streaming-frequency correction (``sampler: inbatch`` with ``loss:
    infonce`` gives the in-batch form without the correction).

    Args (config keys): ``embed_dim`` (the last tower size and the user embedding), ``hidden`` (hidden sizes
    of the item MLP), ``dropout``, ``score_func``, ``loss``, ``sampler``, ``num_neg``; content keys
    ``content_path``, ``content_ids``, ``content_field``; defaults in ``contenttwotower.yaml``.

    Example:
        >>> model = recstudio.get_model("ContentTwoTower")(content="item_text.npy")     # doctest: +SKIP
        >>> model.fit(cold_split.split); cold_split.evaluate(model)                     # doctest: +SKIP
    """

    option_help = {
        **ContentRecommender.option_help,
        "embed_dim": "size of the user embedding and of the item tower's output",
        "hidden": "hidden sizes of the item tower's ReLU MLP over the content ([] : one linear layer)",
        "dropout": "dropout after each hidden layer of the item tower",
    }

    def build_blocks(self) -> None:
        hidden, drop = list(self.cfg("hidden")), self.cfg("dropout")
        if not 0.0 <= drop < 1.0 or any(int(h) < 1 for h in hidden):
            raise ConfigError(f"ContentTwoTower needs 0 <= dropout < 1 and positive hidden sizes, got {drop} and "
                              f"{hidden}.")
        self.tower = MLP([self.content_dim, *hidden, self.cfg("embed_dim")], activation="relu", dropout=drop)
        super().build_blocks()

    def _get_item_encoder(self) -> nn.Module:
        return nn.Identity()  # items are encoded by encode_items_with

    def encode_items_with(self, ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        out = self.tower(content.flatten(ids.dim()))
        return out.masked_fill((ids == 0).unsqueeze(-1), 0.0)  # the padding item has no vector
