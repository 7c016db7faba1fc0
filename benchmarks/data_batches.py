"""Time whole-batch loading of the dataset types on synthetic data (prints figures, asserts nothing).

The data (about 1M interactions, 50k users x 20k items, power-law item popularity, increasing
timestamps) is generated here with numpy and never written to disk.

    python benchmarks/data_batches.py                 # defaults
    python benchmarks/data_batches.py --interactions 200000 --repeat 1
"""
import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recstudio.data import from_dataframe  # noqa: E402
from recstudio.data.types import (ALSDataset, EvalDataset, Seq2SeqDataset, SeqDataset, TripletDataset,  # noqa: E402
                                  UserDataset)


def synthetic(num_users: int, num_items: int, interactions: int, exponent: float, seed: int) -> pd.DataFrame:
    """Unique (user, item) pairs: user activity log-normal, item popularity ~ rank^-exponent."""
    rng = np.random.default_rng(seed)
    n = int(interactions * 1.3)  # headroom for duplicate pairs
    activity = rng.lognormal(0.0, 0.8, num_users)
    users = rng.choice(num_users, size=n, p=activity / activity.sum())
    pop = (np.arange(1, num_items + 1, dtype=np.float64)) ** -exponent
    items = rng.permutation(num_items)[rng.choice(num_items, size=n, p=pop / pop.sum())]
    df = pd.DataFrame({"u": users, "i": items}).drop_duplicates().iloc[:interactions]
    df["r"] = rng.integers(1, 6, len(df)).astype(np.float64)
    df["t"] = np.arange(len(df), dtype=np.float64)  # time = generation order
    return df


def timed(fn, repeat: int, warmup: int = 0):
    """(result of the last call, best wall seconds over ``repeat`` calls after ``warmup`` untimed ones).

    Loader epochs are timed after one warm-up epoch, so every timed epoch of a loader with
    per-epoch draws (refreshed negatives, cloze masks) includes its draw.
    """
    for _ in range(warmup):
        fn()
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def epoch(loader) -> int:
    rows = 0
    for batch in loader:
        rows += len(next(iter(batch.values())))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--exponent", type=float, default=1.0, help="item popularity ~ rank^-exponent")
    p.add_argument("--batch_size", type=int, default=4096)
    p.add_argument("--max_seq_len", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    p.add_argument("--naive", action="store_true", help="also time a per-row __getitem__ + collate loader")
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")

    start = time.perf_counter()
    df = synthetic(args.users, args.items, args.interactions, args.exponent, seed=0)
    ds = from_dataframe(df, "u", "i", "r", "t", name="synthetic")
    full = ds.split(split_mode="user_entry", split_ratio=[1.0, 0.0])  # every interaction is train
    split = ds.split(split_mode="user_entry", split_ratio=[0.8, 0.1, 0.1], split_order="time")
    print(f"data: {ds} built in {time.perf_counter() - start:.1f}s; 8:1:1 split {split.summary()}")
    bs, rep = args.batch_size, args.repeat

    print(f"\n== TripletDataset, all {len(full.train)} interactions, batch {bs}, 1 negative ==")
    tri, t_build = timed(lambda: TripletDataset(full, num_neg=1, refresh_negatives=False), 1)
    print(f"build (columns + exclusion index + first draw): {t_build:.3f}s")
    for mode in ("uniform", "popularity"):
        t = tri if mode == "uniform" else TripletDataset(full, num_neg=1, neg_sampling=mode, refresh_negatives=False)
        _, t_draw = timed(lambda: t.resample_negatives(), rep, warmup=1)
        print(f"draw {mode:10s} negatives for {len(t)} rows: {t_draw:.3f}s")
    loader = tri.loader(bs)
    rows, t_iter = timed(lambda: epoch(loader), rep, warmup=1)
    print(f"iterate one epoch ({len(loader)} batches, {rows} rows, negatives pre-drawn): {t_iter:.3f}s")
    refresh = TripletDataset(full, num_neg=1, refresh_negatives=True)
    loader = refresh.loader(bs)
    _, t_both = timed(lambda: epoch(loader), rep, warmup=1)
    print(f"epoch with a fresh uniform draw (draw + iterate, refresh_negatives=True): {t_both:.3f}s")
    plain = TripletDataset(full, num_neg=0)
    _, t_plain = timed(lambda: epoch(plain.loader(bs)), rep, warmup=1)
    print(f"epoch without negatives: {t_plain:.3f}s")

    print(f"\n== sequential, 8:1:1 temporal split, max_seq_len {args.max_seq_len} ==")
    seq, t_build = timed(lambda: SeqDataset(split, max_seq_len=args.max_seq_len), 1)
    rows, t = timed(lambda: epoch(seq.loader(bs)), rep, warmup=1)
    print(f"SeqDataset: build {t_build:.3f}s; epoch {rows} rows, batch {bs}: {t:.3f}s")
    for mode in ("causal", "cloze"):
        s2s, t_build = timed(lambda: Seq2SeqDataset(split, max_seq_len=args.max_seq_len, mode=mode), 1)
        loader = s2s.loader(1024)
        rows, t = timed(lambda: epoch(loader), rep, warmup=1)
        extra = " (incl. the per-epoch mask draw)" if mode == "cloze" else ""
        print(f"Seq2SeqDataset {mode}: build {t_build:.3f}s; epoch {rows} users, batch 1024{extra}: {t:.3f}s")

    print("\n== user rows and evaluation ==")
    user = UserDataset(split)
    rows, t = timed(lambda: epoch(user.loader(256)), rep, warmup=1)
    print(f"UserDataset dense [256, {ds.num_items}] rows: epoch {rows} users: {t:.3f}s")
    ev = EvalDataset(split, "test", max_seq_len=args.max_seq_len)
    rows, t = timed(lambda: epoch(ev.loader(1024)), rep, warmup=1)
    print(f"EvalDataset test (CSR history + targets + item_seq): epoch {rows} users, batch 1024: {t:.3f}s")
    als, t_build = timed(lambda: ALSDataset(split), 1)
    rows, t = timed(lambda: epoch(als.loader(1024)), rep, warmup=1)
    print(f"ALSDataset: build {t_build:.3f}s; user + item passes ({rows} rows), batch 1024: {t:.3f}s")

    if args.naive:
        from torch.utils.data import DataLoader, Dataset

        class PerRow(Dataset):
            def __len__(self):
                return len(plain)

            def __getitem__(self, i):
                return {k: v[i] for k, v in plain.columns.items()}

        it = iter(DataLoader(PerRow(), batch_size=bs, shuffle=True))
        start, n = time.perf_counter(), 10
        for _ in range(n):
            next(it)
        per_batch = (time.perf_counter() - start) / n
        print(f"\nnaive per-row __getitem__ + default collate: {per_batch * 1000:.1f} ms/batch, "
              f"~{per_batch * len(plain.loader(bs)):.1f}s per epoch (extrapolated from {n} batches)")


if __name__ == "__main__":
    main()
