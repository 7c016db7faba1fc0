"""Content models vs BPR on ml-1m with item text as content, warm and cold-start-item protocols.

Content: each movie's title and genres (``movies.dat``) as TF-IDF (scikit-learn, unigrams + bigrams, sublinear
tf) reduced by TruncatedSVD to ``--dim`` (64) dimensions, float32, one row per movie id (``ContentStore``).

Protocols (ratings >= 3 implicit, the BPR card's; 836,478 interactions):

* ``warm``: per-user random 8:1:1, full ranking with the history masked, early stop on valid mrr@10 (patience
  10), test metrics of the best validation checkpoint;
* ``cold``: ``cold_item_split`` holds out 20 % of the items (seed 2022) with all their interactions; the rest is
  split 8:1:1 as above; the model trains and early-stops on the warm part, then ranks the held-out items only
  for every user who interacted with one (``ColdItemSplit.evaluate``); warm test metrics are reported too.

The extracted GroupLens files come from ``--raw`` (default: the shared originals), linked into
``<data_dir>/ml-1m/raw/`` outside the repository. One model and protocol per process; prints ``RESULT {json}``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/content_ml1m.py --model VBPR --protocol warm
    OMP_NUM_THREADS=1 python benchmarks/content_ml1m.py --model BPR --protocol cold
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.graph_reference import link_raw  # noqa: E402
from recstudio.utils.cli import parse_value  # noqa: E402

PROTOCOL = {"rating_threshold": 3, "binarize": True, "split_mode": "user_entry", "split_ratio": [0.8, 0.1, 0.1],
            "split_order": "random", "early_stop_metric": "mrr@10", "early_stop_patience": 10}


def movie_text_content(raw: Path, dim: int, seed: int):
    """``(ids, [n, dim] float32)``: TF-IDF of "title genres" of every movie, TruncatedSVD to ``dim``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    ids, texts = [], []
    for line in (raw / "movies.dat").read_text(encoding="latin-1").splitlines():
        movie, title, genres = line.split("::")
        ids.append(movie)
        texts.append(title + " " + genres.replace("|", " ").replace("'", ""))
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    vectors = TruncatedSVD(dim, random_state=seed).fit_transform(tfidf).astype(np.float32)
    return np.asarray(ids), vectors


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--protocol", choices=("warm", "cold"), default="warm")
    p.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "datasets" / "ml-1m")
    p.add_argument("--data_dir", type=Path, default=Path(os.environ.get("RECSTUDIO_DATA_DIR",
                                                                         Path.home() / ".cache" / "recstudio")))
    p.add_argument("--dim", type=int, default=64, help="TruncatedSVD dimensions of the text content")
    p.add_argument("--cold_ratio", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--set", nargs="*", default=[], help="model / training overrides key=value")
    args = p.parse_args(argv)
    import torch
    import recstudio
    from recstudio.data import load_dataset
    from recstudio.data.content import ContentStore
    from recstudio.eval.cold_items import cold_item_split
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    link_raw(args.raw, args.data_dir)
    ids, vectors = movie_text_content(args.raw, args.dim, args.seed)
    content = ContentStore.from_array(vectors, item_ids=ids)
    data_keys = {k: PROTOCOL[k] for k in ("rating_threshold", "binarize")}
    ds = load_dataset("ml-1m", data_dir=str(args.data_dir), **data_keys)
    split_keys = {k: PROTOCOL[k] for k in ("split_mode", "split_ratio", "split_order")}
    cold = None
    if args.protocol == "cold":
        cold = cold_item_split(ds, cold_ratio=args.cold_ratio, seed=args.seed, **split_keys)
        split = cold.split
    else:
        split = ds.split(**split_keys)
    overrides = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    cls = recstudio.get_model(args.model)
    kwargs = dict(early_stop_metric=PROTOCOL["early_stop_metric"], early_stop_patience=PROTOCOL["early_stop_patience"],
                  seed=args.seed, quiet=True, num_threads=int(os.environ.get("OMP_NUM_THREADS", "1")), **overrides)
    if "item_content" in cls.needs:
        kwargs["content"] = content
    model = cls(**kwargs)
    run_dir = Path(tempfile.mkdtemp(prefix=f"content-{args.model}-{args.protocol}-"))
    start = time.perf_counter()
    test = model.fit(split, run_dir=run_dir)
    wall = time.perf_counter() - start
    import pandas as pd
    table = pd.read_csv(Path(model.run_dir) / "metrics.csv")
    epochs = len(table)
    train_s = float(table["wall_time_s"].dropna().iloc[-1]) if "wall_time_s" in table else None
    out = {"model": args.model, "protocol": args.protocol, "seed": args.seed, "overrides": overrides,
           "test": {k: round(test[k], 4) for k in ("ndcg@10", "recall@10", "mrr@10") if k in test},
           "epochs": epochs, "epoch_seconds": round(train_s / epochs, 2) if train_s and epochs else None,
           "wall_s": round(wall, 1), "split": {k: int(v) for k, v in split.summary().items()}}
    if cold is not None:
        res = cold.evaluate(model)
        out["cold_test"] = {k: round(res[k], 4) for k in ("ndcg@10", "recall@10", "mrr@10")}
        out["cold"] = cold.summary()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
