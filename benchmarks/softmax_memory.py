"""Peak memory and time of one full-softmax training step over a large catalogue: ``softmax`` (the
[P, N] logits held, and their gradient) against ``chunked_softmax`` (blocks of items, recomputed in the
backward pass), with the same loss value.

Each configuration runs in its own process; the figure is the peak resident memory of the step above
the memory of its inputs (query [P, d] and item table [N, d], float32), read from ``ru_maxrss``.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/softmax_memory.py                       # N = 1M, P = 2048, d = 64
    python benchmarks/softmax_memory.py --items 100000 1000000 --losses softmax chunked_softmax
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(loss_name: str, items: int, rows: int, dim: int, chunk_mb: float) -> dict:
    import torch
    sys.path.insert(0, str(ROOT))
    from recstudio.model.loss import ChunkedSoftmaxLoss, SoftmaxLoss
    torch.manual_seed(0)
    query = torch.randn(rows, dim, requires_grad=True)
    table = (0.1 * torch.randn(items, dim)).requires_grad_()
    pos = torch.randint(1, items, (rows,))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if loss_name == "softmax":
        scores = query @ table.t()
        scores[:, 0] = float("-inf")
        loss = SoftmaxLoss()(all_score=scores, pos_index=pos)
    else:
        loss = ChunkedSoftmaxLoss(chunk_mb=chunk_mb)(query=query, item_vectors=table, pos_index=pos)
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"loss": loss_name, "items": items, "rows": rows, "dim": dim, "value": round(float(loss), 6),
            "step_s": round(seconds, 2), "peak_above_inputs_mb": round((peak - base) / 1024, 1),
            "logits_mb": round(rows * items * 4 / 2 ** 20, 1), "chunk_mb": chunk_mb if loss_name != "softmax" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rows", type=int, default=2048, help="query positions in the batch (B x L)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--chunk_mb", type=float, default=256.0)
    parser.add_argument("--losses", nargs="+", default=["softmax", "chunked_softmax"])
    parser.add_argument("--max_logits_gb", type=float, default=4.0,
                        help="skip the full softmax where its [P, N] logits alone exceed this")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child[0], int(args.child[1]), args.rows, args.dim, args.chunk_mb)))
        return
    print(f"{'loss':<16} {'items':>9} {'rows':>5} {'logits MB':>10} {'peak MB':>9} {'step s':>7}  loss value")
    for items in args.items:
        for name in args.losses:
            logits_gb = args.rows * items * 4 / 2 ** 30
            if name == "softmax" and logits_gb > args.max_logits_gb:
                print(f"{name:<16} {items:>9} {args.rows:>5} {logits_gb * 1024:>10.0f} {'skipped':>9}  "
                      f"(the logits alone need {logits_gb:.1f} GB, their gradient as much again)")
                continue
            cmd = [sys.executable, __file__, "--child", name, str(items), "--rows", str(args.rows),
                   "--dim", str(args.dim), "--chunk_mb", str(args.chunk_mb)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{name:<16} {items:>9} {r['rows']:>5} {r['logits_mb']:>10.0f} {r['peak_above_inputs_mb']:>9.0f} "
                  f"{r['step_s']:>7.2f}  {r['value']:.6f}")


if __name__ == "__main__":
    main()
