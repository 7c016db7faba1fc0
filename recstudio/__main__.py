"""``python -m recstudio <command> ...`` (also installed as the ``recstudio`` console script).

Commands:
    train     train and test a model (the same as ``python run.py``)
    serve     serve top-k recommendations of a checkpoint over HTTP
    compare   a table and a bar chart of the test metrics of several runs
    docs      regenerate docs/models.md from the registry (--check: fail when stale)
"""
import importlib
import sys
from typing import List, Optional

#: command -> (module with ``main(argv) -> int``, one-line help)
COMMANDS = {
    "train": ("recstudio.commands.train", "train and test a model (the same as python run.py)"),
    "serve": ("recstudio.commands.serve", "serve top-k recommendations of a checkpoint over HTTP"),
    "compare": ("recstudio.commands.compare", "table and bar chart of the test metrics of several runs"),
    "docs": ("recstudio.commands.docs", "regenerate docs/models.md from the registry (--check: fail when stale)"),
}


def usage() -> str:
    lines = ["usage: recstudio <command> [options]   (python -m recstudio <command> ...)", "", "commands:"]
    lines += [f"  {name:9s} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n'recstudio <command> --help' shows a command's options.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        from recstudio.utils.suggest import did_you_mean
        print(f"error: unknown command {name!r}.{did_you_mean(name, COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


def console_main() -> None:
    """The ``recstudio`` console script and ``python -m recstudio``: :func:`main`, then a fast exit
    (:func:`recstudio.utils.cli.exit_process`)."""
    from recstudio.utils.cli import exit_process
    exit_process(main())


if __name__ == "__main__":
    console_main()
