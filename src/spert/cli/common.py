"""What the commands share: user errors, configuration options, model loading."""

from __future__ import annotations

import argparse

from spert.api import RUNTIMES, SpERT
from spert.config import PRESETS, RUNTIME_HELP, SpertConfig, preset, read_toml
from spert.utils import UserError


class CliError(UserError):
    """A user error reported as one line, without a traceback."""


def add_config_options(parser: argparse.ArgumentParser) -> None:
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


def add_preset_options(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and ``--config``: the configuration that ``--<option>`` flags override."""
    parser.add_argument(
        "--preset",
        default="paper",
        choices=sorted(PRESETS),
        help="named configuration to start from (default: paper)",
    )
    parser.add_argument(
        "--config", help="TOML file of hyper-parameters (SpertConfig fields); overrides the preset"
    )


def build_config(args: argparse.Namespace) -> SpertConfig:
    values = preset(args.preset).to_dict()
    if args.config:
        values.update(read_toml(args.config))
        SpertConfig.from_dict(values, args.config)  # a bad key or value names the file
    overrides = {k: v for k, v in vars(args).items() if k in SpertConfig.option_types()}
    return SpertConfig.from_dict({**values, **overrides}, "command line")


def load_model(
    path: str | None, device: str | None, runtime: str = "torch", calibration: bool = True
) -> SpERT:
    return SpERT.load(path, device=device, runtime=runtime, calibration=calibration)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` for the commands that load a model to predict."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help=f"{RUNTIME_HELP} (default: torch)",
    )


def add_device_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument(
        "--device", help=f"torch device (default: cuda if available, else cpu{note})"
    )


def add_prediction_options(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--device``, ``--runtime`` and ``--no-calibration``: how a loaded
    model predicts."""
    parser.add_argument("--batch-size", type=int, default=None, help="sentences per encoder batch")
    add_device_option(parser)
    add_runtime_option(parser)
    add_calibration_option(parser)


def add_calibration_option(parser: argparse.ArgumentParser) -> None:
    """``--no-calibration``: ignore the model's ``calibration.json`` (``spert calibrate``)."""
    parser.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="ignore the model's calibration (MODEL/calibration.json): raw scores and the "
        "one relation_threshold, as before `spert calibrate`",
    )
