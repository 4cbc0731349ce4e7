"""``spert serve``: the options and entry point live in :mod:`spert.serve.cli`, which
``python -m spert.serve`` runs too."""

from __future__ import annotations

from typing import Any

from spert.serve.cli import DESCRIPTION, add_arguments, cmd_serve


def register(sub: Any) -> None:
    """Add ``serve``."""
    p = sub.add_parser("serve", help="serve a model over HTTP", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=cmd_serve)
