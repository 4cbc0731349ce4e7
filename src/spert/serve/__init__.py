"""HTTP extraction service: ``spert serve`` (FastAPI + uvicorn, or Ray Serve).

Light to import (its command line, :mod:`spert.serve.cli`, pulls in neither FastAPI nor torch
until it serves); the app is
in :mod:`spert.serve.app`, the micro-batcher in :mod:`spert.serve.batching`, multi-process
serving (``--workers``) in :mod:`spert.serve.workers`, the Ray Serve deployment in
:mod:`spert.serve.ray_serve`.
"""

from __future__ import annotations

from typing import Any

from spert.config import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:  # FastAPI (and torch, via the model) on first use
    if name == "create_app":
        from spert.serve.app import create_app

        return create_app
    raise AttributeError(name)
