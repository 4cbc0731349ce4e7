"""``spert calibrate``: fit a model's calibration on held-out data and store it with the model."""

from __future__ import annotations

import argparse
from typing import Any

from spert.calibration import METHODS, THRESHOLDS, calibrate
from spert.cli.common import CliError, add_device_option
from spert.data import read_dataset
from spert.evaluation.card import CARD_FILE, write_model_card
from spert.model.calibration import Calibration
from spert.model.directory import find_model_dir, write_calibration
from spert.runtime.predictor import SpERT
from spert.training.checkpoint import read_run_info


def cmd_calibrate(args: argparse.Namespace) -> None:
    if args.target_precision is not None and not 0.0 < args.target_precision <= 1.0:
        raise CliError(f"--target-precision must lie in (0, 1], got {args.target_precision}")
    if args.target_precision is not None and args.thresholds == "entity":
        raise CliError("--target-precision sets relation thresholds: not with --thresholds entity")
    model = SpERT.load(args.model, device=args.device, calibration=False)
    data = read_dataset(args.data, model.types)
    calibration = calibrate(
        model,
        data,
        method=args.method,
        target_precision=args.target_precision,
        data_name=str(args.data),
        batch_size=args.batch_size,
        thresholds=args.thresholds,
    )
    write_calibration(args.model, calibration)
    print(format_calibration(calibration))
    print(f"saved {args.model}/calibration.json")
    model_dir = find_model_dir(args.model)
    if (model_dir / CARD_FILE).is_file():  # its limits name the thresholds: write it again
        run = read_run_info(model_dir.parent)  # OUT/run.json of OUT/final or OUT/best
        print(f"model card: {write_model_card(model_dir, run)}")


def format_calibration(calibration: Calibration) -> str:
    """What ``spert calibrate`` prints: method, temperatures, thresholds, ECE and F1."""
    m = calibration.metrics
    ent, rel = m.get("entities", {}), m.get("relations_strict", {})
    held = calibration.fitted_on.get("held_out_nll")
    chosen = calibration.relation_method + (f" (held-out NLL per pair: {held})" if held else "")
    lines = [
        f"fitted on {calibration.fitted_on.get('data')} "
        f"({calibration.fitted_on.get('sentences')} sentences; cut-offs tuned: "
        f"{calibration.fitted_on.get('thresholds', 'both')})",
        f"entity temperature {calibration.entity_temperature:.4f}; entity cut-off "
        + (
            "argmax (as uncalibrated)"
            if calibration.entity_threshold is None
            else f"{calibration.entity_threshold:.4f}"
        ),
        f"relation calibration: {chosen}",
        f"{'relation type':>20} {'scale':>8} {'bias':>8} {'threshold':>10}",
    ]
    for name, a, b, t in zip(
        calibration.relation_types,
        calibration.relation_scale,
        calibration.relation_bias,
        calibration.relation_thresholds,
    ):
        lines.append(f"{name:>20} {a:8.4f} {b:8.4f} {t:10.4f}")
    floor = m.get("score_floor")
    lines += [
        f"on this data (relations scored above {floor}):",
        f"  entity ECE {ent.get('ece_before')} -> {ent.get('ece_after')}; "
        f"micro F1 {ent.get('micro_f1_before')} -> {ent.get('micro_f1_after')}",
        f"  relation (strict) ECE {rel.get('ece_before')} -> {rel.get('ece_after')}; "
        f"micro F1 {rel.get('micro_f1_default')} (uncalibrated, default threshold) -> "
        f"{rel.get('micro_f1_tuned')} (tuned thresholds)",
    ]
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add ``calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="fit calibrated scores and per-type thresholds on held-out data",
        description="Fit, on held-out gold data (e.g. the dev set), a temperature for the "
        "entity classifier, a calibration per relation type and a threshold per relation type "
        "(and the entity 'none' cut-off) maximizing micro F1 on that data, or meeting "
        "--target-precision. Stored as MODEL/calibration.json; predict, extract, eval, serve "
        "and SpERT.load use it (--no-calibration / calibration=False bypass it).",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="held-out gold data (SpERT JSON or JSONL)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="relation calibration: temperature (one per type), platt (scale and bias per "
        "type) or auto: the one with the lower held-out cross-entropy in a two-fold split "
        "(default: auto)",
    )
    p.add_argument(
        "--target-precision",
        type=float,
        default=None,
        metavar="P",
        help="per relation type, the lowest threshold whose relations reach precision P on "
        "this data (default: the thresholds that maximize micro F1)",
    )
    p.add_argument(
        "--thresholds",
        choices=THRESHOLDS,
        default="both",
        help="which cut-offs are tuned on this data: the entity 'none' cut-off and the "
        "per-type relation thresholds (both), only the entity cut-off (entity: relations keep "
        "the uncalibrated threshold) or only the relation thresholds (default: both)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="sentences per encoder batch")
    add_device_option(p)
    p.set_defaults(func=cmd_calibrate)
