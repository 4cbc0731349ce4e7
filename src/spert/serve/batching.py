"""Sentence-level micro-batching for the HTTP server.

Requests are split into sentences when they arrive; a single worker coroutine then gathers the
sentences of all waiting requests into model runs of up to ``max_batch_sentences`` sentences,
waiting at most ``max_wait_ms`` for a run to fill, and hands each request its own sentences
back. Splitting and the model each run in a thread of their own, so the event loop only
schedules, and each library (spaCy for splitting, the tokenizer and torch for the model) is
only ever used from one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from spert.config import ServeSettings
from spert.data import Context
from spert.data.text import TextSentence
from spert.results import Document, ExtractedSentence
from spert.runtime.extraction import document_input, extracted_sentence, sentences_in_context

logger = logging.getLogger("spert.serve")

#: What one request asks for: texts, or pre-tokenized sentences (token lists).
Inputs = Sequence[str | Sequence[str]]
#: A sentence to predict with the text of its document (character offsets point into it) and
#: its document context (words before, words after; empty unless the model's context_words).
Item = tuple[str, TextSentence, Context]


class Unavailable(RuntimeError):
    """The server cannot take the request now (busy or shutting down): HTTP 503."""


class Extractor(Protocol):
    """What the app calls to extract: the in-process :class:`MicroBatcher`, or Ray Serve's
    batching in :mod:`spert.serve.ray_serve`."""

    async def start(self) -> None: ...

    async def extract(self, inputs: Inputs) -> list[Document]: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass
class Prepared:
    """A request split into sentences: empty Documents and, in order, each sentence with the
    index of its document."""

    documents: list[Document]
    sentences: list[tuple[int, TextSentence, Context]]

    def items(self, start: int = 0, stop: int | None = None) -> list[Item]:
        return [(self.documents[d].text, s, c) for d, s, c in self.sentences[start:stop]]

    def assemble(self, extracted: Sequence[ExtractedSentence]) -> list[Document]:
        """Fill the Documents with the predicted sentences (same order as ``sentences``)."""
        for (d, _, _), sentence in zip(self.sentences, extracted, strict=True):
            self.documents[d].sentences.append(sentence)
        return self.documents


def prepare(model: Any, inputs: Inputs) -> Prepared:
    """Split a request's texts (or token lists) into sentences, as ``SpERT.extract`` does.

    Raises DataError naming the input for input the API refuses.
    """
    documents: list[Document] = []
    sentences: list[tuple[int, TextSentence, Context]] = []
    for index, item in enumerate(inputs):
        doc_id, text, split = document_input(item, index, model.inference.max_sentence_words)
        documents.append(Document(text, [], doc_id))
        in_context = sentences_in_context(split, model.config.context_words)
        sentences.extend((index, s, c) for s, c in in_context)
    return Prepared(documents, sentences)


def predict(model: Any, items: Sequence[Item], batch_size: int) -> list[ExtractedSentence]:
    """Entities and relations of sentences (of any documents), with document offsets."""
    contexts = [c for _, _, c in items] if model.config.context_words > 0 else None
    predicted = model.predict([s.tokens for _, s, _ in items], batch_size, contexts=contexts)
    return [extracted_sentence(text, s, p) for (text, s, _), p in zip(items, predicted)]


def predict_groups(
    model: Any, groups: Sequence[Sequence[Item]], batch_size: int
) -> list[list[ExtractedSentence] | Exception]:
    """Predict the sentences of several requests in one run; a group's result, or the exception
    it raised. If the joint run fails, each group is run alone, so that one request's failure
    does not fail the others."""
    flat = [item for group in groups for item in group]
    try:
        extracted = predict(model, flat, batch_size)
    except Exception as e:
        if len(groups) == 1:
            return [e]
        results: list[list[ExtractedSentence] | Exception] = []
        for group in groups:
            try:
                results.append(predict(model, group, batch_size))
            except Exception as group_error:
                results.append(group_error)
        return results
    out: list[list[ExtractedSentence] | Exception] = []
    start = 0
    for group in groups:
        out.append(extracted[start : start + len(group)])
        start += len(group)
    return out


@dataclass(eq=False)
class _Job:
    prepared: Prepared
    future: asyncio.Future[list[Document]]
    model: Any
    """The model that predicts every sentence of the request (taken when it arrived)."""
    done: list[ExtractedSentence] = field(default_factory=list)
    next: int = 0  # first sentence not yet handed to a model run

    @property
    def remaining(self) -> int:
        return len(self.prepared.sentences) - self.next


class MicroBatcher:
    """Batches the sentences of concurrent requests into model runs (see the module docstring).

    Use from one event loop: ``await start()``, ``await extract(inputs)`` from any number of
    tasks, ``await close()`` (finishes the requests already taken, refuses new ones).
    """

    def __init__(self, model: Any, settings: ServeSettings | None = None) -> None:
        settings = settings or ServeSettings()
        self.model = model
        self.batch_size = settings.batch_size or model.inference.eval_batch_size
        self.max_batch_sentences = settings.max_batch_sentences
        self.max_wait_s = settings.max_wait_ms / 1000
        self.max_pending_sentences = settings.max_pending_sentences
        self._jobs: deque[_Job] = deque()  # in arrival order; the head may be partly done
        self._queued = 0  # sentences in _jobs not yet handed to a run
        self._pending = 0  # sentences accepted and not yet predicted (queued or running)
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._split_pool: ThreadPoolExecutor | None = None
        self._model_pool: ThreadPoolExecutor | None = None
        self._stats = {"requests": 0, "sentences": 0, "runs": 0, "largest_run": 0}
        self._model_seconds = 0.0

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._split_pool = ThreadPoolExecutor(1, thread_name_prefix="spert-split")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="spert-model")
        self._worker = asyncio.create_task(self._run(), name="spert-batcher")

    async def extract(self, inputs: Inputs, model: Any = None) -> list[Document]:
        """The Documents of one request, in input order, all predicted by ``model`` (default:
        the batcher's), also when the request spans several model runs."""
        if self._worker is None or self._closing:
            raise Unavailable("the server is shutting down")
        model = model if model is not None else self.model
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._split_pool, prepare, model, inputs)
        n = len(prepared.sentences)
        if n == 0:
            return prepared.documents
        if self._closing:
            raise Unavailable("the server is shutting down")
        if self._pending and self._pending + n > self.max_pending_sentences:
            raise Unavailable(
                f"server busy: {self._pending} sentences pending, max_pending_sentences "
                f"{self.max_pending_sentences}; retry later"
            )
        job = _Job(prepared, loop.create_future(), model)
        self._jobs.append(job)
        self._queued += n
        self._pending += n
        self._idle.clear()
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        """Refuse new requests, finish the accepted ones, stop the worker and threads."""
        self._closing = True
        if self._worker is not None:
            await self._idle.wait()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for pool in (self._split_pool, self._model_pool):
            if pool is not None:
                pool.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        """Counters since start: requests and sentences predicted, model runs, the largest run
        (sentences), time in the model, and sentences pending now."""
        return {
            **self._stats,
            "model_seconds": round(self._model_seconds, 3),
            "pending_sentences": self._pending,
            "max_batch_sentences": self.max_batch_sentences,
            "max_wait_ms": self.max_wait_s * 1000,
            "batch_size": self.batch_size,
        }

    # -- worker ----------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._idle.set()
                self._arrived.clear()
                await self._arrived.wait()
            # Fill the run: wait up to max_wait for more sentences, unless it is full already.
            deadline = loop.time() + self.max_wait_s
            while self._queued < self.max_batch_sentences:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except asyncio.TimeoutError:
                    break
            try:
                await self._run_once(loop)
            except Exception:  # a bug here must not stop the worker, and so the server
                logger.exception("batcher error")

    async def _run_once(self, loop: asyncio.AbstractEventLoop) -> None:
        # Take sentences from the oldest requests first; a big request may span several runs.
        # One run is one model's: that of the oldest request (requests of another model, after
        # a switch, wait for a run of their own).
        taken: list[tuple[_Job, int, int]] = []
        room = self.max_batch_sentences
        model = next((job.model for job in self._jobs if not job.future.done()), None)
        for job in self._jobs:
            if room == 0:
                break
            if job.future.done() or job.model is not model:  # cancelled, or another model's
                continue
            k = min(room, job.remaining)
            taken.append((job, job.next, job.next + k))
            job.next += k
            room -= k
        self._drop_finished()
        n = sum(stop - start for _, start, stop in taken)
        self._queued -= n
        if not taken:
            return
        started = time.perf_counter()
        try:
            groups = [job.prepared.items(start, stop) for job, start, stop in taken]
            results = await loop.run_in_executor(
                self._model_pool, predict_groups, model, groups, self.batch_size
            )
        except asyncio.CancelledError:  # the loop is going away: do not leave callers hanging
            self._deliver(taken, [Unavailable("the server is shutting down")] * len(taken), n)
            raise
        except Exception as e:  # not the model (predict_groups catches that): fail the run
            results = [e] * len(taken)
        self._model_seconds += time.perf_counter() - started
        self._stats["runs"] += 1
        self._stats["largest_run"] = max(self._stats["largest_run"], n)
        self._deliver(taken, results, n)

    def _deliver(
        self,
        taken: list[tuple[_Job, int, int]],
        results: Sequence[list[ExtractedSentence] | Exception],
        n: int,
    ) -> None:
        """Hand each request its results (or its error); complete the finished requests."""
        self._pending -= n
        for (job, _, stop), result in zip(taken, results):
            if job.future.done():
                continue
            if isinstance(result, Exception):
                job.future.set_exception(result)
                continue
            job.done.extend(result)
            if stop == len(job.prepared.sentences):
                job.future.set_result(job.prepared.assemble(job.done))
                self._stats["requests"] += 1
                self._stats["sentences"] += len(job.done)
        self._drop_finished()

    def _drop_finished(self) -> None:
        """Forget requests that are complete, failed or cancelled (their sentences too)."""
        kept: deque[_Job] = deque()
        for job in self._jobs:
            if job.future.done():
                # Sentences of a cancelled request that no run took are pending no more.
                self._queued -= job.remaining
                self._pending -= job.remaining
                job.next = len(job.prepared.sentences)
            else:
                kept.append(job)
        self._jobs = kept
