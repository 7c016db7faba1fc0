"""ANN index speed and recall: build time, top-100 search with history exclusion, recall@100 vs exact.

Shapes: ml-1m-like (3,706 items x 64, 6,040 queries) and ml-20m-like (27,000 items x 64,
a 20,000-query sample). Items are clustered (like trained embeddings); ~165 excluded items per query.

Usage:
    python benchmarks/ann.py
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recstudio.ann import build_index, faiss_available  # noqa: E402


def make(n_items, n_queries, dim=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(64, dim, generator=g)
    items = centers[torch.randint(0, 64, (n_items,), generator=g)] + 0.5 * torch.randn(n_items, dim, generator=g)
    queries = centers[torch.randint(0, 64, (n_queries,), generator=g)] + 0.5 * torch.randn(n_queries, dim, generator=g)
    lens = torch.randint(20, 310, (n_queries,), generator=g)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)])
    indices = torch.randint(0, n_items, (int(indptr[-1]),), generator=g)
    return items, queries, (indptr, indices)


def run(n_items, n_queries, label):
    items, queries, exclude = make(n_items, n_queries)
    ref = None
    print(f"== {label}: {n_items} items x 64, {n_queries} queries, top-100, "
          f"{exclude[1].numel() / n_queries:.0f} excluded per query ==")
    for name, params in (("exact", {}), ("flat", {}), ("ivf", {}), ("hnsw", {})):
        if name != "exact" and not faiss_available():
            print(f"  {name:5s} skipped (faiss not installed)")
            continue
        t0 = time.perf_counter()
        index = build_index(name, items, metric="ip", **params)
        t1 = time.perf_counter()
        _, ids = index.search(queries, 100, exclude=exclude)
        t2 = time.perf_counter()
        if ref is None:
            ref = ids
        rec = np.mean([len(set(a.tolist()) & set(b.tolist())) / 100 for a, b in zip(ids[:2000], ref[:2000])])
        print(f"  {name:5s} build {t1 - t0:6.3f} s   search {t2 - t1:6.3f} s   recall@100 vs exact {rec:.4f}")


def main():
    torch.set_num_threads(2)
    run(3706, 6040, "ml-1m-like")
    run(27000, 20000, "ml-20m-like (query sample)")


if __name__ == "__main__":
    main()
