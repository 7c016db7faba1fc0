"""Every registered negative sampler against the full softmax on ml-1m: test NDCG@10, seconds per epoch,
and how far each sampler's proposal q(j|u) is from the trained model's softmax p(j|u).

For each model (``--models``, default BPR and SASRec) the script first trains the model with the full
softmax (``loss: softmax``), then once per sampler (``--samplers``, default every name in
``recstudio.model.sampler.SAMPLERS``) with ``loss: sampled_softmax`` (logQ-corrected: the sampler's exact
log-probabilities, ``docs/losses_samplers.md``) and ``--num_neg`` negatives, each run for the same small
epoch budget ``--epochs`` with the same seed, and reports:

* ``ndcg@10``: test NDCG@10 of the best-validation epoch (full ranking, history masked), and its ratio to
  the full softmax's;
* ``s/epoch``: mean training seconds per epoch (validation excluded), and its ratio to the full softmax's;
* ``KL(p||q)`` and ``KL(q||p)``: on ``--users-for-kl`` random users, the KL divergence between the
  full-softmax model's softmax over the catalogue ``p(j|u) = softmax_j s(u, j)`` (items 1..N-1) and each
  sampler's proposal ``q(j|u)``, both exact over every item, in nats, averaged over the users. For the
  model-based samplers q is built from the full-softmax model's item vectors (what a refresh of that
  model would give), with the run's options. ``KL(p||q)`` is what matters for importance sampling
  (``inf`` when q misses items that p covers: ``masked_uniform`` excludes the user's history,
  ``popularity`` items never seen in training); ``KL(q||p)`` is always finite.

How q is read for each sampler (the queries are the users' query vectors, the positive is the user's
latest known item, the history is the user's known items):

* ``uniform``, ``shared_uniform``, ``popularity``, ``masked_uniform``, ``cluster_*``, ``midx_*``, ``sir``,
  ``dns``, ``retriever``: the sampler's own exact ``log_prob`` over every item (for ``sir``: under the random
  partition drawn at the refresh; a training step draws a fresh one);
* ``inbatch``: its proposal is the batch's empirical positive frequency, whose expectation over batches is
  the share of training interactions of each item: ``InBatchSampler(estimate='popularity').log_prob``;
* ``mixed``: the same expectation for the in-batch part, mixed with the uniform part in the run's
  proportions (``MixedSampler(estimate='popularity')``).

Settings (a small budget, so that the table runs on a 2-core CPU with one thread: 73 minutes for ``--epochs 1``
on a machine shared with other jobs, the two ``dns`` runs 24 of them; see docs/losses_samplers.md): ml-1m, every
rating an interaction (the dataset's defaults); BPR on the per-user random 8:1:1 split, SASRec on
leave-one-out by time with ``max_seq_len 50`` (instead of its YAML's 200: a quarter of the cost per epoch);
the models' YAML defaults otherwise (embedding 64, Adam; BPR batch 2048, SASRec batch 128) except
``learning_rate`` (``--lr``, default 0.005 for every run, so that a few epochs say something); ``--epochs``
(default 3) for every run, validation after every epoch. The sampled runs use ``num_neg`` 32 (``--num_neg``);
``mixed`` uses ``--num_neg`` in-batch negatives (random offsets of the batch, ``batch_negatives``) plus
``--num_neg`` uniform ones, because all B-1 in-batch negatives of SASRec's ~6,400 target positions per
batch are a [6400, 6399, 64] tensor; ``retriever`` proposes from the model's own full-softmax checkpoint;
with BPR, ``masked_uniform`` negatives are drawn by the triplet dataset and carry no logQ.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/samplers.py                                  # the full table
    OMP_NUM_THREADS=1 python benchmarks/samplers.py --models BPR --samplers uniform midx_uni --epochs 1
    OMP_NUM_THREADS=1 python benchmarks/samplers.py --models SASRec --embed_dim 32   # any config key

Extra ``--key value`` options are config overrides applied to every run (parsed with
``recstudio.utils.cli.parse_overrides``, typed as on the command line). Prints one JSON line per run, the
markdown table at the end, and writes every figure to ``--out`` (JSON).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.kg_reference import EpochTimer  # noqa: E402
from benchmarks.side_by_side import link_ml1m  # noqa: E402
from recstudio.utils.cli import parse_overrides  # noqa: E402

#: per-model settings of the benchmark (on top of the model's YAML)
MODEL_SETTINGS = {"BPR": {}, "SASRec": {"max_seq_len": 50}}
FULL = "full softmax"


def registered_samplers():
    from recstudio.model.sampler import SAMPLERS
    return SAMPLERS.names()


def make_sampler_spec(name: str, num_items: int, num_neg: int, seed: int):
    """What the runs pass as ``sampler``: the registered name, except for ``mixed`` (an instance whose
    in-batch part is capped to ``num_neg`` random offsets; see the module docstring)."""
    if name == "mixed":
        from recstudio.model.sampler import MixedSampler
        return MixedSampler(num_items, batch_negatives=num_neg, seed=seed)
    return name


def train(model_name: str, ds, settings: dict, run_dir: Path, split_cache: dict):
    """Train one configuration; ``(model, test metrics, seconds per epoch, wall seconds)``."""
    import recstudio
    from recstudio.train.trainer import fit_model
    cls = recstudio.get_model(model_name)
    model = cls(**settings)
    if model_name not in split_cache:
        split_cache[model_name] = model.prepare_data_split(ds)
    timer = EpochTimer()
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    metrics = fit_model(model, split_cache[model_name], run_dir=run_dir, callbacks=[timer])
    wall = time.perf_counter() - start
    return model, metrics, sum(timer.seconds) / max(len(timer.seconds), 1), wall


# ----------------------------------------------------------------------------- KL divergences
def user_inputs(model, users: torch.Tensor):
    """Query vectors, log p [U, N] (column 0 = -inf), latest known item and padded history of ``users``."""
    model.eval()
    with torch.no_grad():
        batch = model.query_batch(users)
        state = model.prepare_scoring(batch)
        scores = model.score_all_candidates(batch, state).double()
    scores[:, 0] = float("-inf")
    log_p = torch.log_softmax(scores, 1)
    indptr, indices = batch["history_indptr"].long(), batch["history_indices"].long()
    lengths = indptr[1:] - indptr[:-1]
    hist = torch.zeros(len(users), int(lengths.max()), dtype=torch.long)
    for r in range(len(users)):
        hist[r, :lengths[r]] = indices[indptr[r]:indptr[r + 1]]
    last = indices[indptr[1:] - 1]
    return state.detach(), log_p, last, hist


def sampler_log_q(name: str, full_model, query, last, hist, num_neg: int, batch_rows: int,
                  retriever_ckpt) -> torch.Tensor:
    """log q(j | u) [U, N] of sampler ``name`` for the users (column 0 = padding)."""
    from recstudio.model.sampler import InBatchSampler, MixedSampler, build_sampler
    n = full_model.meta.num_items
    counts = full_model.meta.item_counts
    items = torch.arange(n).expand(len(last), n)
    if name == "inbatch":
        return InBatchSampler(estimate="popularity", num_items=n, item_counts=counts).log_prob(items).double()
    if name == "mixed":
        s = MixedSampler(n, estimate="popularity", item_counts=counts)
        # the in-batch part: num_neg random offsets of the batch (plus the row itself), as in the runs
        draws = min(num_neg, batch_rows - 1) + 1
        return s.mixture_log_prob(items, items[:1, :1], num_neg, batch_draws=draws).double()
    context = {**full_model._sampler_context(), **full_model._block_context(), "checkpoint": retriever_ckpt}
    sampler = build_sampler(name, context=context)
    if getattr(sampler, "needs_item_vectors", False):
        held = full_model.sampler
        full_model.sampler = sampler
        try:
            full_model.refresh_sampler()
        finally:
            full_model.sampler = held
    with torch.no_grad():
        if getattr(sampler, "needs_query", False):
            return sampler.log_prob(items, query=query).double()
        return sampler.log_prob(items, pos_items=last, user_hist=hist).double()


def kl_pair(log_p: torch.Tensor, log_q: torch.Tensor):
    """Mean over users of KL(p||q) and KL(q||p) in nats (items 1..N-1)."""
    lp, lq = log_p[:, 1:], log_q[:, 1:]
    p, q = lp.exp(), lq.exp()
    pq = torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(1)
    qp = torch.where(q > 0, q * (lq - lp), torch.zeros_like(q)).sum(1)
    return float(pq.mean()), float(qp.mean())


# ----------------------------------------------------------------------------- report
def fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def markdown(rows, args) -> str:
    lines = []
    for model_name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model_name]
        lines += [f"\n**{model_name}** (ml-1m, {args.epochs} epochs, {args.threads} thread(s), num_neg "
                  f"{args.num_neg})\n",
                  "| sampler | ndcg@10 | vs full | s/epoch | vs full | KL(p‖q) | KL(q‖p) |",
                  "|---|---|---|---|---|---|---|"]
        for r in mine:
            lines.append(f"| {r['sampler']} | {fmt(r.get('ndcg@10'))} | {fmt(r.get('ndcg_vs_full'), 2)} | "
                         f"{fmt(r.get('epoch_seconds'), 1)} | {fmt(r.get('time_vs_full'), 2)} | "
                         f"{fmt(r.get('kl_p_q'), 3)} | {fmt(r.get('kl_q_p'), 3)} |")
    return "\n".join(lines)


def save(out: Path, args, overrides: dict, rows: list) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**vars(args), "overrides": overrides,
                                            "machine_load": os.getloadavg()[0]},
                               "rows": rows, "table": markdown(rows, args)}, indent=1, default=str))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODEL_SETTINGS))
    p.add_argument("--samplers", nargs="+", default=None, help="registered sampler names (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of every run")
    p.add_argument("--num_neg", type=int, default=32, help="negatives per positive of the sampled runs")
    p.add_argument("--lr", type=float, default=0.005, help="learning rate of every run")
    p.add_argument("--users-for-kl", type=int, default=256, help="random users of the KL divergences (0: skip)")
    p.add_argument("--no-train", action="store_true", help="only the full-softmax run and the KL (no sampled runs)")
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ml1m-raw", default=str(ROOT.parent / "shared" / "datasets" / "ml-1m"))
    p.add_argument("--data_dir", default="/tmp/recstudio-samplers")
    p.add_argument("--out", default=None, help="JSON file of the results (default: <data_dir>/samplers.json)")
    args, rest = p.parse_known_args(argv)
    overrides = parse_overrides(rest)  # --key value, typed as on the command line
    torch.set_num_threads(args.threads)
    import recstudio
    from recstudio.data import load_dataset
    from recstudio.model.sampler import SAMPLERS
    names = [SAMPLERS.canonical(s) for s in (args.samplers or registered_samplers())]
    models = [recstudio.get_model(m).model_name for m in args.models]
    data_dir = Path(args.data_dir)
    link_ml1m(Path(args.ml1m_raw), data_dir)
    ds = load_dataset("ml-1m", data_dir=str(data_dir))
    runs = Path(tempfile.mkdtemp(prefix="samplers-", dir=str(data_dir)))
    out = Path(args.out) if args.out else data_dir / "samplers.json"
    rows, splits = [], {}
    for model_name in models:
        base = {"epochs": args.epochs, "learning_rate": args.lr, "seed": args.seed, "quiet": True,
                "early_stop_patience": args.epochs, **MODEL_SETTINGS.get(model_name, {}), **overrides}
        full, metrics, sec, wall = train(model_name, ds, {**base, "loss": "softmax"}, runs / model_name / "full",
                                         splits)
        full_row = {"model": model_name, "sampler": FULL, "ndcg@10": metrics.get("ndcg@10"),
                    "test": metrics, "epoch_seconds": sec, "wall_seconds": wall, "ndcg_vs_full": 1.0,
                    "time_vs_full": 1.0}
        rows.append(full_row)
        print(json.dumps({k: v for k, v in full_row.items() if k != "test"}), flush=True)
        save(out, args, overrides, rows)
        ckpt = str(runs / model_name / "full")
        log_p = query = last = hist = None
        if args.users_for_kl:
            gen = torch.Generator().manual_seed(args.seed)
            n_users = full.meta.num_users
            users = torch.randperm(n_users - 1, generator=gen)[:args.users_for_kl] + 1
            query, log_p, last, hist = user_inputs(full, users)
        batch_rows = int(full.config["batch_size"]) * (full.config.get("max_seq_len") or 1)
        for name in names:
            row = {"model": model_name, "sampler": name}
            if not args.no_train:
                spec = make_sampler_spec(name, full.meta.num_items, args.num_neg, args.seed)
                settings = {**base, "loss": "sampled_softmax", "sampler": spec, "num_neg": args.num_neg}
                if name == "retriever":
                    settings["sampler_checkpoint"] = ckpt
                _, m, s, w = train(model_name, ds, settings, runs / model_name / name, splits)
                row.update({"ndcg@10": m.get("ndcg@10"), "test": m, "epoch_seconds": s, "wall_seconds": w,
                            "ndcg_vs_full": m.get("ndcg@10", 0.0) / max(full_row["ndcg@10"], 1e-12),
                            "time_vs_full": s / max(sec, 1e-12)})
            if log_p is not None:
                lq = sampler_log_q(name, full, query, last, hist, args.num_neg, batch_rows, ckpt)
                row["kl_p_q"], row["kl_q_p"] = kl_pair(log_p, lq)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "test"}), flush=True)
            save(out, args, overrides, rows)  # after every run: a stopped benchmark keeps what it measured
    print(markdown(rows, args))
    save(out, args, overrides, rows)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
