"""Serving latency of a feature (CTR) model: DeepFM behind `python -m recstudio serve`, POST /rank and /score.

Trains DeepFM briefly (one epoch by default) on a synthetic CTR table with every kind of raw context field (a
token, a standard-scaled float, a discretized float, a token_seq), or on Frappe (``--dataset frappe``: 288,609
rows, 957 users, 4,082 apps, 8 token context fields; ``--shared`` links the raw files from
/work/shared/datasets/frappe), or loads ``--checkpoint``. Then starts the server in a subprocess on 127.0.0.1,
warms it up, and fires ``--requests`` requests per endpoint from ``--clients`` concurrent keep-alive clients
(threads, httpx; they share the machine with the server):

* ``POST /rank``: one random known user, random raw context values, ``--candidates`` random distinct items (100);
* ``POST /score``: ``--rows`` rows (100) of random raw values (known and unknown ids and tokens mixed: about one
  value in ten is out of vocabulary).

and prints p50 / p90 / p99 / max latency and requests per second. Request bodies are built from the
checkpoint's own vocabularies (so any CTR checkpoint works) before the clock starts.

Usage:
    python benchmarks/serving_ctr.py
    python benchmarks/serving_ctr.py --dataset frappe --shared --clients 1 4
    python benchmarks/serving_ctr.py --checkpoint runs/DeepFM-frappe-<time> --requests 2000
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.serving import fire_bodies, start_server  # noqa: E402

WORK = Path("/tmp/recstudio-bench-serving-ctr")
SHARED = Path("/work/shared/datasets/frappe")


def synthetic_split(n: int = 50_000, seed: int = 0):
    """A CTR table: 500 users, 1000 items with a category feature, context ``ctx`` (12 tokens), ``price``
    (float, standard-scaled), ``hour`` (discretized into 6 bins), ``tags`` (token_seq of 1-3 of 20 tags);
    label = (ctx mod 3 == item mod 3) with 10% noise."""
    import pandas as pd

    from recstudio.data import from_dataframe
    rng = np.random.default_rng(seed)
    users, items, ctx = rng.integers(0, 500, n), rng.integers(0, 1000, n), rng.integers(0, 12, n)
    tags = [" ".join(f"t{t}" for t in rng.choice(20, size=rng.integers(1, 4), replace=False)) for _ in range(n)]
    label = ((ctx % 3) == (items % 3)) ^ (rng.random(n) < 0.1)
    df = pd.DataFrame({"user": [f"u{x}" for x in users], "item": [f"i{x}" for x in items],
                       "ctx": [f"c{c}" for c in ctx], "price": rng.gamma(2.0, 10.0, n),
                       "hour": rng.integers(0, 24, n).astype(float), "tags": tags, "label": label.astype(float)})
    item_feat = pd.DataFrame({"item": [f"i{x}" for x in range(1000)], "cat": [f"k{i % 3}" for i in range(1000)]})
    ds = from_dataframe(df, "user", "item", item_features=item_feat, dedup="all", split_mode="entry",
                        split_ratio=[0.7, 0.2, 0.1], field_types={"tags": "token_seq"},
                        float_scaling={"price": "standard"}, discretize={"hour": 6}, name="synthetic-ctr")
    return ds.split()


def trained_checkpoint(dataset: str, epochs: int, data_dir: str) -> Path:
    """A DeepFM checkpoint (trained once per dataset / epochs, then reused)."""
    path = WORK / f"deepfm-{dataset}-{epochs}.pt"
    if not path.is_file():
        import recstudio
        data = synthetic_split() if dataset == "synthetic" else dataset
        t = time.perf_counter()
        model, metrics = recstudio.run(model="DeepFM", dataset=data, epochs=epochs, quiet=True, data_dir=data_dir,
                                       run_dir=str(WORK / "runs"))
        WORK.mkdir(parents=True, exist_ok=True)
        model.save(path)
        print(f"trained DeepFM on {dataset} ({epochs} epoch{'s' * (epochs > 1)}) in {time.perf_counter() - t:.1f} s: "
              f"test auc {metrics['auc']:.4f}, logloss {metrics['logloss']:.4f}", flush=True)
    return path


class Bodies:
    """Random raw request bodies from a checkpoint's vocabularies (``oov``: the share of unknown values)."""

    def __init__(self, model, seed: int, oov: float = 0.1):
        from recstudio.serving.features import RawFeatureEncoder
        self.rng = np.random.default_rng(seed)
        self.enc = RawFeatureEncoder(model)
        self.users, self.items = model.meta.user_tokens.tolist(), model.meta.item_tokens.tolist()
        saved = model.meta.context_encoding["fields"]
        self.tokens = {n: saved[n].get("tokens", []) for n in self.enc.codecs}
        self.oov = oov

    def _pick(self, values):
        if self.rng.random() < self.oov:
            return f"unseen-{self.rng.integers(1 << 30)}"
        return values[self.rng.integers(len(values))]

    def _context(self):
        out = {}
        for name, codec in self.enc.codecs.items():
            if name in self.enc.weight_of:
                continue
            if codec.discretized:
                out[name] = float(self.rng.uniform(codec.edges[0], codec.edges[-1]))
            elif codec.type == "token":
                out[name] = self._pick(self.tokens[name])
            elif codec.type == "token_seq":
                out[name] = [self._pick(self.tokens[name]) for _ in range(self.rng.integers(1, 4))]
            elif codec.type == "float":
                out[name] = float(self.rng.normal(10.0, 5.0))
            else:
                out[name] = self.rng.random(codec.size).tolist()
        for wname, sname in self.enc.weight_of.items():
            out[wname] = [1.0] * len(out[sname])
        return out

    def rank(self, candidates: int):
        items = self.rng.choice(len(self.items), size=min(candidates, len(self.items)), replace=False)
        return {"user": self.users[self.rng.integers(len(self.users))], "context": self._context(),
                "items": [self.items[j] for j in items]}

    def score(self, rows: int):
        return {"rows": [{self.enc.uid: self._pick(self.users), self.enc.iid: self._pick(self.items),
                          **self._context()} for _ in range(rows)]}


def cpu_seconds(pid: int):
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def fire(url: str, path: str, bodies, clients: int):
    """Latencies (s) of POSTing ``bodies`` (split over ``clients`` threads) to ``path``, and the wall time."""
    return fire_bodies(url, path, [bodies[c::clients] for c in range(clients)], timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="serve this CTR checkpoint or run dir instead of training")
    parser.add_argument("--dataset", default="synthetic", help="synthetic (default) or a CTR dataset name (frappe)")
    parser.add_argument("--shared", action="store_true", help="link frappe's raw files from " + str(SHARED))
    parser.add_argument("--data_dir", default="/tmp/recstudio-ctr-data", help="data_dir for a named dataset")
    parser.add_argument("--epochs", type=int, default=1, help="DeepFM training epochs when training (default 1)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="concurrent clients (default 1 4)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per endpoint and setting (default 1000)")
    parser.add_argument("--candidates", type=int, default=100, help="candidate items per /rank (default 100)")
    parser.add_argument("--rows", type=int, default=100, help="rows per /score (default 100)")
    args = parser.parse_args()
    if args.shared:
        raw = Path(args.data_dir) / "frappe" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in ("frappe.csv", "meta.csv", "README.txt"):
            if not (raw / name).exists():
                (raw / name).symlink_to(SHARED / name)
    import torch

    import recstudio
    from recstudio.commands.serve import resolve_checkpoint
    torch.set_num_threads(1)
    checkpoint = (resolve_checkpoint(args.checkpoint) if args.checkpoint
                  else trained_checkpoint(args.dataset, args.epochs, args.data_dir))
    model = recstudio.load(checkpoint)
    gen = Bodies(model, seed=0)
    proc, url, health = start_server(checkpoint, "exact")
    name = f"{health['model']} {args.dataset if not args.checkpoint else checkpoint.name}"
    try:
        warm = [gen.rank(args.candidates) for _ in range(100)], [gen.score(args.rows) for _ in range(100)]
        fire(url, "/rank", warm[0], 2)  # connections, caches, allocator
        fire(url, "/score", warm[1], 2)
        for clients in args.clients:
            for path, what in (("/rank", f"{args.candidates} candidates"), ("/score", f"{args.rows} rows")):
                bodies = [gen.rank(args.candidates) if path == "/rank" else gen.score(args.rows)
                          for _ in range(args.requests)]
                cpu0 = cpu_seconds(proc.pid)
                lat, wall = fire(url, path, bodies, clients)
                cpu1 = cpu_seconds(proc.pid)
                cpu = f"  server CPU {(cpu1 - cpu0) / len(lat) * 1e3:5.2f} ms/request" if cpu0 is not None else ""
                p50, p90, p99 = (np.percentile(lat, q) * 1e3 for q in (50, 90, 99))
                print(f"{name}  POST {path:6s} {what:15s} clients={clients:2d} requests={len(lat)}  "
                      f"p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  max {lat.max() * 1e3:6.1f} ms  "
                      f"{len(lat) / wall:6.0f} req/s{cpu}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (the latencies include waiting for a "
              f"CPU; server CPU per request does not)", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
