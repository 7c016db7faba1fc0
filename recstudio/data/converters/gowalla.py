"""Gowalla location check-ins (SNAP; Cho, Myers & Leskovec, KDD 2011).

Raw files: ``loc-gowalla_totalCheckins.txt.gz`` (``user \\t ISO time \\t latitude \\t longitude
\\t location id``) and ``loc-gowalla_edges.txt.gz`` (``user \\t friend``, both directions listed).

Atomic output:

- ``.inter``: ``user_id:token item_id:token timestamp:float`` (a location is an item;
  repeated check-ins are kept, the data config's ``dedup`` decides)
- ``.item``: ``item_id:token latitude:float longitude:float`` (first coordinates seen)
- ``.net``: ``source_id:token target_id:token`` (the friendship edges)
"""
import pyarrow as pa
import pyarrow.compute as pc

from recstudio.data.converters import register_converter
from recstudio.data.converters._common import FLOAT, TOKEN, find_file, frame, read_delimited, table


@register_converter("gowalla")
def convert_gowalla(source, checkins: str = "loc-gowalla_totalCheckins.txt.gz",
                    edges: str = "loc-gowalla_edges.txt.gz"):
    """Convert the SNAP Gowalla check-ins (and friendship edges when present).

    Args:
        source: the folder holding the files.
        checkins: the check-in file's name.
        edges: the edge file's name, or ``None`` to skip the ``.net`` table.

    Returns:
        ``{'inter', 'item'[, 'net']}``.

    Example:
        >>> convert_gowalla("/data/gowalla/raw")["inter"].types         # doctest: +SKIP
    """
    names = ["user_id", "time", "latitude", "longitude", "item_id"]
    tab = read_delimited(find_file(source, checkins), names, "\t", {
        "user_id": pa.string(), "time": pa.timestamp("s", tz="UTC"), "latitude": pa.float64(),
        "longitude": pa.float64(), "item_id": pa.string()})
    seconds = pc.cast(pc.cast(tab["time"], pa.int64()), pa.float64())
    df = frame(tab.append_column("timestamp", seconds).drop_columns(["time"]))
    tables = {
        "inter": table(df, {"user_id": TOKEN, "item_id": TOKEN, "timestamp": FLOAT}),
        "item": table(df.drop_duplicates("item_id"), {"item_id": TOKEN, "latitude": FLOAT, "longitude": FLOAT}),
    }
    edge_file = find_file(source, edges, required=False) if edges else None
    if edge_file is not None:
        net = read_delimited(edge_file, ["source_id", "target_id"], "\t",
                             {"source_id": pa.string(), "target_id": pa.string()})
        tables["net"] = table(frame(net), {"source_id": TOKEN, "target_id": TOKEN})
    return tables
