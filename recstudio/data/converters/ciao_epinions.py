"""Ciao and Epinions with trust networks (Tang, Gao, Liu, WSDM 2012; Tang et al., KDD 2012).

Raw files (``ciao.zip`` / ``epinions.zip`` from Jiliang Tang's page, each holding a folder with two
MATLAB v5 files, read with ``scipy.io.loadmat``): ``rating.mat`` (one matrix, rows
``[userid, productid, categoryid, rating, helpfulness]`` for Ciao; Epinions' has no helpfulness column,
although its README, the same text as Ciao's, lists five) and ``trustnetwork.mat`` (rows
``[userid, userid]``: the first user trusts the second). The files are read from the extracted folder, or
straight from a ``.zip`` in it when they were not extracted.

Atomic output:

- ``.inter``: ``user_id:token item_id:token rating:float [helpfulness:float]`` (ratings as given, 1-5 with a
  few 0 in Ciao; every rating row is kept, repeated (user, item) pairs included: the data config's
  ``dedup`` decides; ``helpfulness`` only when the file has that fifth column)
- ``.item``: ``item_id:token category_id:token`` (the category of the product's first rating)
- ``.net``: ``source_id:token target_id:token`` (directed trust: source trusts target)
"""
import io
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import FLOAT, TOKEN, find_file, table
from recstudio.utils.errors import DataError


def _load_matrix(source: Path, filename: str, subdir: Optional[str], columns: int) -> np.ndarray:
    """The one matrix of ``filename`` (extracted below ``source``, or inside a zip there)."""
    from scipy.io import loadmat
    path = find_file(source, filename, subdir, required=False)
    where = str(path)
    if path is not None:
        mat = loadmat(str(path))
    else:
        mat = None
        for archive in sorted(Path(source).rglob("*.zip")):
            with zipfile.ZipFile(archive) as z:
                members = [n for n in z.namelist() if Path(n).name == filename]
                if subdir:
                    members.sort(key=lambda n: Path(subdir).name not in Path(n).parts)
                if members:
                    mat, where = loadmat(io.BytesIO(z.read(members[0]))), f"{archive}:{members[0]}"
                    break
        if mat is None:
            find_file(source, filename, subdir)  # raises, listing what is there
    arrays = [v for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray)]
    if len(arrays) != 1 or arrays[0].ndim != 2 or arrays[0].shape[1] < columns:
        shapes = {k: getattr(v, "shape", None) for k, v in mat.items() if not k.startswith("__")}
        raise DataError(f"{where} should hold one matrix with at least {columns} columns; it holds {shapes}.")
    return arrays[0]


def _ids(col: np.ndarray) -> np.ndarray:
    return col.astype(np.int64).astype(str)


@register_converter("ciao_epinions")
def convert_ciao_epinions(source, subdir: Optional[str] = None):
    """Convert Tang et al.'s Ciao or Epinions ratings and trust network.

    Args:
        source: the folder holding ``rating.mat`` and ``trustnetwork.mat`` (at any depth), or the zip.
        subdir: a sub-folder to look in first (``ciao`` / ``epinions``).

    Returns:
        ``{'inter', 'item', 'net'}``.

    Example:
        >>> len(convert_ciao_epinions("/data/ciao/raw")["inter"])     # doctest: +SKIP
        284086
    """
    r = _load_matrix(Path(source), "rating.mat", subdir, 4)
    inter = pd.DataFrame({"user_id": _ids(r[:, 0]), "item_id": _ids(r[:, 1]), "category_id": _ids(r[:, 2]),
                          "rating": r[:, 3].astype(np.float64)})
    types = {"user_id": TOKEN, "item_id": TOKEN, "rating": FLOAT}
    if r.shape[1] >= 5:
        inter["helpfulness"] = r[:, 4].astype(np.float64)
        types["helpfulness"] = FLOAT
    items = inter.drop_duplicates("item_id")
    t = _load_matrix(Path(source), "trustnetwork.mat", subdir, 2)
    net = pd.DataFrame({"source_id": _ids(t[:, 0]), "target_id": _ids(t[:, 1])})
    return {"inter": table(inter, types),
            "item": table(items, {"item_id": TOKEN, "category_id": TOKEN}),
            "net": table(net, {"source_id": TOKEN, "target_id": TOKEN})}
