"""``recstudio docs``: regenerate ``docs/models.md`` from the model registry and the models' YAML results.

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
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    from recstudio.reporting.model_table import render_models_md, write_models_md
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != render_models_md():
            print(f"{args.output} is stale: run `recstudio docs` (python -m recstudio docs) and commit it.",
                  file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    changed = write_models_md(args.output)
    print(f"{'wrote' if changed else 'unchanged:'} {args.output}")
    return 0
