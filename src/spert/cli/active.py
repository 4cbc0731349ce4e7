"""``spert select``: which documents to annotate next (:mod:`spert.active.selection`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from spert.active.selection import STRATEGIES, select
from spert.cli.common import CliError, add_prediction_options, load_model
from spert.runtime.io import guess_input_format, open_input, read_inputs
from spert.utils import atomic_write_text

logger = logging.getLogger("spert")


def cmd_select(args: argparse.Namespace) -> None:
    if args.budget < 1:
        raise CliError(f"--budget must be at least 1, got {args.budget}")
    with open_input(args.input) as stream:
        inputs = list(read_inputs(stream, guess_input_format(args.input), args.input))
    model = None
    if args.strategy != "random":
        model = load_model(args.model, args.device, args.runtime, args.calibration)
    chosen, _ = select(
        model,
        inputs,
        args.budget,
        args.strategy,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    lines = []
    for item in chosen:
        doc_id, content = inputs[item.index]
        field = "text" if isinstance(content, str) else "tokens"
        record = {"id": doc_id, field: content, "rank": item.rank}
        if args.strategy != "random":
            record[args.strategy] = round(item.score, 6)
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    if args.out:
        atomic_write_text(args.out, "".join(lines))
        logger.info(
            "%d of %d documents selected by %s -> %s",
            len(chosen),
            len(inputs),
            args.strategy,
            args.out,
        )
    else:
        sys.stdout.write("".join(lines))


def register(sub: Any) -> None:
    """Add ``select``."""
    p = sub.add_parser(
        "select",
        help="choose the documents to annotate next",
        description="Rank unlabeled documents by what annotating them would teach the model and "
        "write the first --budget of them, best first, as JSON Lines (id, text, rank and "
        "score). uncertainty: the summed binary entropy of the (calibrated) scores of the "
        "predicted entities and relations, per word; margin: 1 - min |2p - 1| over them (the "
        "most ambiguous single decision); random: a seeded uniform draw (the baseline). The "
        "Label Studio backend's task scores are the uncertainty.",
    )
    p.add_argument("--model", help="model directory (default: the `spert demo` model)")
    p.add_argument(
        "--input",
        required=True,
        help="documents: JSON Lines with 'text' (or 'tokens') and 'id', or plain text, one "
        "document a line; - for stdin",
    )
    p.add_argument("--budget", type=int, required=True, help="how many documents to choose")
    p.add_argument("--strategy", choices=STRATEGIES, default="uncertainty", help="%(default)s")
    p.add_argument("--out", help="output JSON Lines file (default: stdout)")
    p.add_argument("--seed", type=int, default=0, help="seed of --strategy random (default: 0)")
    add_prediction_options(p)  # --batch-size, --device, --runtime, --no-calibration
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_select)
