"""Content models: recommenders that read each item's content (image, embedding) from a :class:`ContentStore`.

:class:`ContentRecommender` is a two-tower base whose item side sees ``content(ids)``: the item content
slot of :mod:`recstudio.model.base.context` (``needs: item_content``) filled from, in order,

1. ``content=`` given to the constructor (a :class:`~recstudio.data.content.ContentStore`, an array
   ``[rows, *row_shape]`` with ``content_ids``, or a path);
2. the ``content_path`` key (a ``.npy``, memory-mapped, its ``<stem>.ids.txt`` sidecar or ``content_ids``
   naming the item of each row; or a folder of images named by item id);
3. a float_seq item field (``content_field``), as for any model that needs item content.

The store is bound to the dataset's inner item ids when the context is built, kept in the context (so
checkpoints carry it: embedded when small, else by path) and moved with the model: on a GPU it is resident
when it fits, otherwise rows are gathered per batch from the memory map through pinned memory
(:meth:`ContentStore.to`). A training batch's positives and negatives get their content by **one** gather
(:meth:`ContentStore.triplet`); full ranking encodes every item once per evaluation (cached until the model
trains again).

A subclass implements :meth:`encode_items_with` ``(ids [*], content [*, *row_shape]) -> [*, d]``; content
arrives as float (``uint8`` images scaled to ``[0, 1]``).
"""
from typing import Any, Dict, Optional

import numpy as np
import torch

from recstudio.data.content import ContentStore, as_content_store
from recstudio.model.base.context import FeatureStore
from recstudio.model.base.itemtower import TOWER_HELP, TwoTowerRecommender
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import Option

#: keys every content model has
CONTENT_OPTIONS = {
    "content_path": Option(None, (str,), "item content: a .npy of one row per item (memory-mapped; row ids from "
                           "content_ids or its <stem>.ids.txt sidecar, else rows in inner-id order with row 0 "
                           "padding) or a folder of images named by item id (null: the content= argument or the "
                           "content_field float_seq item field)", nullable=True),
    "content_ids": Option(None, (str,), "file of the original item id of each content_path row, one per line "
                          "(null: the <stem>.ids.txt sidecar)", nullable=True),
}


class ContentDataMixin:
    """The content slot of a model (see the module docstring): the ``content=`` argument, the content keys,
    the bound :class:`ContentStore` (``self.content_store``) and :meth:`content`. Put it before the model's
    base class."""

    needs = frozenset({"item_content"})
    family_options = CONTENT_OPTIONS

    def __init__(self, config: Optional[Dict[str, Any]] = None, dataset_config=None, content: Any = None,
                 **overrides):
        super().__init__(config, dataset_config, **overrides)
        self._content_source = content

    def context_from(self, split):
        source = self._content_source if self._content_source is not None else self.cfg("content_path")
        ctx = super().context_from(split) if source is None else self._context_without_field(split)
        if source is not None:
            ids = self.cfg("content_ids")
            store = as_content_store(source, ids)
            if ids is not None and store.item_ids is None:
                store = ContentStore(store.array, ids, path=store.path)
            ctx.item_content = store.bind(ctx.item_tokens, ctx.num_items)
        elif ctx.item_content is None:
            raise ConfigError(f"{self.model_name} needs item content: pass content= (a ContentStore, array or .npy "
                              "path), set content_path (a .npy of one row per item, or an image folder), or "
                              "content_field (a float_seq item field). See docs/item_content.md.")
        return ctx

    def _context_without_field(self, split):
        """The context without reading a float_seq field (the content comes from elsewhere)."""
        from recstudio.model.base.context import ModelContext, check_needs
        needs = check_needs(self.needs, type(self).__name__)
        ctx = ModelContext.from_split(split, needs - {"item_content"})
        ctx.needs = needs
        return ctx

    def _register_data_buffers(self, meta) -> None:
        if "user_features" in self.needs:
            self.user_feats = FeatureStore(meta.user_fields, meta.user_features)
        if "item_features" in self.needs:
            self.item_feats = FeatureStore(meta.item_fields, meta.item_features)
        content = meta.item_content
        if content is None:
            raise ConfigError(f"{self.model_name} needs item content: the context has none.")
        if not isinstance(content, ContentStore):  # a float_seq field's tensor [num_items, d]
            content = ContentStore.from_array(content).bind(None, num_items=meta.num_items)
            meta.item_content = content
        if content.num_items != meta.num_items:
            raise ConfigError(f"the item content has {content.num_items} item rows, the data {meta.num_items}.")
        self.__dict__["content_store"] = content  # not a module: it holds no parameters

    @property
    def content_shape(self):
        """Shape of one item's content (e.g. ``(2048,)`` or ``(3, 224, 224)``)."""
        return self.content_store.row_shape

    @property
    def content_dim(self) -> int:
        return int(np.prod(self.content_shape))

    @staticmethod
    def _as_float(raw: torch.Tensor) -> torch.Tensor:
        return raw.float() / 255.0 if raw.dtype == torch.uint8 else raw.float()

    def _store_on_device(self) -> ContentStore:
        store = self.content_store
        if store.device != self.device:
            store.to(self.device)
        return store

    def content(self, ids: torch.Tensor) -> torch.Tensor:
        """Float content ``[*ids.shape, *row_shape]`` of item ids, on the model's device."""
        return self._as_float(self._store_on_device().gather(ids, self.device))


class ContentRecommender(ContentDataMixin, TwoTowerRecommender):
    """Two-tower base whose item tower reads the item content (see the module docstring).

    Args:
        config, dataset_config, **overrides: as every model.
        content: the item content (a ContentStore, an array with ``content_ids`` rows, or a path); wins over
            ``content_path``.
    """

    base_name = "ContentTower"
    option_help = dict(TOWER_HELP)
    #: chunk of items encoded at a time for all-item vectors
    encode_chunk = 4096

    def __init__(self, config: Optional[Dict[str, Any]] = None, dataset_config=None, content: Any = None,
                 **overrides):
        super().__init__(config, dataset_config, content=content, **overrides)
        self._vector_cache: Optional[torch.Tensor] = None
        self._stash: Dict[int, Any] = {}

    # ---- item encoding -------------------------------------------------------------------------
    def encode_items_with(self, ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """Item vectors ``[*, d]`` of ids ``[*]`` with their float content ``[*, *row_shape]``."""
        raise ConfigError(f"{type(self).__name__} must define encode_items_with().")

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        held = self._stash.get(id(ids))
        if held is not None and held[0] is ids:   # this batch's positives / negatives, gathered once
            return self.encode_items_with(ids, held[1])
        return self.encode_items_with(ids, self.content(ids))

    def item_vectors(self) -> torch.Tensor:
        """Every item's vector ``[num_items, d]``, encoded ``encode_chunk`` items at a time; cached while the
        model is in eval mode (cleared by ``train()`` and ``load_state_dict``)."""
        if not self.training and self._vector_cache is not None:
            return self._vector_cache
        parts = []
        store = self._store_on_device()
        for ids, raw in store.chunks(self.encode_chunk, self.device):
            parts.append(self.encode_items_with(ids.to(self.device), self._as_float(raw)))
        out = torch.cat(parts)
        if not self.training:
            self._vector_cache = out
        return out

    def train(self, mode: bool = True):
        self._vector_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._vector_cache = None
        return super().load_state_dict(*args, **kwargs)

    def on_train_batch_start(self, batch, batch_idx):
        self._vector_cache = None
        return super().on_train_batch_start(batch, batch_idx)

    # ---- training ------------------------------------------------------------------------------
    def training_loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The two-tower loss, with the content of the batch's positives and negatives gathered at once."""
        self._vector_cache = None
        pos = batch[self.meta.iid_field]
        neg = batch.get("neg_item")
        if "item_content" in batch:  # gathered by the loader (ContentTripletDataset)
            pos_c, neg_c = self._as_float(batch["item_content"]), batch.get("neg_item_content")
            neg_c = None if neg_c is None else self._as_float(neg_c)
        else:
            raw_pos, raw_neg = self._store_on_device().triplet(pos, neg, self.device)
            pos_c, neg_c = self._as_float(raw_pos), None if raw_neg is None else self._as_float(raw_neg)
        self._stash = {id(pos): (pos, pos_c)}
        if neg is not None:
            self._stash[id(neg)] = (neg, neg_c)
        try:
            return super().training_loss(batch)
        finally:
            self._stash = {}

    def _get_dataset_class(self):
        """Memory-mapped content not resident on the model's device is gathered by the training loader (one
        gather per batch, in its worker processes when ``num_workers > 0``); otherwise by the model."""
        store = getattr(self, "content_store", None)
        if self.dataset_type == "triplet" and store is not None and store.is_mapped and store.resident is None:
            from recstudio.data.types.content_triplet import ContentTripletDataset
            return ContentTripletDataset
        return super()._get_dataset_class()

    def _dataset_kwargs(self) -> Dict[str, Any]:
        kwargs = super()._dataset_kwargs()
        if self._get_dataset_class().__name__ == "ContentTripletDataset":
            kwargs["content"] = self.content_store
        return kwargs
