"""RecStudio command line.

Loads a dataset (bundled MovieLens-100K by default; registered datasets are downloaded,
verified and cached on first use), preprocesses and splits it, and reports what it got.

Usage:
    python run.py                                  # ml-100k, default protocol
    python run.py -d ml-1m --min_user_inter 5      # any data-config key as --key value
    python run.py -d ml-100k --mode detail         # full statistics table
    python run.py --list-datasets
"""
import argparse
import sys
import time

from recstudio.utils.cli import parse_overrides
from recstudio.utils.errors import RecStudioError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="ml-100k", help="registered dataset name (default ml-100k)")
    parser.add_argument("--mode", choices=("light", "detail"), default="light",
                        help="detail prints the full statistics table")
    parser.add_argument("--list-datasets", action="store_true", help="list registered datasets and exit")
    args, rest = parser.parse_known_args(argv)
    try:
        from recstudio.data import load_dataset
        from recstudio.data.registry import list_datasets
        if args.list_datasets:
            print("\n".join(list_datasets()))
            return 0
        overrides = parse_overrides(rest)
        t = time.perf_counter()
        ds = load_dataset(args.dataset, **overrides)
        split = ds.split()
        elapsed = time.perf_counter() - t
    except RecStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{ds!r} loaded and split in {elapsed:.2f} s")
    if args.mode == "detail":
        print(ds.statistics().table())
    s = split.summary()
    print(f"split {split.config['split_mode']} {split.config['split_ratio']} ({split.config['split_order']}): "
          + ", ".join(f"{p} {s[p + '_interactions']} interactions / {s[p + '_users']} users"
                      for p in ("train", "valid", "test")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
