"""The ``spert`` command line: a thin layer over the Python API, one module per command group.

Each group module has a ``register(subparsers)`` that adds its commands; each command is a
``cmd_*`` function of the parsed arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from spert.cli import active, calibrate, data, demo, formats, predict, serve, train
from spert.cli.common import CliError, build_config
from spert.config import ConfigError
from spert.data import DataError
from spert.model.directory import ModelError
from spert.version import __version__

__all__ = ["CliError", "build_config", "build_parser", "main"]

#: The command groups, in the order of ``spert --help``.
GROUPS = (train, predict, active, calibrate, data, formats, demo, serve)


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _quiet_transformers()
    try:
        args.func(args)
    except (DataError, ConfigError, CliError, FileNotFoundError) as e:
        sys.exit(f"spert: error: {e}")
    except KeyboardInterrupt:
        sys.exit("spert: interrupted")
    except ModelError as e:  # model directory and encoder problems
        sys.exit(f"spert: error: {e}")


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


if __name__ == "__main__":
    main()
