"""The ``spert`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spert import __version__
from spert.config import PRESETS, ConfigError, SpertConfig, preset, read_toml
from spert.data import DataError, atomic_write_text, check_dataset, read_dataset, read_types

logger = logging.getLogger("spert")


class CliError(Exception):
    """A user error reported as one line, without a traceback."""


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "hyper-parameters", "override the defaults and --config (SpertConfig fields)"
    )
    helps = SpertConfig.option_help()
    defaults = SpertConfig()
    for name, kind in SpertConfig.option_types().items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        text = f"{helps.get(name, '')} (default: {default})".strip()
        if kind is bool:
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
        else:
            group.add_argument(
                flag,
                dest=name,
                type=kind,
                default=argparse.SUPPRESS,
                metavar=kind.__name__.upper(),
                help=text,
            )


def build_config(args: argparse.Namespace) -> SpertConfig:
    values = preset(args.preset).to_dict()
    if args.config:
        values.update(read_toml(args.config))
        SpertConfig.from_dict(values, args.config)  # a bad key or value names the file
    overrides = {k: v for k, v in vars(args).items() if k in SpertConfig.option_types()}
    return SpertConfig.from_dict({**values, **overrides}, "command line")


def cmd_train(args: argparse.Namespace) -> None:
    from spert import distributed
    from spert.checkpoint import CheckpointError, read_run_info, write_run_info
    from spert.training import train

    main_rank = distributed.env_rank() == 0  # under torchrun, only rank 0 reports
    if not main_rank:
        logging.getLogger().setLevel(logging.WARNING)
    data_options = ("train", "dev", "types")
    paths = {name: getattr(args, name) for name in data_options}
    try:
        run = None
        if args.resume:
            out = Path(args.resume)
            if args.out and Path(args.out).resolve() != out.resolve():
                raise CliError(f"--out {args.out} and --resume {args.resume} differ; give one")
            if not out.is_dir():
                raise CliError(f"{out}: no such run directory to resume")
            run = read_run_info(out)  # the data files and options of `spert train`, if so
        else:
            out = Path(args.out) if args.out else None
        if run is not None:
            if args.preset != "paper" or args.config:
                raise CliError("--preset and --config do not go with --resume: the run has its own")
            overrides = {k: v for k, v in vars(args).items() if k in SpertConfig.option_types()}
            config = SpertConfig.from_dict({**run["config"], **overrides}, f"{out}/run.json")
            paths = {name: paths[name] or run.get(name) for name in data_options}
        else:
            needed = ("train", "types") if args.resume else ("train", "types", "out")
            missing = [f"--{name}" for name in needed if not getattr(args, name)]
            if missing:
                hint = " (no run.json in the run: give the data and the run's options)"
                raise CliError(
                    f"train: {', '.join(missing)} required"
                    + (hint if args.resume else " (or --resume OUT)")
                )
            config = build_config(args)
        assert out is not None
        types = read_types(paths["types"])
        train_data = read_dataset(paths["train"], types)
        dev_data = read_dataset(paths["dev"], types) if paths["dev"] else None
        if main_rank and not args.resume:
            write_run_info(out, paths, config)  # what `spert train --resume OUT` reads
        logger.info("training on %d sentences, %s", len(train_data), config)
        result = train(
            config,
            train_data,
            types,
            out,
            dev_data=dev_data,
            device=args.device,
            resume=bool(args.resume),
        )
    except CheckpointError as e:
        raise CliError(str(e)) from None
    if main_rank:
        if result.best_epoch is not None:
            logger.info("best dev epoch %d -> %s", result.best_epoch, out / "best")
        print(f"saved {out / 'final'}" + (f" and {out / 'best'}" if result.best_epoch else ""))


def _load_model(path: str, device: str | None, runtime: str = "torch") -> Any:
    from spert.api import SpERT

    return SpERT.load(path, device=device, runtime=runtime)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` for the commands that load a model to predict."""
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx", "onnx-int8"],  # spert.api.RUNTIMES (not imported: slow)
        default="torch",
        help="run the encoder in PyTorch, or on the CPU in onnxruntime from the files "
        "`spert export-onnx` writes (default: torch)",
    )


def cmd_eval(args: argparse.Namespace) -> None:
    from spert.data import write_dataset
    from spert.evaluation import format_metrics

    model = _load_model(args.model, args.device, args.runtime)
    data = read_dataset(args.data, model.types)
    metrics, predictions = model.evaluate(
        data, no_overlap=args.no_overlap, batch_size=args.batch_size, progress=True
    )
    print(format_metrics(metrics))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(metrics, indent=2))
    if args.predictions:
        write_dataset(args.predictions, predictions)


def cmd_predict(args: argparse.Namespace) -> None:
    from spert.data import write_dataset

    model = _load_model(args.model, args.device, args.runtime)
    sentences, problems = check_dataset(args.input, None, annotated=False)
    if problems:
        raise DataError("; ".join(str(p) for p in problems[:5]))
    predictions = model.predict(sentences, batch_size=args.batch_size, progress=True)
    write_dataset(args.out, predictions)
    n_ent = sum(len(p.entities) for p in predictions)
    n_rel = sum(len(p.relations) for p in predictions)
    print(f"{len(predictions)} sentences, {n_ent} entities, {n_rel} relations -> {args.out}")


def cmd_validate(args: argparse.Namespace) -> None:
    types = read_types(args.types)
    total = 0
    for path in args.data:
        sentences, problems = check_dataset(path, types)
        for problem in problems:
            print(problem)
        total += len(problems)
        n_ent = sum(len(s.entities) for s in sentences)
        n_rel = sum(len(s.relations) for s in sentences)
        print(
            f"{path}: {len(sentences)} valid sentences, {n_ent} entities, {n_rel} relations, "
            f"{len(problems)} problem(s)"
        )
    if total:
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spert", description="SpERT: span-based joint entity and relation extraction."
    )
    parser.add_argument("--version", action="version", version=f"spert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a model",
        description="Train SpERT; writes "
        "OUT/best (best dev relation strict micro F1), OUT/final, OUT/metrics.jsonl and "
        "resumable checkpoints in OUT/checkpoints. For several processes (GPUs, nodes), launch "
        "it with torchrun: torchrun --nproc_per_node N -m spert train ...",
    )
    p.add_argument("--train", help="training set (SpERT JSON or JSONL)")
    p.add_argument("--dev", help="dev set, evaluated after each epoch")
    p.add_argument("--types", help="types file")
    p.add_argument("--out", help="output directory")
    p.add_argument(
        "--resume",
        metavar="OUT",
        help="continue the interrupted run in OUT from its newest checkpoint (its data files "
        "and options come from OUT/run.json)",
    )
    p.add_argument(
        "--preset",
        default="paper",
        choices=sorted(PRESETS),
        help="named configuration to start from (default: paper; with --resume, the run's "
        "own options are used)",
    )
    p.add_argument(
        "--config", help="TOML file of hyper-parameters (SpertConfig fields); overrides the preset"
    )
    p.add_argument(
        "--device",
        help="torch device (default: cuda if available, else cpu; under torchrun cuda:LOCAL_RANK)",
    )
    _add_config_options(p)
    p.set_defaults(func=cmd_train)

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
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device")
    add_runtime_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "predict",
        help="predict entities and relations",
        description="Read tokenized sentences (SpERT JSON or JSONL), write them "
        "with predicted entities and relations and their scores.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", required=True, help="SpERT JSON or JSONL with 'tokens'")
    p.add_argument("--out", required=True, help="output file (.jsonl for JSON Lines)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device")
    add_runtime_option(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("validate", help="list every problem in dataset files")
    p.add_argument("--data", required=True, nargs="+", help="dataset file(s)")
    p.add_argument("--types", required=True, help="types file")
    p.set_defaults(func=cmd_validate)

    from spert import (
        convert,
        cv,
        datasets,
        demo,
        experiment,
        extract,
        onnx_runtime,
        serve,
        visualize,
    )

    extract.add_parser(sub)
    visualize.add_parser(sub)
    demo.add_parser(sub)
    datasets.add_parser(sub)
    onnx_runtime.add_parser(sub)
    convert.add_parser(sub)
    cv.add_parser(sub)
    experiment.add_parser(sub)
    serve.add_parser(sub)
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
    except Exception as e:  # model directory and encoder problems
        from spert.api import ModelError

        if isinstance(e, ModelError):
            sys.exit(f"spert: error: {e}")
        raise


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


if __name__ == "__main__":
    main()
