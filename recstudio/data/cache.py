"""The processed-data cache: portable ``.npz`` arrays, never a pickle.

A cache file is named by its key, a hash of the input files' checksums, the
preprocessing config (:data:`~recstudio.data.config.PREPROCESS_KEYS`) and
:data:`FORMAT_VERSION`; the model config never enters it. The key is also stored
inside the file and checked on load. A truncated or corrupted file (zip CRC error,
missing arrays, inconsistent lengths) is reported, deleted and rebuilt, never used.
Writes are atomic (temp file + rename).
"""
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

from recstudio.data.dataset import RecDataset
from recstudio.data.fields import FieldType
from recstudio.data.table import FeatureTable, IdMap
from recstudio.utils.io import atomic_path, file_digest

FORMAT_VERSION = 1
_SEP = "::"
log = logging.getLogger(__name__)


def cache_key(inputs: Dict[str, str], preprocess: dict) -> str:
    """A stable hex key for (input checksums, preprocessing config, format version)."""
    import hashlib
    payload = json.dumps({"format": FORMAT_VERSION, "inputs": inputs, "preprocess": preprocess},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def fingerprint_files(paths: Iterable, memo_path: Optional[Path] = None) -> Dict[str, str]:
    """sha256 of each file, keyed by file name.

    Digests are memoised in ``memo_path`` by (path, size, mtime), so a warm start does not
    re-read large raw files; any change of size or mtime recomputes the digest.
    """
    memo = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
    out, changed = {}, False
    for p in paths:
        p = Path(p)
        st = p.stat()
        entry = memo.get(str(p.resolve()))
        if entry and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns:
            digest = entry["sha256"]
        else:
            digest = file_digest(p)
            memo[str(p.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            changed = True
        out[p.name] = digest
    if changed and memo_path is not None:
        with atomic_path(memo_path) as tmp:
            tmp.write_text(json.dumps(memo, indent=1))
    return out


def _table_arrays(prefix: str, table: FeatureTable, arrays: dict) -> dict:
    for name, col in table.columns.items():
        arrays[f"{prefix}{_SEP}{name}"] = col
    return {"fields": list(table.columns), "types": {k: FieldType(v).value for k, v in table.types.items()},
            "rows": len(table)}


def save_dataset(dataset: RecDataset, path, key: str) -> Path:
    """Write ``dataset`` to ``path`` (``.npz``) atomically, tagged with ``key``."""
    arrays: Dict[str, np.ndarray] = {}
    tables = {"inter": dataset.inter}
    if dataset.user_feat is not None:
        tables["user_feat"] = dataset.user_feat
    if dataset.item_feat is not None:
        tables["item_feat"] = dataset.item_feat
    for s, t in dataset.extra.items():
        tables[f"extra.{s}"] = t
    meta = {"format": FORMAT_VERSION, "key": key, "name": dataset.name,
            "config": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in dataset.config.items()},
            "tables": {n: _table_arrays(n, t, arrays) for n, t in tables.items()},
            "vocabs": list(dataset.id_maps), "field_vocab": dataset.field_vocab,
            "float_transforms": getattr(dataset, "float_transforms", None)}  # [ranker-serving hook]
    for name, m in dataset.id_maps.items():
        arrays[f"vocab{_SEP}{name}"] = m.tokens
    arrays["__meta__"] = np.array(json.dumps(meta, default=str))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return Path(path)


def load_dataset(path, key: str, delete_broken: bool = True) -> Optional[RecDataset]:
    """Load a cached dataset, or return ``None`` if it is missing, stale or broken.

    A stale or broken file is deleted when ``delete_broken`` (the cache's own files), and
    kept otherwise (a file the user saved).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
                raise ValueError(f"stale cache (format {meta.get('format')}, key {meta.get('key')})")
            tables = {}
            for tname, tmeta in meta["tables"].items():
                cols = {f: z[f"{tname}{_SEP}{f}"] for f in tmeta["fields"]}
                if any(len(c) != tmeta["rows"] for c in cols.values()):
                    raise ValueError(f"table {tname} has columns of the wrong length")
                tables[tname] = FeatureTable(cols, {f: FieldType(t) for f, t in tmeta["types"].items()})
            vocabs = {v: IdMap(z[f"vocab{_SEP}{v}"], v) for v in meta["vocabs"]}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        if not delete_broken:
            return None
        log.warning("processed cache %s is unusable (%s); rebuilding it", path, e)
        path.unlink(missing_ok=True)
        return None
    extra = {n.split(".", 1)[1]: t for n, t in tables.items() if n.startswith("extra.")}
    ds = RecDataset(meta["name"], meta["config"], tables["inter"], vocabs, meta["field_vocab"],
                    tables.get("user_feat"), tables.get("item_feat"), extra)
    ds.float_transforms = meta.get("float_transforms")  # [ranker-serving hook]
    return ds
