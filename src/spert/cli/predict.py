"""Prediction commands: ``spert eval``, ``predict``, ``extract``, ``export-onnx``,
``ensemble`` and ``visualize``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spert.api import SpERT
from spert.cli.common import CliError, add_prediction_options, load_model
from spert.config import RayExtractSettings
from spert.data import (
    DataError,
    Sentence,
    check_dataset,
    read_dataset,
    read_types,
    write_dataset,
)
from spert.evaluation import format_metrics
from spert.evaluation.card import write_model_card
from spert.evaluation.error_report import ReportInput, report_available, write_report
from spert.evaluation.errors import SIDE_NAMES
from spert.evaluation.reliability import SCORE_FLOOR
from spert.model.directory import find_model_dir
from spert.model.onnx import export_onnx
from spert.render.pages import (
    COMPARISON_TITLE,
    PREDICTIONS_TITLE,
    render_comparison,
    render_sentences,
    write_html,
)
from spert.runtime.io import (
    FORMATS,
    INPUT_FORMATS,
    INTERRUPTED_EXIT_CODE,
    DocumentWriter,
    guess_input_format,
    guess_output_format,
    open_input,
    read_inputs,
    run_extract,
)
from spert.runtime.ray import extract_shards
from spert.training.checkpoint import read_run_info
from spert.utils import atomic_write_text, sigterm_as_interrupt


def cmd_eval(args: argparse.Namespace) -> None:
    if args.report and not report_available():
        raise CliError("--report draws its plots with matplotlib: pip install 'spert[experiments]'")
    model = load_model(args.model, args.device, args.runtime, args.calibration)
    data = read_dataset(args.data, model.types)
    metrics, predictions = model.evaluate(
        data, no_overlap=args.no_overlap, batch_size=args.batch_size, progress=True
    )
    print(format_metrics(metrics))
    if args.out:
        atomic_write_text(args.out, json.dumps(metrics, indent=2))
    if args.predictions:
        write_dataset(args.predictions, predictions)
    if args.card:
        run = read_run_info(Path(args.model).parent)  # OUT/run.json of OUT/final or OUT/best
        card = write_model_card(args.model, run, {args.card: (args.data, metrics)})
        print(f"model card: {card}")
    if args.report:
        _eval_report(args, model, data, predictions, metrics)


def _eval_report(
    args: argparse.Namespace,
    model: SpERT,
    data: list[Sentence],
    predictions: list[Sentence],
    metrics: dict[str, Any],
) -> None:
    """``spert eval --report DIR``: predict again with relations kept down to the score floor
    (with and without the model's calibration, where it has one), write the report (see
    spert.evaluation.error_report) and print its headline numbers."""
    floor = model.predict(
        data, batch_size=args.batch_size, progress=True, relation_threshold=SCORE_FLOOR
    )
    uncalibrated = None
    calibration = model.calibration
    if calibration is not None:  # the same model's raw scores: the "before" of the report
        uncalibrated = model.predict(
            data,
            batch_size=args.batch_size,
            progress=True,
            relation_threshold=SCORE_FLOOR,
            calibration=None,
        )
    info = {
        "model": args.model,
        "data": args.data,
        "runtime": args.runtime,
        "calibration": "none" if calibration is None else "yes (spert calibrate)",
        "relation score floor of curves and reliability": SCORE_FLOOR,
    }
    if not args.calibration:
        info["calibration"] = "off (--no-calibration)"
    if args.no_overlap:
        info["note"] = (
            "metrics without overlapping entities (--no-overlap); the error breakdown, curves "
            "and reliability count every entity"
        )
    report = ReportInput(
        gold=data,
        predictions=predictions,
        types=model.types,
        floor_predictions=floor,
        floor_uncalibrated=uncalibrated,
        relation_thresholds=dict(zip(model.types.relation_names, model.relation_thresholds())),
        entity_threshold=calibration.entity_threshold if calibration is not None else None,
        metrics=metrics,
        info=info,
    )
    numbers = write_report(args.report, report)
    print(f"report: {Path(args.report) / 'report.md'}")
    for section in ("entities", "relations"):
        r = numbers["reliability"][section]
        after = f" -> {r['after']['ece']:.4f} calibrated" if r["after"] else ""
        print(f"  {section} ECE: {r['before']['ece']:.4f}{after}")
    errors = numbers["errors"]
    for section in ("entities", "relations"):
        totals = errors["totals"][section]
        for side in ("fp", "fn"):
            kinds = errors["counts"][section][side]
            if totals[side]:
                kind, n = max(kinds.items(), key=lambda item: item[1])
                print(
                    f"  {section} {SIDE_NAMES[side]}: {totals[side]}, most often "
                    f"{kind.replace('_', ' ')} ({n})"
                )


def cmd_predict(args: argparse.Namespace) -> None:
    model = load_model(args.model, args.device, args.runtime, args.calibration)
    sentences, problems = check_dataset(args.input, None, annotated=False)
    if problems:
        raise DataError("; ".join(str(p) for p in problems[:5]))
    predictions = model.predict(sentences, batch_size=args.batch_size, progress=True)
    write_dataset(args.out, predictions)
    n_ent = sum(len(p.entities) for p in predictions)
    n_rel = sum(len(p.relations) for p in predictions)
    print(f"{len(predictions)} sentences, {n_ent} entities, {n_rel} relations -> {args.out}")


def cmd_extract(args: argparse.Namespace) -> None:
    """``spert extract``: raw text in, documents with entities and relations out, streamed;
    an interrupted run leaves a valid output of what was done (see spert.runtime.io)."""
    if getattr(args, "ray", False):
        cmd_extract_ray(args)
        return
    if args.batch_size is not None and args.batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {args.batch_size}")
    input_format = args.input_format or guess_input_format(args.input)
    fmt = args.format or guess_output_format(args.out)
    target = "stdout" if args.out == "-" else args.out
    writer: DocumentWriter | None = None
    with sigterm_as_interrupt():
        try:
            with open_input(args.input) as stream:
                model = load_model(args.model, args.device, args.runtime, args.calibration)
                name = "stdin" if args.input == "-" else Path(args.input).name
                with DocumentWriter(
                    args.out,
                    fmt,
                    title=f"spert extract: {name}",
                    types=model.types,
                    model_version=model_version(args.model),
                    overwrite=args.overwrite,
                ) as writer:
                    inputs = read_inputs(stream, input_format, args.input)
                    run_extract(model, inputs, writer, args.batch_size, not args.quiet)
        except KeyboardInterrupt:
            done = f"; wrote {writer.documents} document(s) to {target}" if writer else ""
            print(f"spert: interrupted{done}", file=sys.stderr)
            raise SystemExit(INTERRUPTED_EXIT_CODE) from None
        except DataError as e:
            if writer is not None and writer.documents:
                raise DataError(f"{e} (wrote {writer.documents} document(s) to {target})") from e
            raise
    if not args.quiet:
        print(
            f"{writer.documents} documents, {writer.entities} entities, "
            f"{writer.relations} relations -> {target}",
            file=sys.stderr,
        )


def model_version(model: str | None) -> str:
    """The model version Label Studio shows with predictions: the model directory's last two
    path parts (``runs/bionlp/final`` -> ``bionlp/final``), as ``spert extract`` was given it
    (the default model: its directory)."""
    return "/".join(find_model_dir(model).resolve().parts[-2:])


def cmd_extract_ray(args: Any) -> None:
    """``spert extract --ray``: see the module docstring."""
    if args.out == "-":
        raise DataError("--ray writes one JSONL file per input shard: give --out DIR")
    if args.format not in (None, "jsonl"):
        raise DataError(f"--ray writes JSON Lines shards; --format {args.format} is not supported")
    if args.device is not None:
        raise DataError(
            "--device does not apply with --ray: actors use a GPU when --gpus-per-actor > 0"
        )
    if not args.calibration:
        raise DataError("--no-calibration does not apply with --ray: actors load the model as is")
    with sigterm_as_interrupt():
        try:
            summary = extract_shards(
                args.input,
                args.out,
                args.model,
                input_format=args.input_format,
                actors=args.actors,
                cpus_per_actor=args.cpus_per_actor,
                gpus_per_actor=args.gpus_per_actor,
                batch_size=args.batch_size,
                docs_per_batch=args.docs_per_batch,
                address=args.ray_address,
                progress=not args.quiet,
            )
        except KeyboardInterrupt:
            print(
                f"spert: interrupted; finished shards are in {args.out}, rerun to do the rest",
                file=sys.stderr,
            )
            raise SystemExit(INTERRUPTED_EXIT_CODE) from None
    if not args.quiet:
        print(
            f"{summary.written} shard(s) written, {summary.skipped} skipped (finished before), "
            f"{summary.documents} documents, {summary.entities} entities, "
            f"{summary.relations} relations -> {args.out} ({summary.seconds:.1f} s, "
            f"{summary.actors} actor(s))",
            file=sys.stderr,
        )


def cmd_export_onnx(args: argparse.Namespace) -> None:
    for path in export_onnx(args.model, int8=args.int8):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def cmd_ensemble(args: argparse.Namespace) -> None:
    models = [SpERT.load(path, device="cpu", calibration=False) for path in args.models]
    SpERT.ensemble(models, names=args.models).save(args.out)
    print(f"ensemble of {len(models)} models -> {args.out}")


def cmd_visualize(args: argparse.Namespace) -> None:
    """``spert visualize``: an HTML page of predictions, compared with gold if given."""
    types = read_types(args.types)
    predicted = read_dataset(args.pred, types)
    if args.gold:
        gold = read_dataset(args.gold, types)
        page = render_comparison(gold, predicted, types, title=args.title or COMPARISON_TITLE)
    else:
        page = render_sentences(predicted, title=args.title or PREDICTIONS_TITLE)
    write_html(args.out, page)
    print(f"{len(predicted)} sentences -> {args.out}")


def register(sub: Any) -> None:
    """Add ``eval``, ``predict``, ``extract``, ``export-onnx``, ``ensemble`` and ``visualize``."""
    _add_eval(sub)
    _add_predict(sub)
    _add_extract(sub)
    _add_export_onnx(sub)
    _add_ensemble(sub)
    _add_visualize(sub)


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on gold data",
        description="Print precision, recall and F1 (micro, macro, per type).",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--data", required=True, help="gold data (SpERT JSON or JSONL)")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--predictions", help="also write the predictions here")
    p.add_argument(
        "--no-overlap",
        action="store_true",
        help="ignore overlapping entities (the ADE 'without overlap' setting)",
    )
    p.add_argument(
        "--card",
        nargs="?",
        const="test",
        metavar="SPLIT",
        help="record these metrics beside the model as SPLIT (default: test) and rewrite its "
        "model card, MODEL/README.md",
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="also write an error report into DIR: reliability diagrams and ECE (before and "
        "after calibration), precision-recall curves per type, the entity confusion matrix, "
        "the error breakdown, the worst sentences per error kind (errors.html) and a summary "
        "(report.md, report.json); needs matplotlib",
    )
    add_prediction_options(p)
    p.set_defaults(func=cmd_eval)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict entities and relations",
        description="Read tokenized sentences (SpERT JSON or JSONL), write them "
        "with predicted entities and relations and their scores.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", required=True, help="SpERT JSON or JSONL with 'tokens'")
    p.add_argument("--out", required=True, help="output file (.jsonl for JSON Lines)")
    add_prediction_options(p)
    p.set_defaults(func=cmd_predict)


def _add_extract(sub: Any) -> None:
    p = sub.add_parser(
        "extract",
        help="extract entities and relations from raw text",
        description="Split raw text into sentences and words, predict entities and relations, "
        "and stream the results (character offsets into the text) to the output. An "
        "interrupted run (Ctrl-C, SIGTERM) leaves a valid output with the documents done so "
        "far and exits with code 130.",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model directory (default: the model of `spert demo`, "
        "$SPERT_HOME/default-model or ~/.cache/spert/default-model)",
    )
    p.add_argument("--input", default="-", help="input file, or - for stdin (default: -)")
    p.add_argument("--out", default="-", help="output file, or - for stdout (default: -)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: from the --out suffix .json/.tsv/.html, else jsonl); "
        "brat, label-studio and doccano write what that annotation tool imports, to review the "
        "predictions: brat a folder (--out DIR) of .txt + .ann per document and annotation.conf, "
        "label-studio a JSON list of tasks with predictions (model version: the model "
        "directory's last two path parts) and OUT_STEM.label_config.xml, doccano JSON Lines "
        "and the label files OUT_STEM.span_types.json and OUT_STEM.relation_types.json",
    )
    p.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default=None,
        help="lines: one document per non-empty line; text: the whole input is one "
        "document; jsonl: records with 'text' (or 'tokens') and optional 'id' "
        "(default: jsonl for *.jsonl inputs, else lines)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--format brat: replace the documents of an --out folder that holds some (else it "
        "is refused before any prediction)",
    )
    add_prediction_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    ray = p.add_argument_group(
        "corpus scale (Ray Data)",
        "with --ray, --input is a file, a directory or a (quoted) glob of shards and --out a "
        "directory that gets one OUT/<shard>.jsonl per input shard, records as --format jsonl "
        "writes them; a rerun skips finished shards",
    )
    ray.add_argument(
        "--ray", action="store_true", help="extract with a pool of model actors on Ray Data"
    )
    RayExtractSettings.add_arguments(ray)  # --actors, --cpus-per-actor, ...
    ray.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join, e.g. auto or ray://HOST:10001 "
        "(default: $RAY_ADDRESS, else a local Ray instance)",
    )
    p.set_defaults(func=cmd_extract)


def _add_export_onnx(sub: Any) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a model's encoder to ONNX for CPU inference with onnxruntime",
        description="Write MODEL/onnx/encoder.onnx (and with --int8 its dynamically quantized "
        "copy encoder.int8.onnx). Use them with --runtime onnx / onnx-int8 in predict, eval and "
        "extract, or SpERT.load(MODEL, runtime='onnx').",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--int8", action="store_true", help="also write an int8-quantized copy")
    p.set_defaults(func=cmd_export_onnx)


def _add_ensemble(sub: Any) -> None:
    p = sub.add_parser(
        "ensemble",
        help="combine models trained alike into one that averages their predictions",
        description="Write one model directory that holds copies of the MODEL directories "
        "(trained with the same types, encoder and span settings, e.g. other seeds) and "
        "averages their entity and relation probabilities. It loads like any model (eval, "
        "predict, extract, serve, SpERT.load), with the torch runtimes; it predicts about as "
        "many times slower as it has members. The members' calibrations are not kept: "
        "calibrate the ensemble itself (spert calibrate --model OUT --data DEV).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model directories (at least 2)")
    p.add_argument("--out", required=True, help="the ensemble directory to write")
    p.set_defaults(func=cmd_ensemble)


def _add_visualize(sub: Any) -> None:
    p = sub.add_parser(
        "visualize",
        help="write an HTML page of predictions (vs gold)",
        description="Write a self-contained HTML page showing entities and relations; with "
        "--gold, each is marked TP (correct), FP (predicted only) or FN (gold only).",
    )
    p.add_argument("--gold", help="gold sentences (SpERT JSON or JSONL)")
    p.add_argument("--pred", required=True, help="predicted sentences, in the same order")
    p.add_argument("--types", required=True, help="types file")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=cmd_visualize)
