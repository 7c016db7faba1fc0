"""``recstudio docs``: regenerate ``docs/models.md`` (from the model registry and the models' YAML results) and
the reproducibility cards ``docs/cards/*.md`` (from their measurements, ``recstudio.reporting.cards``).

Usage (also ``python -m recstudio docs ...``):
    recstudio docs                       # rewrite docs/models.md
    recstudio docs --check               # exit 1 (and say so) when docs/models.md is stale
    recstudio docs --output other.md
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

DEFAULT = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="recstudio docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT, help=f"the file to write (default {DEFAULT})")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    parser.add_argument("--cards-dir", type=Path, default=None,
                        help="the reproducibility cards' folder (default docs/cards): <Model>/<dataset>.json in, "
                             "<Model>.md and README.md out")
    args = parser.parse_args(argv)
    from recstudio.reporting.cards import CARDS_DIR, render_all
    from recstudio.reporting.model_table import render_models_md
    cards_dir = args.cards_dir or CARDS_DIR
    files = {args.output: render_models_md(cards_dir), **render_all(cards_dir)}
    if args.check:
        stale = [p for p, text in files.items() if (p.read_text() if p.is_file() else "") != text]
        if stale:
            print(f"stale: {', '.join(str(p) for p in stale)}: run `recstudio docs` (python -m recstudio docs) "
                  "and commit them.", file=sys.stderr)
            return 1
        print(f"{args.output} and {len(files) - 1} card file(s) are up to date")
        return 0
    for path, text in files.items():
        old = path.read_text() if path.is_file() else None
        if old != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        print(f"{'wrote' if old != text else 'unchanged:'} {path}")
    return 0
