"""Server settings: limits, batching and networking of ``spert serve``.

These describe a deployment, not a model, so they live here and not in SpertConfig.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from spert.config import ConfigError


@dataclass
class ServeSettings:
    """How the HTTP server listens, batches and what it accepts. The CLI fills it from flags."""

    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` for all)."""
    port: int = 8000
    """TCP port."""
    max_texts: int = 256
    """Most texts (or pre-tokenized sentences) in one request; more get 422."""
    max_chars: int = 100_000
    """Most characters in one text (a token list counts as its tokens joined by spaces)."""
    max_body_bytes: int = 10_000_000
    """Largest request body in bytes; larger gets 413 (checked on Content-Length and on read)."""
    batch_size: int | None = None
    """Sentences per encoder forward pass (default: the model's ``eval_batch_size``)."""
    max_batch_sentences: int = 256
    """Most sentences, from any number of requests, that one model run takes."""
    workers: int = 1
    """Server processes sharing the port, each with its own model, micro-batcher and
    ``threads`` torch threads (uvicorn's multi-process mode). Each holds a copy of the model, so
    the default is one; on a CPU-only machine, one worker per core with one thread each gives
    the most throughput (a process per core avoids torch's threads contending with HTTP)."""
    threads: int | None = None
    """Torch CPU threads for the model, per worker (default: with one worker, one less than
    torch's default, at least 1, leaving a core to the event loop, HTTP and sentence splitting;
    with ``workers`` > 1, the usable CPUs divided by ``workers``, at least 1)."""
    max_wait_ms: float = 5.0
    """How long a model run waits for more requests to fill its batch."""
    max_pending_sentences: int = 20_000
    """Most sentences queued or running; a request that would exceed it gets 503."""
    shutdown_timeout_s: float = 60.0
    """On SIGTERM/SIGINT, how long in-flight requests may take before they are cut off."""
    access_log: bool = True
    """Log one line per request."""
    calibration: bool = True
    """Use the model's calibration (``calibration.json``, from ``spert calibrate``) if it has
    one; False (``--no-calibration``): raw scores and the one relation threshold."""

    def __post_init__(self) -> None:
        positive = (
            "port",
            "workers",
            "max_texts",
            "max_chars",
            "max_body_bytes",
            "max_batch_sentences",
            "max_pending_sentences",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0 or self.shutdown_timeout_s < 0:
            raise ConfigError("max_wait_ms and shutdown_timeout_s must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass
class BackendSettings:
    """What ``spert serve --label-studio`` adds to the server settings."""

    project_dir: str = "spert-label-studio"
    """Model versions (``versions/vN``), training runs and failed runs' logs."""
    train_every: int = 0
    """Retrain after every this many new or updated annotations (0: only on START_TRAINING)."""
    preset: str = "fast"
    """Training preset of a retraining (with the served model's model options)."""
    train_config: str | None = None
    """TOML file of training options, over the preset."""
    train_data: tuple[str, ...] = ()
    """SpERT dataset files added to every retraining (e.g. what the first model learned from:
    otherwise a retraining knows only the project's annotations)."""
    train_types: str | None = None
    """The types file of ``train_data``."""
    min_dev_documents: int = 50
    """From this many annotated documents on, a fifth is held out to calibrate the model (on
    fewer held-out sentences a calibration is mostly noise)."""
    label_studio_url: str | None = None
    """Label Studio's address (default: $LABEL_STUDIO_URL, else the hostname /setup sends)."""
    api_key: str | None = None
    """Its API key (default: $LABEL_STUDIO_API_KEY, else the token /setup sends)."""

    def __post_init__(self) -> None:
        if self.train_every < 0:
            raise ConfigError(f"train_every must not be negative, got {self.train_every}")
        if self.train_data and not self.train_types:
            raise ConfigError("--train-data needs --train-types (the types file of the data)")
        for path in (*self.train_data, self.train_types or ""):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{path}: no such file")
