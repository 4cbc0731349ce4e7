"""``spert demo``: train the default model on the bundled sample and extract from text."""

from __future__ import annotations

import argparse
from typing import Any

from spert.cli.common import add_device_option
from spert.demo import DEFAULT_OUT, DEMO_CONFIG, run_demo


def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(
        out_dir=args.out,
        epochs=args.epochs,
        model_dir=args.model_dir,
        device=args.device,
    )


def register(sub: Any) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help="train on a bundled news sample and extract from example text",
        description="Train SpERT with the bundled encoder on a small sample of news sentences "
        "(CoNLL04 types; about 3 minutes on 2 CPU cores), save it as the default model, "
        "extract entities and relations from example paragraphs and write OUT/demo.html.",
    )
    p.add_argument(
        "--out", default=str(DEFAULT_OUT), help=f"output directory (default: ./{DEFAULT_OUT})"
    )
    p.add_argument(
        "--model-dir",
        default=None,
        help="where to save the model (default: the default model directory, "
        "$SPERT_HOME/default-model or ~/.cache/spert/default-model)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs (default: {DEMO_CONFIG.epochs})",
    )
    add_device_option(p)
    p.set_defaults(func=cmd_demo)
