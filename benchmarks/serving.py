"""Serving latency: BPR on ml-100k behind `python -m recstudio serve`, hit by concurrent clients.

Trains BPR on the bundled ml-100k (or loads --checkpoint), starts the server in a subprocess on
127.0.0.1, warms it up, then fires --requests POST /recommend requests (one random known user,
k=10) from --clients concurrent keep-alive clients (threads, httpx) and prints p50 / p90 / p99 /
max latency and requests per second, once per --ann setting. Clients and server share the machine.

Target on 2 CPU cores: p99 under 20 ms with 8-16 clients.

Usage:
    python benchmarks/serving.py
    python benchmarks/serving.py --clients 16 --requests 4000 --ann none flat
    python benchmarks/serving.py --checkpoint runs/BPR-ml-100k-<time>
"""
import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path("/tmp/recstudio-bench-serving")


def trained_checkpoint(epochs: int) -> Path:
    """A BPR checkpoint on ml-100k (trained once, then reused)."""
    path = WORK / f"bpr-ml100k-{epochs}.pt"
    if not path.is_file():
        import recstudio
        t = time.perf_counter()
        model, metrics = recstudio.run(model="BPR", dataset="ml-100k", epochs=epochs, quiet=True,
                                       run_dir=str(WORK / "runs"))
        model.save(path)
        print(f"trained BPR on ml-100k in {time.perf_counter() - t:.1f} s: ndcg@10 {metrics['ndcg@10']:.4f}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, ann: str):
    import httpx
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recstudio", "serve", "--checkpoint", str(checkpoint),
                             "--port", str(port), "--ann", ann], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            return proc, url, httpx.get(url + "/health", timeout=1).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not answer /health within 120 s")


def fire_bodies(url: str, path: str, shares, ok=lambda r: r.status_code == 200, timeout: float = 10):
    """Latencies (seconds) of POSTing the JSON bodies ``shares[c]`` to ``path``, one thread per client ``c``,
    all started together, and the wall time; raises if ``ok`` rejects any response."""
    import httpx
    clients = len(shares)
    latencies = [[] for _ in range(clients)]
    failures = []
    start = threading.Barrier(clients + 1)

    def client(c):
        with httpx.Client(base_url=url, timeout=timeout) as http:
            start.wait()
            for body in shares[c]:
                t = time.perf_counter()
                r = http.post(path, json=body)
                latencies[c].append(time.perf_counter() - t)
                if not ok(r):
                    failures.append(r.text[:300])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{len(failures)} bad responses, e.g. {failures[0]}")
    return np.concatenate([np.asarray(x) for x in latencies]), wall


def fire(url: str, users, clients: int, requests: int, k: int):
    """Latencies (seconds) of ``requests`` POST /recommend calls from ``clients`` threads, and the wall time."""
    per_client = [requests // clients + (c < requests % clients) for c in range(clients)]
    shares = [[{"users": [str(user)], "k": k} for user in np.random.default_rng(c).choice(users, size=per_client[c])]
              for c in range(clients)]
    return fire_bodies(url, "/recommend", shares,
                       ok=lambda r: r.status_code == 200 and len(r.json()["results"][0]["items"]) == k)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="serve this checkpoint or run dir instead of training")
    parser.add_argument("--epochs", type=int, default=30, help="BPR training epochs when training (default 30)")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16], help="concurrent clients (default 8 16)")
    parser.add_argument("--requests", type=int, default=4000, help="requests per measurement (default 4000)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ann", nargs="+", default=["exact", "flat"], choices=["exact", "flat", "ivf", "hnsw"],
                        help="--ann settings of the server (default exact flat)")
    args = parser.parse_args()
    import recstudio
    from recstudio.commands.serve import resolve_checkpoint
    checkpoint = resolve_checkpoint(args.checkpoint) if args.checkpoint else trained_checkpoint(args.epochs)
    users = recstudio.load(checkpoint).meta.user_tokens
    for ann in args.ann:
        proc, url, health = start_server(checkpoint, ann)
        try:
            fire(url, users, 4, 400, args.k)  # warm-up: connections, caches, allocator
            for clients in args.clients:
                lat, wall = fire(url, users, clients, args.requests, args.k)
                p50, p90, p99 = (np.percentile(lat, q) * 1e3 for q in (50, 90, 99))
                print(f"{health['model']} ml-100k  ann={health['ann'] or 'exact torch':11s} clients={clients:3d} "
                      f"requests={len(lat)}  p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  "
                      f"max {lat.max() * 1e3:6.1f} ms  {len(lat) / wall:7.0f} req/s  (target p99 < 20 ms)",
                      flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
