"""Two-stage recommendation: a retriever's top-C candidates per user re-ranked by a CTR model.

Stage 1, retrieval: BPR (any item-tower model) ranks every item for each test user through the model's ANN index
(``ann='flat'``: faiss when installed, else the exact torch top-k), history (train + valid) masked, and keeps the
top ``--candidates`` (200). Stage 2, ranking: a feature (CTR) model (DeepFM) trained on the SAME split's training
rows as click prediction (label ``rating >= --threshold``; fields: user id, movie id and the dataset's user / item
features) scores the candidates (``score_candidates``), and the top 10 of its order (or of a blend, below) is the
list. Both are evaluated by full-ranking metrics on the test split (ndcg@10, recall@10 over every test user, the
targets being all the user's test interactions), next to the retriever alone and the candidate recall@C (the
ceiling of any re-ranker).

``--blend w`` also reports ``w * z(ctr logit) + (1 - w) * z(retriever score)`` (per-user z-scores over the
candidates): the CTR model only knows "liked, given watched", so mixing in the retriever's "will watch" score is
the usual production fix.

Usage::

    OMP_NUM_THREADS=1 python examples/two_stage.py --dataset ml-100k
    OMP_NUM_THREADS=1 python examples/two_stage.py --dataset ml-1m --retriever-epochs 60 --ranker-epochs 10

Prints one ``RESULT {json}`` line (metrics, seconds, settings).
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def faiss_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("faiss") is not None


def _zscore(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-row z-scores of ``x`` over the ``valid`` entries (others: -inf)."""
    n = valid.sum(1, keepdim=True).clamp(min=1)
    xv = torch.where(valid, x, torch.zeros_like(x))
    mean = xv.sum(1, keepdim=True) / n
    var = (torch.where(valid, x - mean, torch.zeros_like(x)) ** 2).sum(1, keepdim=True) / n
    z = (x - mean) / var.sqrt().clamp(min=1e-12)
    return torch.where(valid, z, torch.full_like(z, float("-inf")))


@torch.no_grad()
def two_stage_metrics(retriever, ranker, split, phase: str = "test", candidates: int = 200, k: int = 10,
                      blends: Sequence[float] = (), batch_size: int = 256) -> Dict[str, Dict[str, float]]:
    """Full-ranking ndcg@k / recall@k of the retriever alone, of the ranker re-ranking the retriever's top
    ``candidates`` (and of each blend weight), plus ``recall@candidates`` of the candidate lists.

    Both models must be trained on ``split`` (one id space). Each user of ``phase`` with a target counts once.
    """
    from recstudio.eval.ranking import ranking_hits, ranking_metrics
    if candidates < k:
        raise ValueError(f"candidates ({candidates}) must be >= k ({k}).")
    retriever.eval()
    ranker.eval()
    uid = ranker.meta.uid_field
    names = ["retriever", "two_stage"] + [f"blend_{w:g}" for w in blends]
    sums = {n: {"ndcg": 0.0, "recall": 0.0} for n in names}
    cand_recall, users = 0.0, 0
    for batch in retriever._eval_dataset(split, phase).loader(batch_size):
        batch = {key: v.to(retriever.device) for key, v in batch.items()}
        r_scores, cand = retriever.topk_items(batch, candidates)          # [B, C], id -1 pads
        valid = cand > 0
        logits = ranker.score_candidates({uid: batch[uid].to(ranker.device)}, None,
                                         cand.clamp(min=0).to(ranker.device)).to(cand.device).float()
        lists = {"retriever": cand[:, :k]}
        orders = {"two_stage": torch.where(valid, logits, torch.full_like(logits, float("-inf")))}
        for w in blends:
            orders[f"blend_{w:g}"] = w * _zscore(logits, valid) + (1 - w) * _zscore(r_scores.float(), valid)
        for name, score in orders.items():
            top = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
            ids = cand.gather(1, top)
            lists[name] = torch.where(valid.gather(1, top), ids, torch.full_like(ids, -1))
        t_ptr, t_idx = batch["target_indptr"], batch["target_indices"]
        for name, ids in lists.items():
            hits, n_rel = ranking_hits(ids, t_ptr, t_idx)
            m = ranking_metrics(hits, n_rel, {"ndcg": [k], "recall": [k]})
            for metric in ("ndcg", "recall"):
                sums[name][metric] += float(m[metric][:, 0].sum())
        hits, n_rel = ranking_hits(cand, t_ptr, t_idx)
        cand_recall += float(ranking_metrics(hits, n_rel, {"recall": [candidates]})["recall"][:, 0].sum())
        users += len(cand)
    out = {n: {f"{m}@{k}": v / max(users, 1) for m, v in s.items()} for n, s in sums.items()}
    out["candidates"] = {f"recall@{candidates}": cand_recall / max(users, 1), "users": users}
    return out


def with_sampled_negatives(split, per_row: int, seed: int = 0):
    """A copy of ``split`` whose training and validation rows gain ``per_row`` sampled unobserved items per row
    (uniform over the items the user never interacted with in any phase), each with rating 0 (a non-click at any
    threshold) and its source row's other columns, in the source row's phase (so early stopping watches the same
    task); test rows and the histories are unchanged, ids are the same (one id space).
    The ranker then learns "interacted with and liked" against "not interacted with", the retrieval question,
    instead of only "liked, given rated"."""
    import numpy as np
    from recstudio.data.dataset import RecDataset
    from recstudio.data.split import DataSplit
    from recstudio.data.table import FeatureTable
    ds = split.dataset
    if per_row < 1:
        return split
    rng = np.random.default_rng(seed)
    seen = ds.interaction_matrix().tocsr()
    src = np.repeat(np.concatenate([split.train, split.valid]), per_row)
    src_phase = np.repeat(np.r_[np.zeros(len(split.train), np.int8), np.ones(len(split.valid), np.int8)], per_row)
    users = ds.users[src]
    items = rng.integers(1, ds.num_items, len(src))
    for _ in range(50):  # redraw the items a user has seen (dense users keep a few after 50 rounds: dropped)
        bad = np.asarray(seen[users, items]).ravel() > 0
        if not bad.any():
            break
        items[bad] = rng.integers(1, ds.num_items, int(bad.sum()))
    keep = np.asarray(seen[users, items]).ravel() == 0
    src, items, src_phase = src[keep], items[keep], src_phase[keep]
    cols = {}
    for name, col in ds.inter.columns.items():
        extra = col[src].copy()
        if name == ds.iid_field:
            extra = items.astype(col.dtype)
        elif name == ds.rating_field:
            extra = np.zeros(len(src), dtype=col.dtype)
        cols[name] = np.concatenate([col, extra])
    phase = np.concatenate([np.full(len(ds.inter), 3, np.int8), src_phase])
    phase[split.train], phase[split.valid], phase[split.test] = 0, 1, 2
    order = np.argsort(cols[ds.uid_field], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    phase = phase[order]
    real = order < len(ds.inter)
    neg_ds = RecDataset(ds.name, ds.config, FeatureTable(cols, dict(ds.inter.types)), ds.id_maps, ds.field_vocab,
                        ds.user_feat, ds.item_feat, ds.extra)
    return DataSplit(neg_ds, np.flatnonzero(phase == 0), np.flatnonzero(phase == 1), np.flatnonzero(phase == 2),
                     np.flatnonzero((phase == 0) & real), np.flatnonzero((phase <= 1) & real), dict(split.config))


def train_ranker(split, ranker: str = "DeepFM", threshold: float = 4.0, overrides: Optional[dict] = None,
                 run_dir: Optional[str] = None, negatives: int = 0):
    """The CTR ranker on ``split`` (label ``rating >= threshold``, ``negatives`` sampled non-clicks per training
    row): ``(model, test metrics, seconds)``."""
    import recstudio
    t = time.time()
    ranker_split = with_sampled_negatives(split, negatives, seed=int((overrides or {}).get("seed", 0)))
    model, metrics = recstudio.run(model=ranker, dataset=ranker_split, quiet=True, label_threshold=threshold,
                                   run_dir=run_dir, **(overrides or {}))
    return model, metrics, round(time.time() - t, 1)


def train_pair(split, retriever: str = "BPR", ranker: str = "DeepFM", threshold: float = 4.0,
               retriever_overrides: Optional[dict] = None, ranker_overrides: Optional[dict] = None,
               run_root: Optional[str] = None, ann: Optional[str] = "flat", negatives: int = 0):
    """Train the retriever (full-ranking, early stop on valid) and the CTR ranker (label
    ``rating >= threshold``, early stop on valid auc; ``negatives`` sampled unobserved items per training row,
    :func:`with_sampled_negatives`) on ``split``; the retriever answers top-k through ANN index ``ann``
    (``flat`` = faiss when installed, else exact). Returns ``(retriever, ranker, info)``."""
    import recstudio
    info = {}
    t = time.time()
    ret, info["retriever_test"] = recstudio.run(model=retriever, dataset=split, quiet=True,
                                                run_dir=None if run_root is None else f"{run_root}/retriever",
                                                **(retriever_overrides or {}))
    info["retriever_seconds"] = round(time.time() - t, 1)
    rank, info["ranker_test"], info["ranker_seconds"] = train_ranker(
        split, ranker, threshold, ranker_overrides, None if run_root is None else f"{run_root}/ranker", negatives)
    info["ann"] = ann if ann is None or faiss_available() else f"{ann} (faiss missing: exact)"
    ret.configure_ann(ann)
    return ret, rank, info


def _pairs(items) -> dict:
    """``["a=1", "b=[2,3]"]`` -> ``{"a": 1, "b": [2, 3]}`` (values read as YAML)."""
    import yaml
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--retriever", default="BPR")
    ap.add_argument("--ranker", default="DeepFM")
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=4.0, help="click = rating >= threshold")
    ap.add_argument("--retriever-epochs", type=int, default=None)
    ap.add_argument("--ranker-epochs", type=int, default=None)
    ap.add_argument("--retriever-set", nargs="*", default=[], metavar="KEY=VALUE", help="retriever config keys")
    ap.add_argument("--ranker-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="ranker config keys, e.g. mlp_hidden=[128,128,128] batch_norm=false embed_reg=0")
    ap.add_argument("--blend", type=float, nargs="*", default=[0.5])
    ap.add_argument("--ann", default="flat", help="flat / ivf / hnsw, or none for the exact top-k")
    ap.add_argument("--negatives", type=int, nargs="+", default=[0],
                    help="sampled non-clicks per training row of the ranker; several values train one ranker each")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--run-root", default=None, help="run folders (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.run_root is None:
        import tempfile
        args.run_root = tempfile.mkdtemp(prefix="two_stage-")
    from recstudio.data import load_dataset
    split = load_dataset(args.dataset).split(split_mode="user_entry", split_ratio=[0.8, 0.1, 0.1],
                                             split_order="random", seed=args.seed)
    r_over = {"seed": args.seed, **({"epochs": args.retriever_epochs} if args.retriever_epochs else {}),
              **_pairs(args.retriever_set)}
    k_over = {"seed": args.seed, **({"epochs": args.ranker_epochs} if args.ranker_epochs else {}),
              **_pairs(args.ranker_set)}
    t0 = time.time()
    ret, rank, info = train_pair(split, args.retriever, args.ranker, args.threshold, r_over, k_over, args.run_root,
                                 None if args.ann == "none" else args.ann, args.negatives[0])
    runs = {args.negatives[0]: (rank, info.pop("ranker_test"), info.pop("ranker_seconds"))}
    for n in args.negatives[1:]:
        runs[n] = train_ranker(split, args.ranker, args.threshold, k_over, f"{args.run_root}/ranker-neg{n}", n)
    metrics, rankers = {}, {}
    for n, (model, test, seconds) in runs.items():
        t = time.time()
        m = two_stage_metrics(ret, model, split, "test", args.candidates, args.k, args.blend)
        metrics.setdefault("retriever", m.pop("retriever"))
        metrics.setdefault("candidates", m.pop("candidates"))
        metrics.update({f"{name}_neg{n}": v for name, v in m.items()})
        rankers[f"neg{n}"] = {"test": test, "seconds": seconds, "rerank_seconds": round(time.time() - t, 1)}
    info["rankers"] = rankers
    info["total_seconds"] = round(time.time() - t0, 1)
    result = {"dataset": args.dataset, "retriever": args.retriever, "ranker": args.ranker,
              "retriever_config": r_over, "ranker_config": k_over,
              "candidates": args.candidates, "threshold": args.threshold, "seed": args.seed,
              "negatives": args.negatives,
              "torch_threads": torch.get_num_threads(), "metrics": metrics, **info}
    for name, m in metrics.items():
        print(f"{name:>16}  " + "  ".join(f"{key} {v:.4f}" if isinstance(v, float) else f"{key} {v}"
                                          for key, v in m.items()))
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
