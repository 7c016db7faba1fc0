"""``python -m recstudio.tune prepare CONFIG [-m MODEL] [-o OUT]``: see :mod:`recstudio.tune.experiment`."""
import sys

from recstudio.tune.experiment import main

if __name__ == "__main__":
    sys.exit(main())
