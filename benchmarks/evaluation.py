"""Time and size full-ranking evaluation (prints figures, asserts nothing).

1. ML-1M shape: 6,040 users x 3,706 items, random 64-dim user / item vectors scored by one matmul
   per user batch, top-100 with history masking (about 165 history items per user, power-law item
   popularity, heavy-tailed user activity), recall / precision / hit / mrr / ndcg / map at
   10, 20, 50, 100. Swept over users per batch, full and item-chunked paths.
2. ML-20M shape: 138,000 users x 27,000 items (about 145 history items per user, 20M entries),
   chunked path (running top-k over item chunks). Peak memory is measured on the real shape in a
   subprocess (``VmHWM`` reset after the data is built, and ``ru_maxrss``) for a few batches; the
   time for all users is extrapolated from a user subsample unless ``--full``.

    python benchmarks/evaluation.py                  # both parts
    python benchmarks/evaluation.py --part small     # only part 1
    python benchmarks/evaluation.py --full           # part 2 over all 138k users (minutes)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recstudio.eval import FullRankingEvaluator  # noqa: E402

METRICS = ["recall", "precision", "hit", "mrr", "ndcg", "map"]
CUTOFFS = [10, 20, 50, 100]


def synthetic_eval_data(num_users: int, num_items: int, mean_history: float, target_share: float, seed: int = 0):
    """History and target CSR (torch int64, item ids 1..num_items-1), power-law items, every user
    with at least one target. Returns ``(h_ptr, h_idx, t_ptr, t_idx)``."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, num_items) ** 0.9
    cdf = np.cumsum(pop / pop.sum())
    perm = rng.permutation(num_items - 1)  # popular items are not simply the low ids

    def draw(lens):  # distinct (user, item) keys, sorted by user then item; duplicates dropped
        users = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
        items = 1 + perm[np.minimum(np.searchsorted(cdf, rng.random(len(users))), num_items - 2)]
        return np.unique(users * num_items + items)

    mean_total = mean_history / (1 - target_share)
    shape = np.minimum(rng.lognormal(0.0, 0.9, num_users), 50.0)
    shape /= shape.mean()
    cap = (num_items - 1) // 2
    lens = np.clip((shape * mean_total).astype(np.int64), 5, cap)
    factor = 1.0
    for _ in range(2):  # calibrate the oversampling that makes up for the dropped duplicates on 2,000 users
        probe = np.clip((shape[:2000] * mean_total * factor).astype(np.int64), 5, cap)
        factor *= shape[:2000].sum() * mean_total / len(draw(probe))
    lens = np.clip((shape * mean_total * factor).astype(np.int64), 5, cap)
    keys = draw(lens)
    rows = keys // num_items
    first = np.r_[True, rows[1:] != rows[:-1]]
    is_target = (rng.random(len(keys)) < target_share) | first

    def csr(sel):
        r, i = rows[sel], keys[sel] % num_items
        ptr = np.zeros(num_users + 1, np.int64)
        np.cumsum(np.bincount(r, minlength=num_users), out=ptr[1:])
        return torch.from_numpy(ptr), torch.from_numpy(i)

    h = csr(~is_target)
    t = csr(is_target)
    return h + t


def cached_eval_data(num_users: int, num_items: int, mean_history: float, target_share: float, seed: int = 0):
    """:func:`synthetic_eval_data`, cached in ``benchmarks/_data/`` (git-ignored)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_data",
                        f"eval-{num_users}x{num_items}-{mean_history}-{target_share}-{seed}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return tuple(torch.from_numpy(z[k]) for k in ("h_ptr", "h_idx", "t_ptr", "t_idx"))
    data = synthetic_eval_data(num_users, num_items, mean_history, target_share, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path + ".part.npz", **{k: v.numpy() for k, v in zip(("h_ptr", "h_idx", "t_ptr", "t_idx"), data)})
    os.replace(path + ".part.npz", path)
    return data


def make_batches(data, users: np.ndarray, batch_size: int):
    """Evaluation batches like EvalDataset's (CSR slices re-based per batch)."""
    h_ptr, h_idx, t_ptr, t_idx = data
    out = []
    for s in range(0, len(users), batch_size):
        lo, hi = int(users[s]), int(users[min(s + batch_size, len(users)) - 1]) + 1  # contiguous user ranges
        out.append({"user_id": torch.arange(lo, hi),
                    "history_indptr": h_ptr[lo:hi + 1] - h_ptr[lo], "history_indices": h_idx[h_ptr[lo]:h_ptr[hi]],
                    "target_indptr": t_ptr[lo:hi + 1] - t_ptr[lo], "target_indices": t_idx[t_ptr[lo]:t_ptr[hi]]})
    return out


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def part_small(repeat: int):
    num_users, num_items, dim = 6040, 3706, 64
    g = torch.Generator().manual_seed(0)
    user_vec, item_vec = torch.randn(num_users, dim, generator=g), torch.randn(num_items, dim, generator=g)
    data = synthetic_eval_data(num_users, num_items, 165, 0.1)
    h_ptr, t_ptr = data[0], data[2]
    print(f"== {num_users} users x {num_items} items, dim {dim}; history {float(h_ptr[-1]) / num_users:.1f} / user "
          f"(max {int((h_ptr[1:] - h_ptr[:-1]).max())}), targets {float(t_ptr[-1]) / num_users:.1f} / user; "
          f"top-{max(CUTOFFS)}, {len(METRICS)} metrics x {CUTOFFS}; torch threads {torch.get_num_threads()}")
    everyone = np.arange(num_users)

    def score(b):
        return user_vec[b["user_id"]] @ item_vec.T

    ev = FullRankingEvaluator(METRICS, CUTOFFS)
    ev.evaluate(make_batches(data, everyone, 1024), score)  # warm-up (first call pays one-off costs)
    t_mm, _ = best_of(lambda: [score(b) for b in make_batches(data, everyone, 1024)], repeat)
    print(f"  matmul alone (all users):                  {t_mm:.3f} s")
    for bs in (256, 1024, 2048, num_users):
        batches = make_batches(data, everyone, bs)
        t, res = best_of(lambda: ev.evaluate(batches, score), repeat)
        print(f"  full path,    {bs:5d} users / batch:        {t:.3f} s   (recall@10 {res['recall@10']:.4f})")
    for bs, chunk in ((1024, 1024), (2048, 2048)):
        batches = make_batches(data, everyone, bs)
        evc = FullRankingEvaluator(METRICS, CUTOFFS, item_chunk_size=chunk)
        t, res2 = best_of(lambda: evc.evaluate(batches, score_chunk_fn=lambda b, lo, hi: user_vec[b["user_id"]]
                                               @ item_vec[lo:hi].T, num_items=num_items), repeat)
        print(f"  chunked path, {bs:5d} users x {chunk} items:   {t:.3f} s   (same results: {res2 == res})")


def memory_child(args):
    """Subprocess body: build the ML-20M-shaped data, reset the peak, evaluate, report JSON."""
    num_users, num_items, dim = args.users, args.items, 64
    data = cached_eval_data(num_users, num_items, 145, 0.1, seed=1)
    g = torch.Generator().manual_seed(0)
    user_vec, item_vec = torch.randn(num_users, dim, generator=g), torch.randn(num_items, dim, generator=g)
    rss_data, peak_load = _vm("VmRSS"), _vm("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the peak then measures evaluation only
            f.write("5")
        reset = True
    except OSError:
        reset = False
    # batches of consecutive user ids (activity is independent of the id here), evenly spread over the users
    batches = make_batches(data, np.arange(num_users), args.batch)
    wanted = min(len(batches), -(-args.eval_users // args.batch))
    batches = [batches[i] for i in np.unique(np.linspace(0, len(batches) - 1, wanted).astype(int))] if wanted else []
    ev = FullRankingEvaluator(METRICS, CUTOFFS, item_chunk_size=args.chunk)
    t = time.perf_counter()
    res = ev.evaluate(batches, score_chunk_fn=lambda b, lo, hi: user_vec[b["user_id"]] @ item_vec[lo:hi].T,
                      num_items=num_items) if batches else {"recall@10": float("nan")}
    secs = time.perf_counter() - t
    print(json.dumps({"users": ev.num_users, "secs": secs, "rss_data_mb": rss_data, "peak_eval_mb": _vm("VmHWM"),
                      "target_nnz": int(data[2][-1]), "peak_load_mb": peak_load,
                      "hwm_reset": reset, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "history_nnz": int(data[0][-1]), "recall@10": res["recall@10"]}))


def _vm(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_child(batch: int, chunk: int, eval_users: int, users: int = 138_000, items: int = 27_000) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--batch", str(batch), "--chunk", str(chunk),
           "--eval-users", str(eval_users), "--users", str(users), "--items", str(items)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_large(full: bool, sample_users: int, configs):
    users, items = 138_000, 27_000
    print(f"== {users} users x {items} items, dim 64, chunked path, top-{max(CUTOFFS)}; per (users/batch, item chunk): "
          f"peak RSS in a subprocess")
    t = time.perf_counter()  # the data is built (or loaded) in a child too: ru_maxrss is inherited from the parent
    info = run_child(1, 1, 0, users, items)
    print(f"  data: {info['history_nnz'] / users:.1f} history / {info['target_nnz'] / users:.1f} targets per user, "
          f"{info['rss_data_mb']:.0f} MB resident in the child with torch ({time.perf_counter() - t:.1f} s to build "
          f"or load); parent RSS at spawn {_vm('VmRSS'):.0f} MB")
    for batch, chunk in configs:
        r = run_child(batch, chunk, users if full else sample_users, users, items)
        per_user = r["secs"] / r["users"]
        print(f"  {batch:5d} users x {chunk:5d} items / chunk: peak RSS {r['maxrss_mb']:.0f} MB (ru_maxrss), "
              f"{r['peak_eval_mb']:.0f} MB during evaluation{'' if r['hwm_reset'] else ' (VmHWM not reset)'} "
              f"(+{r['peak_eval_mb'] - r['rss_data_mb']:.0f} MB over the resident data and torch)"
              f"; {r['users']} users in {r['secs']:.2f} s -> all {users} users "
              f"{'measured' if full else 'extrapolated'}: {per_user * users:.1f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["small", "large", "both"], default="both")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--full", action="store_true", help="part 2 over all users instead of a subsample")
    p.add_argument("--sample-users", type=int, default=8192, help="users timed in part 2 without --full")
    p.add_argument("--configs", default="1024x27000,2048x27000,4096x27000,2048x8192,4096x4096",
                   help="part 2: comma-separated USERSxITEMS (users per batch x item chunk)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=2048, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=8192, help=argparse.SUPPRESS)
    p.add_argument("--eval-users", type=int, default=8192, help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, default=138_000, help=argparse.SUPPRESS)
    p.add_argument("--items", type=int, default=27_000, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return memory_child(args)
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
          f"(timings are best-of-{args.repeat}; a shared machine makes them noisy)")
    if args.part in ("large", "both"):  # first, while this process is small (children inherit its ru_maxrss)
        configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
        part_large(args.full, args.sample_users, configs)
    if args.part in ("small", "both"):
        part_small(args.repeat)


if __name__ == "__main__":
    main()
