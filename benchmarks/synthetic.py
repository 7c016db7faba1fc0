"""Synthetic interaction data with power-law (Zipf-like) item popularity, for benchmarks.

Never committed: scripts generate it into ``benchmarks/_data/`` (git-ignored).

Example:
    python benchmarks/synthetic.py --users 138000 --items 27000 --interactions 20000000
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv


def power_law_interactions(n_users: int, n_items: int, n_inter: int, alpha: float = 1.0, seed: int = 0):
    """Arrays (user, item, rating, timestamp) with item popularity ~ rank^-alpha and
    user activity ~ rank^-0.6 (heavy-tailed, like MovieLens)."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1) ** alpha
    item_p /= item_p.sum()
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.6
    user_p /= user_p.sum()
    # every user gets at least a few interactions, the rest follow the heavy tail
    base = np.repeat(np.arange(n_users), 5)
    users = np.concatenate([base, rng.choice(n_users, size=n_inter - len(base), p=user_p)])
    items = rng.choice(n_items, size=n_inter, p=item_p)
    items = rng.permutation(n_items)[items]  # popular items are not simply the low ids
    ratings = rng.integers(1, 11, size=n_inter) / 2.0
    times = rng.integers(789_652_009, 1_427_784_002, size=n_inter)
    return users, items, ratings, times


def write_inter(path: Path, users, items, ratings, times) -> Path:
    """Write an atomic ``.inter`` file (tab-separated, typed header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"u": pa.array(users + 1), "i": pa.array(items + 1), "r": pa.array(ratings),
                      "t": pa.array(times)})
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    tmp.rename(path)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=138_000)
    p.add_argument("--items", type=int, default=27_000)
    p.add_argument("--interactions", type=int, default=20_000_000)
    p.add_argument("--out", default="benchmarks/_data/synthetic-20m/synthetic-20m.inter")
    a = p.parse_args()
    t = time.time()
    write_inter(Path(a.out), *power_law_interactions(a.users, a.items, a.interactions))
    print(f"wrote {a.out} in {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
