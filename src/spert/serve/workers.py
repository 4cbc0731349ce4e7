"""``spert serve --workers N``: N server processes sharing one port.

This is uvicorn's own multi-process mode: the parent binds the port and supervises N worker
processes (spawned, not forked), and each worker builds its app with :func:`worker_app`, a
uvicorn app factory: its own model, micro-batcher and torch threads. Where the system has
SO_REUSEPORT (Linux, BSD, macOS), each worker listens on a socket of its own on the port and the
kernel spreads new connections evenly over them; on one shared socket, a burst of connections
all goes to whichever worker wakes first (asyncio accepts up to 100 at a time), leaving the
others idle. SIGTERM or SIGINT to the parent
reaches every worker, which finishes its requests in flight before it exits; the parent then
exits with status 0.

The parent never imports torch (a few hundred MB that it would hold for nothing): the model is
checked, before any worker starts, by loading it once in a short-lived process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

import uvicorn

from spert.config import ConfigError, ServeSettings
from spert.utils import UserError, setup_logging, usable_cpus

logger = logging.getLogger("spert.serve")

#: Environment variable by which the parent passes model, device and settings to its workers.
WORKER_ENV = "SPERT_SERVE_WORKER"
#: The app factory that uvicorn imports in each worker.
WORKER_APP = "spert.serve.workers:worker_app"
#: From this uvicorn on, a worker that fails to start (exit status 3) stops the parent instead of
#: being restarted forever.
MIN_UVICORN = (0, 50)


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)


class _WorkerConfig(uvicorn.Config):
    """uvicorn's Config, but a worker exits normally after its graceful shutdown.

    Once the server has shut down, uvicorn raises the SIGTERM/SIGINT it handled again, for the
    handler it found when the server started; in a fresh worker that is the default, which kills
    the worker before its clean-up (exit status -15, and a "leaked semaphore" warning for
    tqdm's lock). uvicorn calls ``configure_logging`` first thing in each worker, before the
    server starts: install handlers there that exit normally.
    """

    def configure_logging(self) -> None:
        super().configure_logging()
        if multiprocessing.parent_process() is not None:  # in a worker, not in the parent
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, _exit)


class ReusePortSocket(socket.socket):
    """The parent's socket: bound with SO_REUSEPORT, never listening (so no connection waits on
    it), it holds the port. Handed to a spawned worker, it arrives as a new socket of the worker's
    own on the same address (:func:`reuse_port_socket`), which the worker listens on."""

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return (reuse_port_socket, (self.family, self.getsockname()[:2]))


def reuse_port_socket(
    family: int, address: tuple[str, int], kind: type[socket.socket] = socket.socket
) -> socket.socket:
    """A ``kind`` socket bound to ``address`` with SO_REUSEADDR and SO_REUSEPORT."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def bind_workers_socket(config: uvicorn.Config) -> socket.socket:
    """The socket the supervisor hands to its workers: a :class:`ReusePortSocket` where the
    system has SO_REUSEPORT, else uvicorn's one shared socket."""
    if not hasattr(socket, "SO_REUSEPORT") or config.uds or config.fd is not None:
        return config.bind_socket()
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        sock = reuse_port_socket(family, (config.host, config.port), ReusePortSocket)
    except OSError as e:
        logger.error("cannot bind %s:%d: %s", config.host, config.port, e.strerror or e)
        raise SystemExit(1) from None
    host, port = sock.getsockname()[:2]
    logger.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, port)
    return sock


def worker_threads(settings: ServeSettings) -> int:
    """Torch threads of each worker: ``settings.threads``, or the usable CPUs shared out among
    the workers, at least 1 (on 2 cores, ``--workers 2`` gives each worker 1 thread)."""
    return settings.threads or max(1, usable_cpus() // settings.workers)


def _one_line(error: BaseException) -> str:
    """An error as one line: the message of an error about the input, else type and message."""
    if isinstance(error, (UserError, FileNotFoundError)):
        return str(error)
    traceback.print_exception(error)  # a bug, not bad input: keep its traceback in the log
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}"


def _check_model(
    model_dir: str | None, device: str | None, calibration: bool, runtime: str
) -> str | None:
    """Load the model once (run in a process of its own); why it cannot be loaded, or None."""
    setup_logging(process_id=True)  # the workers' logs interleave
    try:
        from spert.api import SpERT

        SpERT.load(model_dir, device=device, runtime=runtime, calibration=calibration)
    except Exception as e:
        return _one_line(e)
    return None


def check_model(
    model_dir: str | None, device: str | None, calibration: bool = True, runtime: str = "torch"
) -> None:
    """Raise SystemExit with a one-line error if the model cannot be loaded on ``device``; the
    load runs in a short-lived spawned process, so that this one need not import torch."""
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            error = pool.submit(_check_model, model_dir, device, calibration, runtime).result()
    except BrokenProcessPool:  # killed (out of memory?) or crashed while loading the model
        error = f"the process loading the model {model_dir or '(default)'} died"
    if error is not None:
        raise SystemExit(f"spert: error: {error}")


def worker_app() -> Any:
    """The app of one worker process (a uvicorn app factory): loads the model named in
    ``$SPERT_SERVE_WORKER``. A worker that cannot exits with uvicorn's startup-failure status,
    which stops the parent."""
    from uvicorn.config import STARTUP_FAILURE

    from spert.serve.app import load_app

    setup_logging(process_id=True)  # the workers' logs interleave
    spec = os.environ.get(WORKER_ENV)
    if spec is None:
        logger.error("spert: error: %s is started by `spert serve --workers N`", WORKER_APP)
        sys.exit(STARTUP_FAILURE)
    worker = json.loads(spec)
    try:
        return load_app(worker["model"], ServeSettings(**worker["settings"]), worker["device"])
    except Exception as e:
        logger.error("spert: error: worker could not start: %s", _one_line(e))
        sys.exit(STARTUP_FAILURE)


def serve_workers(model_dir: str | None, settings: ServeSettings, device: str | None) -> None:
    """Serve the model in ``settings.workers`` processes until SIGINT/SIGTERM, which each worker
    answers by finishing its requests in flight (up to ``settings.shutdown_timeout_s``)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    version = tuple(int(x) for x in re.findall(r"\d+", uvicorn.__version__)[:2])
    if version < MIN_UVICORN:
        raise ConfigError(
            f"--workers needs uvicorn >= {'.'.join(map(str, MIN_UVICORN))} (installed: "
            f"{uvicorn.__version__}); upgrade it, or serve with one worker"
        )
    # A bad model directory fails here, as one line, before any worker starts.
    check_model(model_dir, device, settings.calibration, settings.runtime)
    settings = replace(settings, threads=worker_threads(settings))
    worker = {"model": model_dir, "device": device, "settings": settings.to_dict()}
    os.environ[WORKER_ENV] = json.dumps(worker)  # spawned workers inherit the environment
    config = _WorkerConfig(
        WORKER_APP,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_level="info",
    )
    try:
        sock = bind_workers_socket(config)
    except SystemExit:  # uvicorn has logged why (the port is taken, ...)
        raise SystemExit(1) from None
    logger.info(
        "model %s: %d worker processes, %d torch threads each",
        model_dir or "(default)",
        settings.workers,
        settings.threads,
    )
    # uvicorn.run() would do the same, but returns normally when the workers failed to start;
    # running its supervisor here gives the workers' exit statuses to check.
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        raise SystemExit(
            f"spert: error: worker process(es) {', '.join(map(str, failed))} failed to start "
            "(their error is logged above)"
        )
