"""``recstudio compare``: a table and a grouped bar chart of the test metrics of several runs.

Usage (also ``python -m recstudio compare ...``):
    recstudio compare runs/BPR-ml-100k-<time> runs/EASE-ml-100k-<time>
    recstudio compare runs/                          # every finished run in a folder
    recstudio compare 'runs/BPR-*' --metrics ndcg@10 recall@10 --output bpr.png

Each run directory needs its test_metrics.json (and config.yaml for the model / dataset label).
The table marks the best value of each metric with '*'; a run without a metric shows '-'.
The chart goes to compare.png in the current folder unless --output says otherwise.
"""
import argparse
import sys
from typing import List, Optional

from recstudio.utils.errors import RecStudioError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recstudio compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories, folders of runs, or glob patterns")
    parser.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                        help="metrics to show, e.g. ndcg@10 recall@10 (default: every metric of any run)")
    parser.add_argument("--output", default="compare.png",
                        help="the bar chart's file (default compare.png; .svg / .pdf also work)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Print the comparison table, write the chart; 0 on success, 2 on bad input (message on stderr).

    Args:
        argv: the arguments after ``compare`` (default ``sys.argv[1:]``).

    Example:
        >>> main(["runs/", "--metrics", "ndcg@10", "--output", "ndcg.png"])   # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from recstudio.reporting.compare import chart_format, compare_runs, format_comparison, plot_comparison
    try:
        chart_format(args.output)  # a bad --output fails before anything is printed
        table = compare_runs(args.runs, metrics=args.metrics)
        print(format_comparison(table))
        output = plot_comparison(table, args.output)
    except RecStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"chart: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
