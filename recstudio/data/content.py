"""Item content (images, embeddings) as one row per item id: the :class:`ContentStore`.

A content store is an array ``[rows, *row_shape]`` of ``uint8`` (e.g. ``3 x 224 x 224`` images),
``float16`` or ``float32`` (e.g. 2,048-d CNN or text embeddings), held in memory or memory-mapped from a
``.npy`` file, plus the original item id of each row. Bound to a dataset's item ids (:meth:`bind`, done
by the model when it builds its context) it answers ``gather(ids)`` for inner item ids of any shape, row 0
(padding) and items without content giving zeros:

* in-memory arrays are laid out by item id once, as a CPU tensor;
* ``to('cuda')`` copies the whole (bound) array onto the GPU when it fits (``max_bytes``, default half of
  the free device memory); otherwise it stays memory-mapped and each gather reads its rows from the map
  (unique rows, in file order) into reused pinned host buffers and copies them to the device
  asynchronously. Without CUDA, ``to('cuda')`` raises a clear error and ``to('cpu')`` is always fine.

Sources: :meth:`from_array`, :meth:`from_npy` (memory-mapped, ids from a ``<stem>.ids.txt`` sidecar or
given), :meth:`from_dataframe` (a column of vectors, or numeric columns) and :meth:`from_image_folder`
(one image per item, named by its id, decoded with Pillow, resized to ``size x size`` or passed through a
torchvision-style ``transform``, written to a ``uint8`` / float ``.npy`` memory map).

Example:
    >>> import numpy as np
    >>> store = ContentStore.from_array(np.eye(3, dtype=np.float32), item_ids=["a", "b", "c"])
    >>> bound = store.bind(np.array(["c", "a"]))          # a dataset whose inner ids 1, 2 are c, a
    >>> bound.gather(torch.tensor([0, 1, 2])).tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
"""
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, DataError

#: dtypes a store may hold
DTYPES = (np.dtype(np.uint8), np.dtype(np.float16), np.dtype(np.float32))
#: checkpoints embed content up to this size; larger memory-mapped content is referenced by path
INLINE_BYTES = 64 * 2 ** 20
#: rows of a memory-mapped gather are copied this many bytes at a time
READ_CHUNK_BYTES = 16 * 2 ** 20
#: rows at least this wide are copied one at a time
WIDE_ROW_BYTES = 64 * 2 ** 10
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
STATE_FORMAT = "recstudio.content/1"


def _ids_sidecar(path: Path) -> Path:
    return path.with_name(path.stem + ".ids.txt")


def _read_ids(source) -> np.ndarray:
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise DataError(f"item id file {p} does not exist; give one original item id per line (the id of "
                            "each row of the content array, in order).")
        if p.suffix == ".npy":
            return np.asarray(np.load(p, allow_pickle=False)).astype(str)
        return np.asarray(p.read_text(encoding="utf-8").splitlines(), dtype=object).astype(str)
    return np.asarray(list(source)).astype(str)


def _copy_rows(src: np.ndarray, rows: np.ndarray, positions: np.ndarray, out: np.ndarray, row_bytes: int) -> None:
    """``out[positions] = src[rows]``, reading ``src`` in row order (sequential for a memory map) a bounded
    chunk at a time; wide rows (images) are copied one by one, which beats numpy's fancy indexing there."""
    if not len(rows):
        return
    order = np.argsort(rows, kind="stable")
    rows, positions = rows[order], positions[order]
    if row_bytes >= WIDE_ROW_BYTES:
        for r, k in zip(rows.tolist(), positions.tolist()):
            out[k] = src[r]
        return
    step = max(1, READ_CHUNK_BYTES // max(row_bytes, 1))
    for lo in range(0, len(rows), step):
        out[positions[lo:lo + step]] = src[rows[lo:lo + step]]


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise DataError(f"item content must be uint8, float16 or float32, got {dtype}; convert it "
                        "(e.g. array.astype('float32')).")
    return dtype


class ContentStore:
    """Item content rows, in memory or memory-mapped, gathered by item id.

    Args:
        array: ``[rows, *row_shape]`` uint8 / float16 / float32 (``np.ndarray`` or ``np.memmap``).
        item_ids: the original item id of each row (strings are compared; ``None``: the rows already
            follow a dataset's inner ids, row 0 being padding, see :meth:`bind`).
        path: the ``.npy`` file the array maps (checkpoints of large stores reference it).

    Raises:
        DataError: an unsupported dtype, a 0-d array, or ``item_ids`` whose length is not the row count
            or that repeat an id.
    """

    def __init__(self, array: np.ndarray, item_ids: Optional[Sequence] = None,
                 path: Optional[Union[str, Path]] = None):
        if array.ndim < 1 or len(array) == 0:
            raise DataError("item content needs an array [rows, ...] with at least one row, got shape "
                            f"{array.shape}.")
        _check_dtype(array.dtype)
        self.array = array if array.ndim > 1 else array.reshape(-1, 1)
        self.item_ids = None if item_ids is None else _read_ids(item_ids)
        if self.item_ids is not None:
            if len(self.item_ids) != len(array):
                raise DataError(f"item content has {len(array)} rows but {len(self.item_ids)} item ids; give one "
                                "id per row.")
            uniq, counts = np.unique(self.item_ids, return_counts=True)
            if (counts > 1).any():
                raise DataError(f"item content repeats item ids {uniq[counts > 1][:5].tolist()}; give one row "
                                "per item.")
        self.path = None if path is None else Path(path).resolve()
        # bound state (see bind)
        self.num_items: Optional[int] = None
        self.rows: Optional[torch.Tensor] = None   # inner item id -> array row, -1: zeros
        self.resident: Optional[torch.Tensor] = None  # [num_items, *row_shape] laid out by item id
        self.device = torch.device("cpu")
        self.missing = 0
        self._pinned = [None, None]
        self._events = [None, None]
        self._turn = 0

    # ---- sources -----------------------------------------------------------------------------
    @classmethod
    def from_array(cls, array, item_ids: Optional[Sequence] = None) -> "ContentStore":
        """An in-memory store of a numpy array or tensor ``[rows, *row_shape]``."""
        if torch.is_tensor(array):
            array = array.detach().cpu().numpy()
        return cls(np.asarray(array), item_ids)

    @classmethod
    def from_npy(cls, path: Union[str, Path], item_ids: Optional[Union[Sequence, str, Path]] = None,
                 mmap: bool = True) -> "ContentStore":
        """A store of a ``.npy`` file, memory-mapped (``mmap=False``: read into memory).

        Args:
            path: the ``.npy`` file ``[rows, *row_shape]``.
            item_ids: original item id of each row, or a file of them (one per line, or a ``.npy``);
                default: the sidecar ``<stem>.ids.txt`` when it exists, else ``None`` (rows already in
                inner-id order with row 0 padding).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"item content file {path} does not exist; write it with numpy.save (one row per item).")
        if path.suffix != ".npy":
            raise DataError(f"item content file {path} is not a .npy file; save the array with numpy.save.")
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if item_ids is None and _ids_sidecar(path).is_file():
            item_ids = _ids_sidecar(path)
        return cls(array, item_ids, path=path if mmap else None)

    @classmethod
    def from_dataframe(cls, frame, item: str, columns: Union[str, Sequence[str]],
                       dtype: str = "float32") -> "ContentStore":
        """An in-memory store from a DataFrame: ``columns`` is one column holding a vector per row (list
        or array), or several numeric columns; ``item`` is the column of original item ids."""
        cols = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in [item, *cols] if c not in frame.columns]
        if missing:
            raise DataError(f"the DataFrame lacks columns {missing}; it has {list(frame.columns)}.")
        if len(cols) == 1 and frame[cols[0]].dtype == object:
            try:
                array = np.stack([np.asarray(v, dtype=dtype) for v in frame[cols[0]]])
            except ValueError as e:
                raise DataError(f"column {cols[0]!r} must hold vectors of one length: {e}") from None
        else:
            array = frame[cols].to_numpy(dtype=dtype)
        return cls(array, frame[item].to_numpy())

    @classmethod
    def from_image_folder(cls, folder: Union[str, Path], out: Union[str, Path], size: int = 224,
                          transform: Optional[Callable] = None, ids: Optional[Iterable[str]] = None,
                          extensions: Sequence[str] = IMAGE_EXTENSIONS) -> "ContentStore":
        """Decode one image per item (file stem = original item id) into a memory-mapped ``.npy``.

        Args:
            folder: the image folder (sub-folders are not read).
            out: the ``.npy`` to write (its ``<stem>.ids.txt`` sidecar gets the ids).
            size: without ``transform``: RGB, resized to ``size x size`` (bilinear), ``uint8 [3, size, size]``.
            transform: a callable PIL image -> array / tensor (torchvision-style, e.g.
                ``transforms.Compose([...])``); its output's dtype (uint8 / float16 / float32; float64 is
                stored as float32) and shape, the same for every image, set the store's.
            ids: only these item ids (default: every image in the folder).
            extensions: file suffixes read as images.

        Raises:
            ConfigError: Pillow is not installed (``pip install pillow``).
            DataError: no images, an unreadable image, or ``transform`` outputs of different shapes.
        """
        from recstudio.data.content_images import write_image_array
        out = write_image_array(folder, out, size=size, transform=transform, ids=ids, extensions=extensions)
        return cls.from_npy(out)

    # ---- facts -------------------------------------------------------------------------------
    @property
    def row_shape(self) -> Tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def torch_dtype(self) -> torch.dtype:
        return {np.dtype(np.uint8): torch.uint8, np.dtype(np.float16): torch.float16,
                np.dtype(np.float32): torch.float32}[self.dtype]

    @property
    def is_mapped(self) -> bool:
        return isinstance(self.array, np.memmap) or (getattr(self.array, "base", None) is not None
                                                     and isinstance(self.array.base, np.memmap))

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def bound_bytes(self) -> int:
        """Bytes of the content laid out by item id (what ``to(device)`` would place there)."""
        self._require_bound()
        return self.num_items * self.row_bytes

    def __repr__(self) -> str:
        where = "bound to %d item ids" % self.num_items if self.num_items else "unbound"
        kind = f"mapped from {self.path}" if self.is_mapped else "in memory"
        return f"ContentStore({len(self.array)} rows x {self.row_shape} {self.dtype}, {kind}, {where}, {self.device})"

    # ---- binding to a dataset's item ids -------------------------------------------------------
    def bind(self, item_tokens: Optional[np.ndarray], num_items: Optional[int] = None) -> "ContentStore":
        """A store laid out by a dataset's inner item ids.

        Args:
            item_tokens: the original id of inner ids ``1..n`` (``ModelContext.item_tokens``); rows are
                matched by id (as strings). With ``item_ids=None`` the array must already have one row per
                inner id (row 0 padding), i.e. ``n + 1`` rows.
            num_items: ``n + 1`` (default ``len(item_tokens) + 1``).

        Raises:
            DataError: no dataset item has a content row, or an id-less array has the wrong row count.
        """
        n = num_items if num_items is not None else len(item_tokens) + 1
        if self.item_ids is None:
            if len(self.array) != n:
                raise DataError(f"item content has {len(self.array)} rows and no item ids, so it must have one row "
                                f"per item id with row 0 padding ({n} rows for this dataset); give item_ids (the "
                                "original id of each row) instead.")
            rows = np.arange(n, dtype=np.int64)
        else:
            pos = {t: k for k, t in enumerate(self.item_ids.tolist())}
            rows = np.full(n, -1, dtype=np.int64)
            rows[1:] = [pos.get(str(t), -1) for t in np.asarray(item_tokens).tolist()]
        rows[0] = -1
        missing = int((rows[1:] < 0).sum())
        if n > 1 and missing == n - 1:
            raise DataError("no item of the dataset has a content row: the content's item ids "
                            f"({self.item_ids[:3].tolist() if self.item_ids is not None else []} ...) do not match the "
                            f"dataset's ({np.asarray(item_tokens)[:3].tolist()} ...).")
        out = ContentStore.__new__(ContentStore)
        out.__dict__.update(self.__dict__)
        out.num_items, out.missing, out.device = n, missing, torch.device("cpu")
        out.rows = torch.as_tensor(rows)
        out.resident = None
        out._pinned, out._events, out._turn = [None, None], [None, None], 0
        if not out.is_mapped:  # in memory anyway: lay it out by item id once
            identity = self.item_ids is None and not np.any(self.array[0])
            out.resident = (torch.from_numpy(np.ascontiguousarray(self.array)) if identity  # already laid out
                            else out._layout(torch.device("cpu")))
        return out

    def _require_bound(self) -> None:
        if self.rows is None:
            raise ConfigError("this ContentStore is not bound to a dataset's item ids; call store.bind(item_tokens) "
                              "(models do it when they build their context).")

    def _layout(self, device: torch.device, chunk_bytes: int = 256 * 2 ** 20) -> torch.Tensor:
        """The content as a tensor ``[num_items, *row_shape]`` on ``device``, filled in chunks."""
        out = torch.zeros((self.num_items, *self.row_shape), dtype=self.torch_dtype, device=device)
        step = max(1, chunk_bytes // max(self.row_bytes, 1))
        for lo in range(0, self.num_items, step):
            ids = torch.arange(lo, min(lo + step, self.num_items))
            out[lo:lo + len(ids)] = self._read(ids).to(device)
        return out

    # ---- placement -----------------------------------------------------------------------------
    def to(self, device: Union[str, torch.device], max_bytes: Optional[int] = None) -> "ContentStore":
        """Keep the content where gathers should deliver it (in place; returns ``self``).

        On a CUDA device the whole bound content is copied there when it takes at most ``max_bytes``
        (default: half of the device's free memory); otherwise it stays in host memory / the memory map
        and each :meth:`gather` stages its rows in pinned memory. ``'cpu'`` drops any device copy.

        Raises:
            ConfigError: a CUDA device without CUDA available.
        """
        self._require_bound()
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"ContentStore.to({str(device)!r}): CUDA is not available on this machine; keep the "
                              "content on 'cpu' (gathers then read from memory or the memory map).")
        if device == self.device:
            return self
        if device.type == "cpu":
            self.device = device
            self.resident = None if self.is_mapped else self._layout(device)
            return self
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if max_bytes is None:
            max_bytes = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else float("inf")
        self.device = device
        if self.bound_bytes <= max_bytes:
            self.resident = self._layout(device)
        elif self.resident is None or self.resident.device.type != "cpu":  # host memory, via pinned buffers
            self.resident = None if self.is_mapped else self._layout(torch.device("cpu"))
        return self

    @property
    def on_device(self) -> bool:
        """Whether the whole content lives on :attr:`device` (``False``: rows are staged per gather)."""
        return self.resident is not None and self.resident.device == self.device

    # ---- gathering -----------------------------------------------------------------------------
    def _read(self, ids: torch.Tensor, out: Optional[np.ndarray] = None) -> torch.Tensor:
        """Rows of inner ids ``ids`` (1-d, CPU) from the array into ``out`` (or a new array), zeros where there
        is none."""
        rows = self.rows[ids].numpy()
        have = rows >= 0
        if out is None:
            out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        if not have.all():
            out[~have] = 0
        idx = np.nonzero(have)[0]
        _copy_rows(self.array, rows[idx], idx, out, self.row_bytes)
        return torch.from_numpy(out)

    def _take_resident(self, flat: torch.Tensor, out: Optional[np.ndarray] = None) -> torch.Tensor:
        """Rows of a CPU-resident layout (numpy copies: torch's CPU indexing of wide rows is several times
        slower)."""
        ids = flat.numpy()
        if out is None:
            out = np.empty((len(ids), *self.row_shape), dtype=self.dtype)
        _copy_rows(self.resident.numpy(), ids, np.arange(len(ids)), out, self.row_bytes)
        return torch.from_numpy(out)

    def gather(self, ids: torch.Tensor, device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
        """Content of inner item ids ``ids`` (any shape) as ``[*ids.shape, *row_shape]`` in the store's dtype,
        on ``device`` (default: the store's). One vectorised gather: pass every id of a batch at once."""
        self._require_bound()
        device = self.device if device is None else torch.device(device)
        shape = tuple(ids.shape)
        flat = ids.reshape(-1)
        if self.resident is not None and self.resident.device.type != "cpu":
            out = self.resident[flat.to(self.resident.device)].view(*shape, *self.row_shape)
            return out if out.device == device else out.to(device)
        flat = flat.cpu()
        take = self._take_resident if self.resident is not None else self._read
        if device.type == "cuda":  # copy the rows straight into a pinned buffer, then to the GPU asynchronously
            return self._staged(flat.numel(), lambda buf: take(flat, buf.numpy()), device, shape)
        out = take(flat).view(*shape, *self.row_shape)
        return out if device.type == "cpu" else out.to(device)

    def _staged(self, n: int, fill, device: torch.device, shape) -> torch.Tensor:
        """``fill`` one of two reused pinned buffers with ``n`` rows, copy it to ``device`` asynchronously (a
        buffer is refilled only after its previous copy has finished)."""
        k = self._turn
        self._turn = 1 - k
        buf = self._pinned[k]
        if buf is None or buf.shape[0] < n:
            buf = torch.empty((n, *self.row_shape), dtype=self.torch_dtype, pin_memory=True)
            self._pinned[k], self._events[k] = buf, None
        elif self._events[k] is not None:
            self._events[k].synchronize()
        staged = buf[:n]
        fill(staged)
        out = staged.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        self._events[k] = event
        return out.view(*shape, *self.row_shape)

    def triplet(self, pos: torch.Tensor, neg: Optional[torch.Tensor] = None,
                device: Optional[Union[str, torch.device]] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Content of a triplet batch's positives ``[B]`` and negatives ``[B, N]`` by one gather:
        ``([B, *row], [B, N, *row])``."""
        if neg is None:
            return self.gather(pos, device), None
        both = self.gather(torch.cat([pos.reshape(-1), neg.reshape(-1).to(pos.device)]), device)
        b = pos.numel()
        return both[:b].view(*pos.shape, *self.row_shape), both[b:].view(*neg.shape, *self.row_shape)

    def chunks(self, chunk_rows: int = 4096, device=None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """``(ids, content)`` over every item id, ``chunk_rows`` at a time (for encoding all items)."""
        self._require_bound()
        for lo in range(0, self.num_items, chunk_rows):
            ids = torch.arange(lo, min(lo + chunk_rows, self.num_items))
            yield ids, self.gather(ids, device)

    # ---- checkpoints ---------------------------------------------------------------------------
    def to_state(self, inline_bytes: int = INLINE_BYTES) -> Dict[str, Any]:
        """Plain types and tensors (``torch.load(weights_only=True)``): the bound content itself when it is
        in memory or at most ``inline_bytes``, else the memory-mapped file's path and the row map."""
        self._require_bound()
        state: Dict[str, Any] = {"format": STATE_FORMAT, "num_items": self.num_items}
        if not self.is_mapped or self.bound_bytes <= inline_bytes or self.path is None:
            state["content"] = (self.resident.cpu() if self.resident is not None
                                else self._layout(torch.device("cpu")))
        else:
            state.update(path=str(self.path), rows=self.rows.clone(), shape=list(self.array.shape),
                         dtype=str(self.dtype))
        return state

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "ContentStore":
        """The bound store :meth:`to_state` saved (re-mapping its file when it was referenced by path)."""
        if state.get("format") != STATE_FORMAT:
            raise DataError(f"not a saved ContentStore (format {state.get('format')!r}, expected {STATE_FORMAT!r}).")
        if "content" in state:
            content = state["content"]
            store = cls(content.numpy())
            return store.bind(None, num_items=int(state["num_items"]))
        path = Path(state["path"])
        if not path.is_file():
            raise DataError(f"the checkpoint's item content is the memory-mapped file {path}, which is not there; "
                            "put the file back at that path (the checkpoint references content too large to embed).")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(array.shape) != list(state["shape"]) or str(array.dtype) != state["dtype"]:
            raise DataError(f"{path} is {array.dtype} {list(array.shape)}, but the checkpoint was trained on "
                            f"{state['dtype']} {state['shape']}; it is not the same content.")
        store = cls(array, path=path)
        store.num_items, store.rows = int(state["num_items"]), torch.as_tensor(state["rows"])
        store.missing = int((store.rows[1:] < 0).sum())
        return store


def as_content_store(source: Any, item_ids: Optional[Sequence] = None) -> ContentStore:
    """A :class:`ContentStore` from a store, a numpy array / tensor, or a path (``.npy`` file, or a folder:
    its ``content.npy`` if present, else its images decoded into ``<folder>/content.npy``).

    Raises:
        DataError: a path that is neither.
    """
    if isinstance(source, ContentStore):
        return source
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return ContentStore.from_array(source, item_ids)
    if isinstance(source, (str, Path, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            npy = p / "content.npy"
            return ContentStore.from_npy(npy, item_ids) if npy.is_file() else ContentStore.from_image_folder(p, npy)
        return ContentStore.from_npy(p, item_ids)
    raise DataError(f"item content must be a ContentStore, an array, a .npy path or an image folder; got "
                    f"{type(source).__name__}.")
