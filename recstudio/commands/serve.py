"""``recstudio serve``: serve a trained model's recommendations over HTTP (FastAPI + uvicorn).

Usage (also ``python -m recstudio serve ...``):
    recstudio serve --checkpoint runs/BPR-ml-100k-<time>             # the run's best.ckpt
    recstudio serve --checkpoint bpr.pt --port 8080 --ann hnsw
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"users": ["196"], "k": 5}'

--checkpoint takes a checkpoint file (model.save or a run's checkpoints/*.ckpt) or a run directory
(its checkpoints/best.ckpt, else last.ckpt). --ann picks the top-k index of item-tower models with a
decomposable score function: flat (exact faiss), ivf, hnsw, or exact (torch top-k); by default the
checkpoint's own ann key (usually none, i.e. exact torch top-k, which is the fastest on catalogues
of a few thousand items; faiss pays off on large ones). The index is built once at startup.
Endpoints and examples: docs/serving.md; the running server documents itself at /docs.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from recstudio.utils.errors import ConfigError, DataError, RecStudioError
from recstudio.utils.cli import choice_type

ANN_CHOICES = ("exact", "flat", "ivf", "hnsw")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recstudio serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint file or a run directory (its checkpoints/best.ckpt)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--ann", default=None, choices=ANN_CHOICES, type=choice_type(ANN_CHOICES),
                        help="top-k index: exact (torch), flat, ivf, hnsw (default: the checkpoint's ann key)")
    parser.add_argument("--torch-threads", type=int, default=1, metavar="N",
                        help="torch intra-op threads for inference (default 1: a request scores a few users, "
                             "and more threads only contend with the server's own)")
    levels = ("critical", "error", "warning", "info", "debug")
    parser.add_argument("--log-level", default="warning", choices=levels, type=choice_type(levels),
                        help="uvicorn log level (default warning; info logs every request)")
    return parser


def resolve_checkpoint(path) -> Path:
    """The checkpoint file of ``path``: the file itself, or a run directory's best / last checkpoint.

    Raises:
        DataError: a missing path, or a directory without a checkpoint.

    Example:
        >>> resolve_checkpoint("runs/BPR-ml-100k-20250101-120000-000000")           # doctest: +SKIP
        PosixPath('runs/BPR-ml-100k-20250101-120000-000000/checkpoints/best.ckpt')
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.ckpt", path / "checkpoints" / "last.ckpt",
                          path / "best.ckpt", path / "last.ckpt"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{path} is a directory without checkpoints/best.ckpt or checkpoints/last.ckpt; give a "
                        f"run directory of `recstudio train` or a checkpoint file.")
    raise DataError(f"checkpoint {path} does not exist; give a checkpoint file or a run directory.")


def choose_ann(model, ann: Optional[str]) -> Optional[str]:
    """The ``ann`` key to serve with: the checkpoint's own for ``None``, no index for ``'exact'``."""
    if ann is None:
        return model.config.get("ann")
    return None if ann == "exact" else ann


def main(argv: Optional[List[str]] = None) -> int:
    """Load the checkpoint, build the app and serve until interrupted; 2 on bad input (stderr)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, got {args.port}.", file=sys.stderr)
        return 2
    if args.torch_threads < 1:
        print(f"error: --torch-threads must be at least 1, got {args.torch_threads}.", file=sys.stderr)
        return 2
    try:
        from recstudio.serving.app import SERVING_EXTRA_HINT, create_app, require_serving
        require_serving()
        try:
            import uvicorn
        except ImportError as e:
            raise ConfigError(f"serving needs uvicorn, which is not installed ({e}); {SERVING_EXTRA_HINT}.") from e
        import torch

        import recstudio
        torch.set_num_threads(args.torch_threads)
        checkpoint = resolve_checkpoint(args.checkpoint)
        model = recstudio.load(checkpoint)
        model.configure_ann(choose_ann(model, args.ann))
        app = create_app(model)
    except RecStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    health = app.state.engine.health()
    print(f"serving {health['model']} ({health['num_users']} users, {health['num_items']} items, "
          f"top-k by {health['ann'] or 'exact torch'}) from {checkpoint} on http://{args.host}:{args.port} "
          f"(API docs at /docs; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
