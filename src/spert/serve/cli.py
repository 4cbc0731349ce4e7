"""``spert serve``: the HTTP extraction service, in process (uvicorn) or on Ray Serve.

The command's options and entry point (``python -m spert.serve``; ``spert serve`` registers
the same options). Torch and FastAPI are imported only once a server starts, so that the
parent of ``--workers`` stays small and quick to start."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from spert.config import (
    PRESETS,
    RUNTIME_HELP,
    RUNTIMES,
    BackendSettings,
    ConfigError,
    RayServeSettings,
    ServeSettings,
)
from spert.utils import exit_on_user_error, setup_logging

logger = logging.getLogger("spert.serve")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The ServeSettings given on the command line (defaults for the rest)."""
    return ServeSettings(**{k: getattr(args, k) for k in ServeSettings.field_names()})


def serve(
    model_dir: str | None,
    settings: ServeSettings,
    device: str | None = None,
    label_studio: BackendSettings | None = None,
) -> None:
    """Load the model and serve it with uvicorn until SIGINT/SIGTERM, which finish the requests
    in flight (up to ``settings.shutdown_timeout_s``) before the process exits with status 0.
    With ``settings.workers`` > 1, in that many processes (see :mod:`spert.serve.workers`).
    With ``label_studio``, as a Label Studio ML backend (:mod:`spert.serve.label_studio`)."""
    if settings.workers > 1:
        if label_studio is not None:
            raise ConfigError("--label-studio serves in one process: leave out --workers")
        from spert.serve.workers import serve_workers

        serve_workers(model_dir, settings, device)
        return
    import uvicorn

    if label_studio is not None:
        from spert.serve.label_studio import load_label_studio_app

        app = load_label_studio_app(model_dir, settings, label_studio, device)
    else:
        from spert.serve.app import load_app

        app = load_app(model_dir, settings, device)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_level="info",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM (graceful shutdown) and then raises the signal again for
    # the previous handler; a shutdown that went as planned should exit 0, so ignore that one.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:  # could not bind, or the app failed to start
        raise SystemExit(1)


def cmd_serve(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    if args.ray:
        if settings.workers > 1:
            raise ConfigError("--workers is for the uvicorn server; on Ray Serve, use --replicas")
        if args.label_studio:
            raise ConfigError("--label-studio is served by uvicorn, not on Ray Serve")
        from spert.serve.ray_serve import serve_ray

        serve_ray(
            args.model,
            settings,
            replicas=args.replicas,
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            device=args.device,
            address=args.ray_address,
        )
    else:
        serve(args.model, settings, args.device, backend_settings_from_args(args))


def backend_settings_from_args(args: argparse.Namespace) -> BackendSettings | None:
    """The Label Studio backend's settings with --label-studio, else None."""
    if not args.label_studio:
        return None
    if args.train_config and not Path(args.train_config).is_file():
        raise ConfigError(f"--train-config {args.train_config}: no such file")
    return BackendSettings(
        project_dir=args.project_dir,
        train_every=args.train_every,
        preset=args.preset,
        train_config=args.train_config,
        min_dev_documents=args.min_dev_documents,
        train_data=tuple(args.train_data or ()),
        train_types=args.train_types,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = ServeSettings()
    p.add_argument(
        "--model",
        default=None,
        help="model directory (default: the model of `spert demo`, "
        "$SPERT_HOME/default-model or ~/.cache/spert/default-model)",
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--host", default=defaults.host, help=f"default: {defaults.host}")
    p.add_argument("--port", type=int, default=defaults.port, help=f"default: {defaults.port}")

    _add_limits(p, defaults)
    _add_batching(p, defaults)
    p.add_argument(
        "--shutdown-timeout-s",
        type=float,
        default=defaults.shutdown_timeout_s,
        help="on SIGTERM/SIGINT, how long requests in flight may still take "
        f"(default: {defaults.shutdown_timeout_s})",
    )
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no log line per request",
    )
    p.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="ignore the model's calibration (MODEL/calibration.json): raw scores and the one "
        "relation threshold",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=defaults.runtime,
        help=f"{RUNTIME_HELP} (default: {defaults.runtime})",
    )

    _add_label_studio(p)
    _add_ray(p)


def _add_label_studio(p: argparse.ArgumentParser) -> None:
    defaults = BackendSettings()
    group = p.add_argument_group(
        "Label Studio ML backend (connect it in Label Studio under Settings > Model; retraining "
        "reads LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)"
    )
    group.add_argument(
        "--label-studio",
        action="store_true",
        help="speak Label Studio's ML backend protocol (/health, /setup, /predict, /webhook, "
        "/versions) instead of /extract",
    )
    group.add_argument(
        "--project-dir",
        default=defaults.project_dir,
        help="where numbered model versions (versions/vN), training runs and logs of failed "
        "runs are kept; the newest version is served at start (default: %(default)s)",
    )
    group.add_argument(
        "--train-every",
        type=int,
        default=defaults.train_every,
        help="also retrain after every N new or updated annotations (default: 0, only when "
        "Label Studio sends START_TRAINING)",
    )
    group.add_argument(
        "--preset",
        default=defaults.preset,
        choices=sorted(PRESETS),
        help="training preset of a retraining, with the served model's encoder and model "
        "options (default: %(default)s)",
    )
    group.add_argument(
        "--train-config", help="TOML file of training options (SpertConfig fields), over the preset"
    )
    group.add_argument(
        "--train-data",
        nargs="+",
        metavar="FILE",
        help="SpERT dataset files added to every retraining (e.g. the data the --model learned "
        "from; otherwise a retraining knows only the project's annotations)",
    )
    group.add_argument("--train-types", help="the types file of --train-data")
    group.add_argument(
        "--min-dev-documents",
        type=int,
        default=defaults.min_dev_documents,
        help="from this many annotated documents on, a fifth is held out to calibrate each new "
        "version (default: %(default)s)",
    )


def _add_limits(p: argparse.ArgumentParser, defaults: ServeSettings) -> None:
    limits = p.add_argument_group("limits (violations get 413 or 422 naming the limit)")
    limits.add_argument(
        "--max-texts",
        type=int,
        default=defaults.max_texts,
        help=f"texts or sentences per request (default: {defaults.max_texts})",
    )
    limits.add_argument(
        "--max-chars",
        type=int,
        default=defaults.max_chars,
        help=f"characters per text (default: {defaults.max_chars})",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help=f"request body size (default: {defaults.max_body_bytes})",
    )
    limits.add_argument(
        "--max-pending-sentences",
        type=int,
        default=defaults.max_pending_sentences,
        help="sentences queued or running before new requests get 503 "
        f"(default: {defaults.max_pending_sentences})",
    )


def _add_batching(p: argparse.ArgumentParser, defaults: ServeSettings) -> None:
    batching = p.add_argument_group("batching")
    batching.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="sentences per encoder pass (default: the model's eval_batch_size)",
    )
    batching.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="server processes sharing the port, each with its own copy of the model and "
        f"batcher (default: {defaults.workers}). On a CPU-only machine, --workers <cores> (then "
        "1 torch thread each by default) gives the best throughput, at the memory of one model "
        "per worker",
    )
    batching.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch CPU threads for the model, per worker (default: with one worker, one less "
        "than torch's default, at least 1, leaving a core to HTTP and sentence splitting; with "
        "--workers N, the usable CPUs divided by N, at least 1)",
    )
    batching.add_argument(
        "--max-batch-sentences",
        type=int,
        default=defaults.max_batch_sentences,
        help="sentences of concurrent requests per model run "
        f"(default: {defaults.max_batch_sentences})",
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help=f"longest wait for a model run to fill (default: {defaults.max_wait_ms})",
    )


def _add_ray(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("Ray Serve (scale out over replicas, each holding a model)")
    ray.add_argument(
        "--ray", action="store_true", help="deploy on Ray Serve instead of one process"
    )
    RayServeSettings.add_arguments(ray)  # --replicas, --num-cpus, --num-gpus
    ray.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (default: start a local Ray instance)",
    )


DESCRIPTION = (
    'Serve a model over HTTP: POST /extract with {"texts": [...]} or '
    '{"sentences": [[token, ...], ...]}, GET /health, GET /info, docs at /docs. '
    "Concurrent requests are batched by sentence. SIGTERM or Ctrl-C finishes the requests in "
    "flight (in every worker), then exits."
)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m spert.serve``: the same as ``spert serve``."""
    parser = argparse.ArgumentParser(prog="spert serve", description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    setup_logging()
    with exit_on_user_error():
        args.func(args)
