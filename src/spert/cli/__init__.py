"""The ``spert`` command line: a thin layer over the Python API, one module per command group.

Each group module has a ``register(subparsers)`` that adds its commands; each command is a
``cmd_*`` function of the parsed arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from spert.cli import active, calibrate, data, demo, formats, graph, predict, serve, train
from spert.cli.common import CliError, build_config
from spert.utils import exit_on_user_error, setup_logging
from spert.version import __version__

__all__ = ["CliError", "build_config", "build_parser", "main"]

#: The command groups, in the order of ``spert --help``.
GROUPS = (train, predict, active, calibrate, data, formats, graph, demo, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spert", description="SpERT: span-based joint entity and relation extraction."
    )
    parser.add_argument("--version", action="version", version=f"spert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    with exit_on_user_error():  # bad data, options or model directories: one line, no traceback
        args.func(args)


if __name__ == "__main__":
    main()
