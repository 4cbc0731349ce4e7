"""Training commands: ``spert train``, ``spert cv`` (k-fold cross-validation) and
``spert experiment`` (grids of trainings)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from spert.cli.common import (
    CliError,
    add_config_options,
    add_device_option,
    add_preset_options,
    build_config,
)
from spert.config import PRESETS, SpertConfig
from spert.data import read_dataset, read_types
from spert.experiments.cv import RESULTS_JSON, RESULTS_MD, format_markdown, run_cv
from spert.experiments.grid import load_grid, report_dir, run_experiment
from spert.training import distributed, train
from spert.training.checkpoint import CheckpointError, read_run_info

logger = logging.getLogger("spert")


def cmd_train(args: argparse.Namespace) -> None:
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
            missing = [f"--{name}" for name in ("train", "types") if not paths[name]]
            if missing:
                raise CliError(f"train: {', '.join(missing)} required (run.json names no data)")
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
        logger.info("training on %d sentences, %s", len(train_data), config)
        result = train(
            config,
            train_data,
            types,
            out,
            dev_data=dev_data,
            device=args.device,
            resume=bool(args.resume),
            data_files=paths,  # in run.json: what `spert train --resume OUT` reads
        )
    except CheckpointError as e:
        raise CliError(str(e)) from None
    if main_rank:
        if result.best_epoch is not None:
            logger.info("best dev epoch %d -> %s", result.best_epoch, out / "best")
        print(f"saved {out / 'final'}" + (f" and {out / 'best'}" if result.best_epoch else ""))


def cmd_cv(args: argparse.Namespace) -> None:
    config = build_config(args)
    types = read_types(args.types)
    summary = run_cv(
        config,
        args.train,
        args.test,
        args.folds,
        types,
        args.out,
        dev_pattern=args.dev,
        device=args.device,
    )
    print(format_markdown(summary), end="")
    print(f"saved {Path(args.out) / RESULTS_JSON} and {Path(args.out) / RESULTS_MD}")


def cmd_experiment(args: argparse.Namespace) -> None:
    grid = load_grid(args.grid)
    report = run_experiment(grid, args.out, device=args.device, dry_run=args.dry_run)
    if args.dry_run:
        for run in report["plan"]:
            state = "finished" if run["done"] else "to train"
            print(f"{run['name']} seed {run['seed']}: {state} ({run['directory']})")
    print(f"{report['finished']} of {report['runs']} runs finished", end="")
    print("" if args.dry_run else f"; report: {report_dir(grid, args.out) / 'results.md'}")


def register(sub: Any) -> None:
    """Add ``train``, ``cv`` and ``experiment`` to the ``spert`` subcommands."""
    _add_train(sub)
    _add_cv(sub)
    _add_experiment(sub)


def _add_train(sub: Any) -> None:
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
    add_device_option(p, "; under torchrun cuda:LOCAL_RANK")
    add_config_options(p)
    p.set_defaults(func=cmd_train)


def _add_cv(sub: Any) -> None:
    p = sub.add_parser(
        "cv",
        help="k-fold cross-validation (e.g. ADE)",
        description="Train and test k folds given as file patterns ({i} = 0..K-1); writes "
        "OUT/fold_{i}/ (final model, metrics.json, metrics_no_overlap.json) and "
        "OUT/cv_results.json and .md (per fold, mean ± sample std, macro and micro, with and "
        "without overlapping entities). Finished folds are skipped when run again.",
    )
    p.add_argument(
        "--train", required=True, help="training file pattern, e.g. 'ade_split_{i}_train.json'"
    )
    p.add_argument(
        "--test", required=True, help="test file pattern, e.g. 'ade_split_{i}_test.json'"
    )
    p.add_argument("--dev", help="dev file pattern (optional; evaluated after each epoch)")
    p.add_argument("--folds", required=True, type=int, help="number of folds K")
    p.add_argument("--types", required=True, help="types file")
    p.add_argument("--out", required=True, help="output directory")
    add_preset_options(p)
    add_device_option(p)
    add_config_options(p)
    p.set_defaults(func=cmd_cv)


def _add_experiment(sub: Any) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a grid of trainings (ablations) and report",
        description="Train every setting x seed of a grid file that is not finished yet "
        "(finished runs are cached), test each final model, and write OUT/results.md, "
        "results.json and plots. See the module documentation of spert.experiments.grid for "
        "the grid file format.",
    )
    p.add_argument("grid", help="grid file (TOML)")
    p.add_argument(
        "--out",
        help="report directory (default: the grid's 'out', else runs/experiments/<grid name>)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs; train nothing")
    add_device_option(p)
    p.set_defaults(func=cmd_experiment)
