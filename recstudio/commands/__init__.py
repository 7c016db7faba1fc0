"""Subcommands of ``python -m recstudio`` / ``recstudio``: one module per command, each with ``main(argv)``."""
