"""Dataset types: what one training example is, produced as whole batches by vectorised indexing.

Every type is a :class:`torch.utils.data.Dataset` whose ``__getitem__`` takes a whole index
array and returns a ``dict[str, torch.Tensor]`` batch; ``loader(batch_size, ...)`` gives a
``DataLoader(dataset, sampler=IndexSampler, batch_size=None)``. See ``docs/dataset_types.md``.

Example:
    >>> from recstudio.data.types import DATASET_TYPES, to_device
    >>> train = DATASET_TYPES["triplet"](split, num_neg=1)           # doctest: +SKIP
    >>> for batch in train.loader(4096):  # doctest: +SKIP
    ...     batch = to_device(batch, "cuda")
"""
from recstudio.data.types.als import ALSDataset, AlternatingLoader, CSRRowsDataset
from recstudio.data.types.base import (BatchDataset, EpochLoader, IndexSampler, TorchCSR, csr_gather, csr_to_dense,
                                       gather_windows, to_device)
from recstudio.data.types.evaluation import EvalDataset
from recstudio.data.types.negatives import NegativeSampler
from recstudio.data.types.seq import ITEM_SEQ, SEQ_LEN, SeqDataset
from recstudio.data.types.seq2seq import TARGET_SEQ, Seq2SeqDataset
from recstudio.data.types.triplet import NEG_ITEM, TripletDataset
from recstudio.data.types.user import UserDataset

#: dataset-type name (as a model's registry entry names it) -> class
DATASET_TYPES = {
    "triplet": TripletDataset,
    "user": UserDataset,
    "seq": SeqDataset,
    "seq2seq": Seq2SeqDataset,
    "als": ALSDataset,
}

__all__ = [
    "DATASET_TYPES", "BatchDataset", "EpochLoader", "IndexSampler", "TorchCSR", "to_device", "csr_gather",
    "csr_to_dense", "gather_windows", "NegativeSampler", "TripletDataset", "UserDataset", "SeqDataset",
    "Seq2SeqDataset", "ALSDataset", "AlternatingLoader", "CSRRowsDataset", "EvalDataset",
    "ITEM_SEQ", "SEQ_LEN", "TARGET_SEQ", "NEG_ITEM",
]
