"""RecStudio command line: train and test a zoo model on a dataset (``recstudio train`` does the same).

Usage:
    python run.py                                   # BPR on the bundled MovieLens-100K
    python run.py -m NCF -d ml-1m --embed_dim 128   # any config key as --key value
    python run.py -m BPR --help                     # every option of BPR, with defaults
"""
from recstudio.commands.train import main
from recstudio.utils.cli import exit_process

if __name__ == "__main__":
    exit_process(main())
