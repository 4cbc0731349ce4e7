"""The FastAPI app of ``spert serve``: ``POST /extract``, ``GET /health``, ``GET /info``.

A thin layer over ``SpERT.extract``: the request's texts (or pre-tokenized sentences) go to an
:class:`~spert.serve.batching.Extractor` (by default the in-process micro-batcher), and each
result is ``Document.to_dict()``, as ``spert extract`` writes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from spert.config import ServeSettings
from spert.data import DataError
from spert.results import Document
from spert.serve.batching import Extractor, MicroBatcher, Unavailable
from spert.version import __version__

logger = logging.getLogger("spert.serve")

#: Response header naming the process (or Ray replica) that answered.
WORKER_HEADER = "x-spert-worker"
_INPUT = re.compile(r"^input (\d+):")
#: Responses with more sentences than this are serialized off the event loop.
_INLINE_SENTENCES = 64


# -- request and response schemas (the response schema is for the OpenAPI docs) ------------
class ExtractRequest(BaseModel):
    """Either raw ``texts`` (split into sentences and words by the server) or pre-tokenized
    ``sentences`` (token lists)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] | None = Field(default=None, examples=[["Mary works for Acme in Boston."]])
    sentences: list[list[str]] | None = Field(
        default=None, examples=[[["Mary", "works", "for", "Acme", "in", "Boston", "."]]]
    )


class ExtractResponse(BaseModel):
    """The response schema: derived from the result types (:mod:`spert.results`), whose
    ``to_dict`` writes the responses."""

    documents: list[Document] = Field(description="one per input, in input order")


class ErrorOut(BaseModel):
    detail: str
    error_id: str | None = None


# -- body size limit -----------------------------------------------------------------------
class _Guard:
    """ASGI middleware: refuses request bodies over ``max_body_bytes`` with 413 (by their
    Content-Length, and while reading, for chunked bodies), and names the worker on every
    response."""

    def __init__(self, app: Any, max_body_bytes: int, worker_id: str) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.worker = worker_id.encode("latin-1", "replace")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (WORKER_HEADER.encode(), self.worker)]
            await send(message)

        limit = self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send_named, int(length))
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send_named)
            return
        # Read the body here, so that no more than the limit is ever held.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(send_named, None)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_named)

    async def _too_large(self, send: Any, size: int | None) -> None:
        limit = self.max_body_bytes
        if size is None:  # a chunked body, cut off once over the limit
            detail = f"request body too large: more than max_body_bytes {limit} bytes"
        else:
            detail = f"request body too large: {size} bytes > max_body_bytes {limit}"
        headers = {"connection": "close"}
        response = JSONResponse({"detail": detail}, status_code=413, headers=headers)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


# -- the app -------------------------------------------------------------------------------
def _check_limits(request: ExtractRequest, settings: ServeSettings) -> list[str | list[str]]:
    """The request's inputs; HTTP 422 naming the limit or field for a request out of bounds."""
    if (request.texts is None) == (request.sentences is None):
        raise HTTPException(422, "give either 'texts' (raw texts) or 'sentences' (token lists)")
    field = "texts" if request.texts is not None else "sentences"
    inputs: list[Any] = request.texts if request.texts is not None else request.sentences
    if len(inputs) > settings.max_texts:
        raise HTTPException(
            422, f"too many {field}: {len(inputs)} > max_texts {settings.max_texts}"
        )
    for i, item in enumerate(inputs):
        # A token list's text is its tokens joined by single spaces.
        chars = len(item) if isinstance(item, str) else sum(map(len, item)) + max(len(item) - 1, 0)
        if chars > settings.max_chars:
            raise HTTPException(
                422,
                f"{field}[{i}] too long: {chars} characters > max_chars {settings.max_chars}",
            )
    return inputs


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads for the model: ``threads``, or one less than torch's default (at
    least 1), so that the event loop and sentence splitting keep a core of their own."""
    import torch

    torch.set_num_threads(threads or max(1, torch.get_num_threads() - 1))


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _render(documents: list[Document]) -> bytes:
    content = {"documents": [d.to_dict() for d in documents]}
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_app(
    title: str, description: str, extractor: Extractor, settings: ServeSettings, worker_id: str
) -> FastAPI:
    """A FastAPI app that starts and stops ``extractor`` with the server and guards request
    bodies (``max_body_bytes``; the worker named on every response)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await extractor.start()
        try:
            yield
        finally:
            # Runs once the server has finished the requests in flight: stop the batcher.
            await extractor.close()

    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.add_middleware(_Guard, max_body_bytes=settings.max_body_bytes, worker_id=worker_id)
    return app


def create_app(
    model: Any,
    settings: ServeSettings | None = None,
    extractor: Extractor | None = None,
    worker_id: str | None = None,
) -> FastAPI:
    """The HTTP app for a loaded :class:`~spert.api.SpERT` model.

    ``extractor`` defaults to a :class:`~spert.serve.batching.MicroBatcher` on ``model``;
    ``worker_id`` (default ``host:pid``) is sent in the ``x-spert-worker`` header and /info.
    """
    settings = settings or ServeSettings()
    extractor = extractor or MicroBatcher(model, settings)
    worker_id = worker_id or default_worker_id()
    app = new_app(
        "spert",
        "Span-based joint entity and relation extraction (SpERT) over HTTP.",
        extractor,
        settings,
        worker_id,
    )
    app.state.settings = settings
    app.state.extractor = extractor
    app.state.model = model

    @app.get("/health", summary="Liveness: answers as long as the server is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="Model types, encoder, version, limits and batching counters")
    async def info() -> dict[str, Any]:
        return {
            "spert_version": __version__,
            "encoder": model.config.encoder,
            "entity_types": list(model.types.entities),
            "relation_types": [
                {"name": r.name, "symmetric": r.symmetric} for r in model.types.relations
            ],
            "device": str(model.device),
            "calibration": (
                model.calibration.summary() if getattr(model, "calibration", None) else None
            ),
            "torch_threads": torch_threads(),
            "worker": worker_id,
            "pid": os.getpid(),
            "limits": {
                "max_texts": settings.max_texts,
                "max_chars": settings.max_chars,
                "max_body_bytes": settings.max_body_bytes,
            },
            "batching": extractor.stats(),
        }

    @app.post(
        "/extract",
        summary="Entities and relations in texts or pre-tokenized sentences",
        response_model=ExtractResponse,
        responses={
            413: {"model": ErrorOut, "description": "body larger than max_body_bytes"},
            422: {"description": "malformed JSON, bad input, or over max_texts / max_chars"},
            500: {"model": ErrorOut, "description": "extraction failed (error_id is logged)"},
            503: {"model": ErrorOut, "description": "busy or shutting down; retry later"},
        },
    )
    async def extract(request: ExtractRequest) -> Response:
        inputs = _check_limits(request, settings)
        field = "texts" if request.texts is not None else "sentences"
        try:
            documents = await extractor.extract(inputs)
        except DataError as e:  # "input 3: ..." from the API: name the request field instead
            raise HTTPException(422, _INPUT.sub(f"{field}[\\1]:", str(e), count=1)) from None
        except Unavailable as e:
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"retry-after": "1"})
        except Exception:
            error_id = uuid.uuid4().hex
            logger.exception("error id %s: extraction of %d input(s) failed", error_id, len(inputs))
            return JSONResponse({"detail": "internal error", "error_id": error_id}, status_code=500)
        n_sentences = sum(len(d.sentences) for d in documents)
        if n_sentences > _INLINE_SENTENCES:
            body = await asyncio.to_thread(_render, documents)
        else:
            body = _render(documents)
        return Response(body, media_type="application/json")

    return app


def load_app(model_dir: str | None, settings: ServeSettings, device: str | None = None) -> Any:
    """Load the model and build its HTTP app: the work of one server process, with
    ``settings.threads`` torch threads."""
    # Torch loads with the model, in the process that serves it: the parent of --workers
    # never does.
    from spert.api import SpERT

    set_threads(settings.threads)
    model = SpERT.load(
        model_dir, device=device, runtime=settings.runtime, calibration=settings.calibration
    )
    app = create_app(model, settings)
    logger.info(
        "model %s: %d entity and %d relation types, on %s (%d torch threads)",
        model_dir or "(default)",
        len(model.types.entities),
        len(model.types.relations),
        model.device,
        torch_threads(),
    )
    return app
