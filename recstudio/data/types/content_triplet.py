"""ContentTripletDataset: triplet batches carrying their items' content (a ContentStore)."""
from typing import TYPE_CHECKING, Optional

import torch

from recstudio.data.types.triplet import TripletDataset
from recstudio.utils.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recstudio.data.content import ContentStore


class ContentTripletDataset(TripletDataset):
    """A :class:`~recstudio.data.types.triplet.TripletDataset` whose batches also carry ``item_content``
    ``[B, *row_shape]`` and, with negatives, ``neg_item_content`` ``[B, N, *row_shape]`` (the store's dtype),
    read by one gather per batch in the loader (so in its worker processes when ``num_workers > 0``, and
    pinned by ``pin_memory``).

    Args:
        split, phase, **kwargs: as :class:`TripletDataset`.
        content: the :class:`ContentStore`, bound to the split's item ids.

    Example:
        >>> ds = ContentTripletDataset(split, content=store.bind(split.dataset.id_maps["item"].tokens),
        ...                            num_neg=1)                                    # doctest: +SKIP
        >>> next(iter(ds.loader(4096)))["neg_item_content"].shape                     # doctest: +SKIP
        torch.Size([4096, 1, 3, 224, 224])
    """

    def __init__(self, split, phase: str = "train", content: Optional["ContentStore"] = None,
                 **kwargs):
        if content is None:
            raise ConfigError("ContentTripletDataset needs content= (a ContentStore bound to the item ids).")
        content._require_bound()
        if content.num_items != split.dataset.num_items:
            raise DataError(f"the content store is bound to {content.num_items} item ids, the split has "
                            f"{split.dataset.num_items}; bind it to this dataset's item tokens.")
        super().__init__(split, phase, **kwargs)
        self.content = content

    def extend(self, idx: torch.Tensor, batch) -> None:
        super().extend(idx, batch)
        pos, neg = self.content.triplet(batch[self.iid], batch.get("neg_item"), device=torch.device("cpu"))
        batch["item_content"] = pos
        if neg is not None:
            batch["neg_item_content"] = neg
