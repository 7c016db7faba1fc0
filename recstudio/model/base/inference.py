"""The user-facing inference API every trained model has: ``recommend``, ``recommend_all``,
``similar_items`` (a mixin of :class:`~recstudio.model.base.recommender.Recommender`).

Everything here takes and returns ORIGINAL ids (the ids of the data the model was trained on) and
works on a freshly loaded model (``recstudio.load``): the id maps, every user's history and the
train popularity come from the model's :class:`~recstudio.model.base.meta.DataMeta`.
See ``docs/serving.md``.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from recstudio.utils.errors import ConfigError, DataError

#: what ``recommend(unknown=...)`` may say about users the model has never seen
UNKNOWN_POLICIES = ("error", "popular")
#: file formats of ``recommend_all`` (chosen from the path's suffix unless given)
EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class UnknownIdsError(DataError):
    """Ids that are not in the model's vocabulary (``ids``: some of them, ``count``: how many)."""

    def __init__(self, message: str, ids: Sequence, count: int):
        super().__init__(message)
        self.ids, self.count = list(ids), int(count)


class InferenceMixin:
    """Top-k lists, bulk export and item-to-item similarity in original ids.

    The host class provides ``meta`` (a DataMeta), ``config``, ``device``, ``topk_items`` and
    ``_eval_seq_len``; item-tower models also ``item_vectors``, ``score_func`` and ``ann_index``.

    Example:
        >>> model = recstudio.load("bpr.pt")                                       # doctest: +SKIP
        >>> items, scores = model.recommend(["196", "new-user"], k=5, unknown="popular")
        >>> model.recommend_all("top10.parquet", k=10)
        >>> similar, sims = model.similar_items(["50"], k=5)
    """

    # ---- helpers --------------------------------------------------------------------------
    def _require_meta(self):
        if getattr(self, "meta", None) is None:
            raise DataError("the model has not been fitted or loaded yet; call fit() or recstudio.load().")
        return self.meta

    def _check_k(self, k: Any, limit: int, what: str = "the number of items") -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise DataError(f"k must be an integer between 1 and {what} ({limit}), got {k!r}.")
        if not 1 <= int(k) <= limit:
            raise DataError(f"k must be between 1 and {what} ({limit}), got {k}.")
        return int(k)

    def _encode_ids(self, kind: str, originals: List) -> np.ndarray:
        """Inner ids of original ``kind`` ids (``"user"`` / ``"item"``); 0 where unknown (the caller
        decides what that means). The id maps are cached per DataMeta (their hash index is built once)."""
        if not originals:
            return np.zeros(0, np.int64)
        cache = getattr(self, "_id_map_cache", None)
        if cache is None or cache[0] is not self.meta:
            cache = (self.meta, {"user": self.meta.user_map, "item": self.meta.item_map})
            self._id_map_cache = cache
        return cache[1][kind].encode(originals, missing="zero")

    @staticmethod
    def _unknown_error(kind: str, originals: Sequence, inner: np.ndarray, known: int, hint: str) -> UnknownIdsError:
        bad_mask = inner == 0
        bad = [originals[i] for i in np.flatnonzero(bad_mask)[:10]]
        count = int(bad_mask.sum())
        more = f" and {count - len(bad)} more" if count > len(bad) else ""
        return UnknownIdsError(f"unknown {kind} ids {bad}{more}: they are not among the {known} {kind}s the model "
                               f"was trained on (after filtering). {hint}", bad, count)

    def _decode_items(self, ids: np.ndarray) -> np.ndarray:
        """Original item ids of inner ids ``[B, k]``; ``None`` where ``ids <= 0`` (padding)."""
        tokens = self.meta.item_tokens
        out = np.empty(ids.shape, dtype=tokens.dtype if tokens.dtype.kind != "U" else object)
        valid = ids > 0
        out[valid] = tokens[ids[valid] - 1]
        if not valid.all():
            out = out.astype(object)
            out[~valid] = None
        return out

    @torch.no_grad()
    def _topk_inner(self, users: torch.Tensor, k: int, exclude_seen: bool) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores [B, k], inner item ids [B, k])`` of inner user ids (-1 / -inf pad short lists)."""
        if self.training:
            self.eval()
        scores, ids = self.topk_items(self.query_batch(users), k, exclude_history=exclude_seen)
        return scores.float().cpu().numpy(), ids.cpu().numpy()

    def popular_items(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` items with the most train interactions (ties: lower inner id first).

        Returns:
            ``(inner item ids [k], train interaction counts [k])``.
        """
        meta = self._require_meta()
        cache = getattr(self, "_popular_cache", None)
        if cache is None or cache[0] is not meta:
            counts = meta.item_counts.detach().cpu().numpy().astype(np.float64)[1:]
            order = np.argsort(-counts, kind="stable") + 1
            cache = (meta, order, counts[order - 1].astype(np.float32))
            self._popular_cache = cache
        return cache[1][:k], cache[2][:k]

    def known_users(self, users: Sequence) -> np.ndarray:
        """Boolean mask: which of the original ``users`` the model was trained on.

        Example:
            >>> model.known_users(["196", "nobody"])                                     # doctest: +SKIP
            array([ True, False])
        """
        self._require_meta()
        return self._encode_ids("user", list(users)) > 0

    # ---- queries ----------------------------------------------------------------------------
    def query_batch(self, users: torch.Tensor) -> Dict[str, torch.Tensor]:
        """An evaluation-style batch for inner user ids, with their full known history."""
        from recstudio.data.types.base import csr_gather, gather_windows
        m = self.meta
        indptr, indices = csr_gather(m.history_indptr, m.history_indices, users)
        batch = {m.uid_field: users, "history_indptr": indptr, "history_indices": indices}
        seq_len = self._eval_seq_len()
        if seq_len is not None:  # left padding, latest item last, as in EvalDataset
            lo, hi = m.history_indptr[users], m.history_indptr[users + 1]
            batch["item_seq"], batch["seq_len"] = gather_windows(m.history_indices, lo, hi, seq_len, "left")
            if m.history_times is not None:  # a time-aware sequential model: the items' timestamps too
                batch["time_seq"] = gather_windows(m.history_times, lo, hi, seq_len, "left")[0]
        return {key: v.to(self.device) for key, v in batch.items()}

    def recommend(self, users: Sequence, k: int = 10, exclude_seen: bool = True, unknown: str = "error"):
        """Top-``k`` items for users given in their ORIGINAL ids.

        Args:
            users: original user ids (duplicates allowed: they get identical rows; empty: 0 rows).
            k: list length (1 .. number of items).
            exclude_seen: mask every item the user interacted with in the data (train, valid and
                test). A user with fewer than ``k`` unseen items gets a shorter list, padded with
                item ``None`` and score ``-inf``.
            unknown: what to do with users the model was not trained on: ``"error"`` (default)
                raises a DataError naming them; ``"popular"`` gives each of them the ``k`` most
                popular items (most train interactions, ties by lower inner id) and, as scores,
                those items' train interaction counts (nothing is excluded for them: they have no
                history).

        Returns:
            ``(items, scores)``: numpy arrays ``[len(users), k]``, items in original ids.

        Raises:
            DataError: unknown users (with ``unknown="error"``), ``k`` out of range, or a model
                that was neither fitted nor loaded.
            ConfigError: an ``unknown`` policy other than ``"error"`` / ``"popular"``.

        Example:
            >>> items, scores = model.recommend(["196", "186"], k=10)                  # doctest: +SKIP
            >>> items, scores = model.recommend(["someone-new"], k=10, unknown="popular")
        """
        meta = self._require_meta()
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown={unknown!r} is not a policy for unknown users; use one of "
                              f"{', '.join(map(repr, UNKNOWN_POLICIES))}.")
        k = self._check_k(k, meta.num_items - 1)
        users = list(users)
        inner = self._encode_ids("user", users)
        missing = inner == 0
        if missing.any() and unknown == "error":
            raise self._unknown_error("user", users, inner, meta.num_users - 1,
                                      "Pass unknown='popular' to give unknown users the most popular items "
                                      "instead (the server: \"unknown\": \"popular\").")
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        known = np.flatnonzero(~missing)
        if known.size:
            uniq, inverse = np.unique(inner[known], return_inverse=True)
            top_s, top_i = self._topk_inner(torch.as_tensor(uniq), k, exclude_seen)
            ids[known], scores[known] = top_i[inverse], top_s[inverse]
        if missing.any():
            pop_ids, pop_counts = self.popular_items(k)
            ids[missing], scores[missing] = pop_ids, pop_counts
        return self._decode_items(ids), scores

    def recommend_all(self, path: Union[str, Path], k: int = 10, batch_size: Optional[int] = None,
                      exclude_seen: bool = True, format: Optional[str] = None, progress: bool = True) -> Path:
        """Write the top-``k`` items of EVERY user to a CSV or Parquet file, streamed in user chunks.

        Columns ``user, item, rank, score`` in original ids, ``rank`` 1 = best; a user with fewer
        than ``k`` rankable items gets fewer rows. Memory stays ``O(batch_size x num_items)``:
        each chunk is scored, written (a Parquet row group / CSV block) and dropped. The file is
        written under a temporary name and renamed at the end, so ``path`` never holds a partial
        export (an interrupted run leaves any previous file untouched).

        Args:
            path: the output file (parent folders are created).
            k: rows per user (1 .. number of items).
            batch_size: users scored at once (default: the ``eval_batch_size`` config key).
            exclude_seen: mask every item the user interacted with in the data.
            format: ``"csv"`` or ``"parquet"``; default from the suffix (``.csv``, ``.parquet``, ``.pq``).
            progress: show a tqdm progress bar over users.

        Returns:
            ``path`` as a :class:`~pathlib.Path`.

        Raises:
            ConfigError: an unknown format, or a suffix that names none and no ``format``.
            DataError: ``k`` or ``batch_size`` out of range.

        Example:
            >>> model.recommend_all("top10.parquet", k=10)                              # doctest: +SKIP
            >>> pd.read_parquet("top10.parquet").head()
        """
        import pyarrow as pa
        from tqdm.auto import tqdm

        from recstudio.utils.io import atomic_path
        meta = self._require_meta()
        path = Path(path)
        fmt = _export_format(path, format)
        k = self._check_k(k, meta.num_items - 1)
        batch_size = self.config["eval_batch_size"] if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer (users per chunk), got {batch_size!r}.")
        schema = pa.schema([("user", _arrow_type(meta.user_tokens)), ("item", _arrow_type(meta.item_tokens)),
                            ("rank", pa.int32()), ("score", pa.float32())])
        n_users = meta.num_users - 1
        with atomic_path(path, suffix=path.suffix) as tmp, _table_writer(tmp, fmt, schema) as write:
            with tqdm(total=n_users, desc=f"recommend_all -> {path.name}", unit="user", disable=not progress) as bar:
                for start in range(1, n_users + 1, int(batch_size)):
                    users = torch.arange(start, min(start + int(batch_size), n_users + 1))
                    scores, ids = self._topk_inner(users, k, exclude_seen)
                    valid = ids > 0
                    rows, cols = np.nonzero(valid)
                    write(pa.Table.from_arrays([
                        pa.array(meta.user_tokens[users.numpy()[rows] - 1], type=schema.field("user").type),
                        pa.array(meta.item_tokens[ids[valid] - 1], type=schema.field("item").type),
                        pa.array(cols.astype(np.int32) + 1, type=pa.int32()),
                        pa.array(scores[valid], type=pa.float32())], schema=schema))
                    bar.update(len(users))
        return path

    # ---- item-to-item -----------------------------------------------------------------------
    def supports_similar_items(self) -> bool:
        """Whether :meth:`similar_items` works: item vectors and a decomposable score function."""
        return bool(getattr(self, "supports_ann", False)) and bool(
            getattr(getattr(self, "score_func", None), "decomposable", False))

    def similar_items(self, items: Sequence, k: int = 10):
        """The ``k`` items most similar to each given item, the item itself excluded.

        Similarity is the model's score function's metric on item vectors (``ip``: inner product,
        ``cosine``: cosine, ``l2``: negative squared distance; higher = more similar), searched with
        the model's ANN index when it has one (the ``ann`` key; see :meth:`configure_ann`) and with
        exact torch top-k otherwise (:mod:`recstudio.ann`).

        Args:
            items: original item ids (duplicates allowed; empty gives 0 rows).
            k: neighbours per item (1 .. number of items - 1).

        Returns:
            ``(items, scores)``: numpy arrays ``[len(items), k]``, items in original ids (an ANN
            index that finds fewer than ``k`` pads with ``None`` / ``-inf``).

        Raises:
            ConfigError: a model without item vectors or with a non-decomposable score function.
            DataError: unknown items, or ``k`` out of range.

        Example:
            >>> neighbours, sims = model.similar_items(["50", "181"], k=5)               # doctest: +SKIP
        """
        meta = self._require_meta()
        self._require_similar_items()
        k = self._check_k(k, meta.num_items - 2, "the number of items - 1")
        items = list(items)
        inner = self._encode_ids("item", items)
        if (inner == 0).any():
            raise self._unknown_error("item", items, inner, meta.num_items - 1,
                                      "Only items of the training data have vectors.")
        if not items:
            return self._decode_items(np.full((0, k), -1, np.int64)), np.zeros((0, k), np.float32)
        uniq, inverse = np.unique(inner, return_inverse=True)
        with torch.no_grad():
            if self.training:
                self.eval()
            index = self._similarity_index()
            vectors = self.score_func.item_vector(self.encode_items(torch.as_tensor(uniq, device=self.device)))
            exclude = (torch.arange(len(uniq) + 1), torch.as_tensor(uniq))
            scores, ids = index.search(vectors, k, exclude=exclude)
        ids, scores = ids.cpu().numpy()[inverse], scores.float().cpu().numpy()[inverse]
        return self._decode_items(ids), scores

    def _require_similar_items(self) -> None:
        if self.supports_similar_items():
            return
        if not getattr(self, "supports_ann", False):
            why = f"it is a {self.base_name} model, which has no item vectors"
        else:
            name = getattr(self.score_func, "registry_name", "") or type(self.score_func).__name__
            why = f"its score function {name!r} is not decomposable"
        raise ConfigError(f"similar_items() needs item vectors and a decomposable score function, and "
                          f"{self.model_name} cannot: {why}. Item-tower and two-tower models support it (python run.py "
                          "--list-models shows each model's base) with a decomposable score function "
                          "(inner_product, cosine, euclidean).")

    def _similarity_index(self):
        """The model's ANN index when it has one, else an exact index over the current item vectors."""
        if self.config.get("ann") is not None:
            return self.ann_index()
        from recstudio.ann import build_index
        vectors = self.score_func.item_vector(self.item_vectors())[1:]
        ids = torch.arange(1, self.meta.num_items, device=vectors.device)
        return build_index("exact", vectors.detach(), metric=self.score_func.metric, ids=ids)

    def configure_ann(self, name: Optional[str]) -> None:
        """Answer top-k (``recommend``, ``similar_items``) from ANN index ``name`` (``flat``, ``ivf``,
        ``hnsw``; ``None``: exact torch top-k), built now over the current item vectors.

        Raises:
            ConfigError: a model without item vectors, a non-decomposable score function, or an
                unknown index name.

        Example:
            >>> model.configure_ann("hnsw")                                                # doctest: +SKIP
        """
        self._require_meta()
        if name is not None:
            from recstudio.model.base.options import TRAIN_OPTIONS
            from recstudio.model.scorer import require_decomposable
            choices = TRAIN_OPTIONS["ann"].choices
            if name not in choices:
                raise ConfigError(f"unknown ANN index {name!r}; use one of {', '.join(choices)} (or none).")
            if not getattr(self, "supports_ann", False):
                raise ConfigError(f"ann={name!r} needs item vectors, which {self.model_name} (a {self.base_name} "
                                  "model) does not have; serve it without an ANN index.")
            require_decomposable(self.score_func, f"ann={name!r}")
        self.config["ann"] = name
        if getattr(self, "supports_ann", False):
            self._ann_index = None
            if name is not None:
                with torch.no_grad():
                    self.ann_index()


def _export_format(path: Path, fmt: Optional[str]) -> str:
    if fmt is None:
        fmt = EXPORT_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError(f"cannot tell the export format of {path} from its suffix {path.suffix!r}; "
                              f"name it .csv or .parquet, or pass format='csv' / 'parquet'.")
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"unknown export format {fmt!r}; use 'csv' or 'parquet'.")
    return fmt


def _arrow_type(tokens: np.ndarray):
    """The Arrow type of an id vocabulary (integers stay integers, anything else is a string)."""
    import pyarrow as pa
    if tokens.dtype.kind in "iu":
        return pa.int64()
    if tokens.dtype.kind == "f":
        return pa.float64()
    return pa.string()


class _table_writer:
    """Context manager yielding ``write(table)`` that appends to a CSV or Parquet file (pyarrow)."""

    def __init__(self, path: Path, fmt: str, schema):
        self.path, self.fmt, self.schema = path, fmt, schema
        self.writer = None

    def __enter__(self):
        if self.fmt == "parquet":
            import pyarrow.parquet as pq
            self.writer = pq.ParquetWriter(str(self.path), self.schema)
        else:
            import pyarrow.csv as pacsv
            self.writer = pacsv.CSVWriter(str(self.path), self.schema)
        return self.writer.write_table

    def __exit__(self, *exc):
        self.writer.close()
        return False


__all__: List[str] = ["InferenceMixin", "UnknownIdsError", "UNKNOWN_POLICIES", "EXPORT_FORMATS"]
