"""RecStudio command line: train and test a zoo model on a dataset.

Usage (also `recstudio train ...`):
    python run.py                                   # BPR on the bundled MovieLens-100K
    python run.py -m NCF -d ml-1m --embed_dim 128   # any config key as --key value
    python run.py -m BPR --help                     # every option of BPR, with defaults
    python run.py -d ml-100k --mode detail          # config, statistics and progress bars
    python run.py --resume runs/BPR-ml-100k-...     # continue a run from its last checkpoint
    python run.py --resume runs/BPR-ml-100k-... --epochs 50   # ... with more epochs
    python run.py --list-models | --list-datasets
"""
import argparse
import sys

from recstudio.utils.cli import parse_value
from recstudio.utils.errors import ConfigError, RecStudioError
from recstudio.utils.suggest import did_you_mean


def build_parser(model_cls=None) -> argparse.ArgumentParser:
    # allow_abbrev=False: otherwise the first pass (no config keys yet) reads --mode as an abbreviation of --model
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("-m", "--model", default=None, help="registered model name (default BPR)")
    parser.add_argument("-d", "--dataset", default=None,
                        help="registered dataset name (default ml-100k), or a RecBole atomic folder: a name found as "
                             "<data_dir>/<name>/<name>.inter, or the path of a folder holding <folder name>.inter")
    parser.add_argument("--config", default=None, help="a YAML file of config keys")
    parser.add_argument("--resume", default=None, metavar="RUN",
                        help="continue a run from its last checkpoint: its folder (runs/<model>-<dataset>-<time>) "
                             "or a checkpoint in it; only keys such as --epochs / --early_stop_patience may change "
                             "(docs/checkpoints.md)")
    parser.add_argument("--list-models", action="store_true", help="list registered models and exit")
    parser.add_argument("--list-datasets", action="store_true", help="list registered datasets and exit")
    if model_cls is not None:
        from recstudio.model.base.config import all_options
        group = parser.add_argument_group(f"{model_cls.model_name} options (any of them as --key value)")
        for key, opt in all_options(model_cls).items():
            choices = f" {{{', '.join(map(str, opt.choices))}}}" if opt.choices else ""
            group.add_argument(f"--{key}", type=parse_value, default=argparse.SUPPRESS, metavar="",
                               help=f"{opt.help}{choices} (default: {opt.default!r})")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = build_parser().parse_known_args([a for a in argv if a not in ("-h", "--help")])
    try:
        from recstudio.model.registry import get_model, list_models
        if first.list_models:
            for m in list_models():
                print(f"{m['name']:12s} {m['category']:10s} {m['base']:10s} {m['dataset_type']:8s} {m['paper']}")
            return 0
        if first.list_datasets:
            from recstudio.data.registry import list_datasets
            print("\n".join(list_datasets()))
            return 0
        if first.resume is not None and first.model is None:
            from recstudio.train.checkpoint import resumed_model_name
            cls = get_model(resumed_model_name(first.resume))
        else:
            cls = get_model(first.model or "BPR")
        parser = build_parser(cls)
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            from recstudio.model.base.config import all_options
            key = unknown[0].lstrip("-").split("=")[0]
            raise ConfigError(f"unknown option {unknown[0]!r} for {cls.model_name}."
                              + did_you_mean(key, all_options(cls)) + f" See python run.py -m {cls.model_name} --help.")
        overrides = {k: v for k, v in vars(args).items()
                     if k not in ("model", "dataset", "config", "resume", "list_models", "list_datasets")}
        from recstudio.quickstart import run
        run(model=first.model, dataset=first.dataset, config_file=args.config, resume=first.resume, **overrides)
    except RecStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
