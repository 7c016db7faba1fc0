"""Training speed: BPR to early stop on ml-100k, one BPR epoch over 1M synthetic interactions,
and sparse vs dense embedding gradients.

Targets on 2 CPU cores: BPR on ml-100k to early stop under 20 s wall; one BPR epoch over 1M
interactions under 1.5 s.

Usage:
    python benchmarks/training.py
"""
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bpr_ml100k() -> None:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "BPR", "-d", "ml-100k",
                          "--run_dir", "/tmp/recstudio-bench-runs"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    lines = out.stdout.strip().splitlines()
    epochs = sum(1 for line in lines if line.startswith("epoch"))
    print(f"BPR ml-100k: python run.py to early stop + test: {wall:.1f} s wall, {epochs} epochs "
          f"(target < 20 s)\n  " + "\n  ".join(lines[-2:]))


def bpr_epoch(n_users=50_000, n_items=20_000, n_inter=1_000_000, optimizer="adam", batch_size=4096) -> float:
    """Seconds of one training epoch (fresh negatives, forward, backward, step) over ~1M interactions."""
    import pandas as pd
    from benchmarks.synthetic import power_law_interactions
    from recstudio.data import from_dataframe
    from recstudio.model.base.meta import DataMeta
    from recstudio.model.registry import get_model
    u, i, r, t = power_law_interactions(n_users, n_items, n_inter, seed=1)
    ds = from_dataframe(pd.DataFrame({"u": u, "i": i, "r": r, "t": t}), "u", "i", "r", "t", dedup="all")
    split = ds.split(split_ratio=[1.0, 0.0])
    model = get_model("BPR")(optimizer=optimizer, batch_size=batch_size)
    model.build(DataMeta.from_split(split))
    train = model._get_dataset_class()(split, "train", seed=0, **model._dataset_kwargs())
    loader = train.loader(batch_size, shuffle=True, seed=0)
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for batch in loader:
            opt.zero_grad()
            model.training_loss(batch).backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return min(times), len(split.train)


def main():
    torch.set_num_threads(2)
    bpr_ml100k()
    for opt in ("adam", "sparse_adam"):
        sec, n = bpr_epoch(optimizer=opt)
        print(f"BPR epoch over {n} interactions, batch 4096, one negative, {opt:11s}: {sec:.2f} s "
              f"({n / sec / 1e6:.2f} M samples/s; target < 1.5 s)")


if __name__ == "__main__":
    main()
