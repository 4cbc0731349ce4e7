"""Corpus-scale ``spert extract --ray``: input shards to JSONL shards on Ray Data.

The input is a set of shards (files: one document per line, JSON Lines records, or whole-text
documents, as ``spert extract --input-format`` reads them). Ray Data reads the shards in tasks,
a pool of model actors (each on CPUs or a GPU) extracts batches of documents with
``map_batches``, and the driver writes ``OUT/<shard>.jsonl`` once all documents of a shard are
back: in input order, the records ``spert extract --format jsonl`` writes for that shard
(document ids: the record's "id", else the line number), so the output is keyed by (shard, id).
Scores may differ from a single-process run by float rounding, as batches are composed
differently. Each shard is written atomically (temporary file, then rename), so a rerun skips
shards whose output exists and redoes only the rest. The same code runs on a laptop (a local
Ray instance) and on a cluster (``address``, or ``$RAY_ADDRESS``); there every node must see
the input files and the model directory (shared storage), and the output lands on the driver.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spert.config import RayExtractSettings
from spert.data import DataError
from spert.model.directory import ModelError, find_model_dir
from spert.runtime.io import (
    INPUT_FORMATS,
    document_line,
    guess_input_format,
    open_input,
    read_inputs,
)
from spert.runtime.predictor import SpERT
from spert.utils import atomic_write_text, format_duration

logger = logging.getLogger(__name__)

#: The defaults of the actor pool (``spert extract --ray --actors ...``).
_DEFAULTS = RayExtractSettings()
#: Seconds between progress lines while a shard is still running.
HEARTBEAT_S = 30.0
#: Starts the message of an error row that is a ModelError.
MODEL_ERROR = "[model] "
#: Seconds to wait for the actor pool to start (loading the model) before giving up.
WAIT_FOR_ACTORS_S = 900


@dataclass
class ShardSummary:
    """What :func:`extract_shards` did."""

    shards: int  # input shards found
    skipped: int  # shards whose output existed already (finished by an earlier run)
    written: int  # shards written by this run
    documents: int  # documents extracted by this run
    entities: int
    relations: int
    actors: int  # model actor processes that extracted documents
    seconds: float


# -- shards --------------------------------------------------------------------------------
def find_shards(inputs: str | Sequence[str]) -> list[Path]:
    """The input shards: each input is a file, a directory (its files, not hidden ones, in
    name order) or a glob pattern (``**`` descends into directories)."""
    patterns = [inputs] if isinstance(inputs, str) else list(inputs)
    shards: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        if pattern == "-":
            raise DataError("--ray reads files, not stdin: give a file, a directory or a glob")
        if glob.has_magic(pattern):
            found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
            found = [p for p in found if p.is_file()]
            if not found:
                raise DataError(f"{pattern}: no files match")
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise DataError(f"{pattern}: no files in this directory")
        elif path.is_file():
            found = [path]
        else:
            raise DataError(f"{pattern}: no such file or directory")
        shards.update((p.resolve(), None) for p in found)
    return list(shards)


def output_path(shard: Path, out_dir: Path) -> Path:
    """Where the output of ``shard`` goes: ``out_dir/<shard name with suffix .jsonl>``."""
    return out_dir / Path(shard.name).with_suffix(".jsonl")


def plan_outputs(shards: Sequence[Path], out_dir: Path) -> list[Path]:
    """The output path of each shard; two shards with one output name, or a shard inside the
    output directory (an earlier run's output read as input), are errors."""
    out_dir = out_dir.resolve()
    owner: dict[Path, Path] = {}
    for shard in shards:
        if out_dir == shard.parent or out_dir in shard.parents:
            raise DataError(f"{shard}: input shard is inside the output directory {out_dir}")
        out = output_path(shard, out_dir)
        if out in owner:
            raise DataError(f"{owner[out]} and {shard} would both be written to {out}")
        owner[out] = shard
    return list(owner)


# -- Ray Data stages -----------------------------------------------------------------------
def _marker(shard: int, count: int, error: str = "") -> dict[str, Any]:
    """A row that stands for no document: an empty shard (count 0) or an error."""
    return {"shard": shard, "pos": -1, "count": count, "doc": "", "error": error}


def _read_shard(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ray Data ``flat_map``: one row per document of a shard (its position, the shard's
    document count, ``[id, text or tokens]`` as JSON), or one marker row."""
    shard, path, input_format = int(row["shard"]), str(row["path"]), str(row["input_format"])
    try:
        with open_input(path) as stream:
            # ASCII JSON: unpaired surrogates in token lists must not break the Arrow blocks;
            # extraction rejects them with a message naming the document.
            docs = [json.dumps(doc) for doc in read_inputs(stream, input_format, path)]
    except DataError as e:
        yield _marker(shard, -1, str(e))
        return
    except OSError as e:
        yield _marker(shard, -1, f"{path}: cannot read ({e.strerror or e})")
        return
    if not docs:
        yield _marker(shard, 0)
    for pos, doc in enumerate(docs):
        yield {"shard": shard, "pos": pos, "count": len(docs), "doc": doc, "error": ""}


class ExtractActor:
    """Ray Data ``map_batches`` callable: loads the model once per actor process, then turns
    batches of document rows into JSONL records (markers pass through)."""

    def __init__(
        self,
        model_dir: str,
        paths: list[str],
        device: str,
        threads: int,
        batch_size: int | None,
    ) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.paths = paths
        self.batch_size = batch_size
        self.pid = os.getpid()
        # A model that fails to load here (not visible on this node, corrupt) is reported by
        # the first batch: an exception would reach the driver as a remote traceback.
        self.error = ""
        try:
            self.model = SpERT.load(model_dir, device=device)
        except ModelError as e:
            self.error = f"{MODEL_ERROR}{e}"
        except Exception as e:
            self.error = (
                f"{MODEL_ERROR}{model_dir}: cannot load the model ({type(e).__name__}: {e})"
            )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        shards = [int(s) for s in batch["shard"]]
        if self.error:
            return self._error(shards[0], self.error)
        positions = [int(p) for p in batch["pos"]]
        counts = [int(c) for c in batch["count"]]
        errors = [str(e) for e in batch["error"]]
        rows = [i for i, pos in enumerate(positions) if pos >= 0]
        items = [tuple(json.loads(batch["doc"][i])) for i in rows]
        current = 0

        def inputs() -> Iterator[Any]:
            nonlocal current
            for current, item in enumerate(items):  # noqa: B007 (read by the handler below)
                yield item

        lines = [""] * len(positions)
        entities = [0] * len(positions)
        relations = [0] * len(positions)
        try:
            for i, doc in zip(rows, self.model.extract_stream(inputs(), self.batch_size)):
                lines[i] = document_line(doc) + "\n"
                entities[i] = len(doc.entities)
                relations[i] = sum(len(s.relations) for s in doc.sentences)
        except DataError as e:
            # extract_stream validates an input when it reads it: the last one read is the bad
            # one. Its message counts inputs in this batch; name the shard and document instead.
            shard = shards[rows[current]]
            reason = str(e).split(": ", 1)[-1]
            return self._error(
                shard, f"{self.paths[shard]}, document {items[current][0]!r}: {reason}"
            )
        return {
            "shard": shards,
            "pos": positions,
            "count": counts,
            "line": lines,
            "entities": entities,
            "relations": relations,
            "error": errors,
            "pid": [self.pid] * len(positions),
        }

    def _error(self, shard: int, message: str) -> dict[str, list[Any]]:
        return {
            "shard": [shard],
            "pos": [-1],
            "count": [-1],
            "line": [""],
            "entities": [0],
            "relations": [0],
            "error": [message],
            "pid": [self.pid],
        }


# -- driver --------------------------------------------------------------------------------


def _check_model_dir(model: str | Path | None) -> Path:
    """The model directory, absolute (actors may run elsewhere); a cheap check before Ray
    starts (the actors load it fully)."""
    return find_model_dir(Path(model).expanduser() if model is not None else None).resolve()


def _user_error(error: BaseException) -> BaseException | None:
    """The DataError or ModelError under a Ray exception (whose text is a remote traceback)."""
    from ray.exceptions import RayError

    stack: list[Any] = [error]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (DataError, ModelError)) and not isinstance(e, RayError):
            return e
        stack.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return None


def _check_resources(ray: Any, actors: int, cpus: float, gpus: float, local: bool) -> None:
    """Fail early (not hang) when the actor pool cannot fit a local Ray instance; on a
    cluster only warn, as an autoscaler may add nodes."""
    total = ray.cluster_resources()
    for name, per_actor, flag in (("CPU", cpus, "--cpus-per-actor"), ("GPU", gpus, "")):
        have, need = float(total.get(name, 0.0)), actors * per_actor
        if need <= have:
            continue
        what = f"{actors} actor(s) x {per_actor:g} {name} need {need:g} {name}s"
        message = f"{what}, Ray has {have:g}; lower --actors" + (f" or {flag}" if flag else "")
        if local:
            raise DataError(message)
        logger.warning("%s (waiting for the cluster to grow)", message)


def extract_shards(
    inputs: str | Sequence[str],
    out_dir: str | Path,
    model: str | Path | None = None,
    *,
    input_format: str | None = None,
    actors: int = _DEFAULTS.actors,
    cpus_per_actor: float = _DEFAULTS.cpus_per_actor,
    gpus_per_actor: float = _DEFAULTS.gpus_per_actor,
    batch_size: int | None = None,
    docs_per_batch: int = _DEFAULTS.docs_per_batch,
    address: str | None = None,
    progress: bool = True,
) -> ShardSummary:
    """Extract every input shard into ``out_dir/<shard>.jsonl`` with a pool of ``actors``
    model actors on Ray Data; shards whose output exists are skipped.

    ``inputs``: files, directories or glob patterns (see :func:`find_shards`);
    ``input_format``: ``lines``, ``text`` or ``jsonl`` (default: from each shard's suffix);
    ``batch_size``: sentences per encoder batch; ``docs_per_batch``: documents per actor call;
    ``address``: a Ray cluster (default: an initialized Ray, ``$RAY_ADDRESS``, else a new local
    instance, shut down at the end). Actors run on a GPU when ``gpus_per_actor`` > 0.
    """
    start = time.monotonic()
    _check_options(input_format, actors, cpus_per_actor, gpus_per_actor, batch_size, docs_per_batch)
    model_dir = _check_model_dir(model)
    shards = find_shards(inputs)
    out = Path(out_dir)
    outputs = plan_outputs(shards, out)
    todo: list[int] = []
    for i, (shard, target) in enumerate(zip(shards, outputs)):
        if target.exists():
            logger.info("skipping finished shard %s (%s exists)", shard, target)
        else:
            todo.append(i)
    skipped = len(shards) - len(todo)
    summary = ShardSummary(len(shards), skipped, 0, 0, 0, 0, 0, 0.0)
    if not todo:
        logger.info("all %d shard(s) are finished in %s", len(shards), out)
        summary.seconds = time.monotonic() - start
        return summary
    out.mkdir(parents=True, exist_ok=True)

    with _ray_session(address) as (ray, local):
        try:
            _check_resources(ray, actors, cpus_per_actor, gpus_per_actor, local)
            items = [
                {
                    "shard": i,
                    "path": str(shards[i]),
                    "input_format": input_format or guess_input_format(shards[i].name),
                }
                for i in todo
            ]
            actor_options = {
                "model_dir": str(model_dir),
                "paths": [str(s) for s in shards],
                "device": "cuda" if gpus_per_actor > 0 else "cpu",
                "threads": max(1, round(cpus_per_actor)),
                "batch_size": batch_size,
            }
            dataset = _pipeline(
                ray, items, actors, cpus_per_actor, gpus_per_actor, docs_per_batch, actor_options
            )
            _collect(dataset, shards, outputs, todo, summary, progress, start)
        except KeyboardInterrupt:
            logger.warning(
                "interrupted: %d of %d shard(s) finished in %s; rerun to do the rest",
                summary.skipped + summary.written,
                summary.shards,
                out,
            )
            raise
        except Exception as e:
            cause = _user_error(e)
            if cause is None:
                raise
            raise cause from None
    summary.seconds = time.monotonic() - start
    return summary


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[tuple[Any, bool]]:
    """Ray (joined, or started and shut down at the end) with Ray Data set up for extraction;
    yields the ``ray`` module and whether the instance is a local one this call started."""
    import ray
    import ray.data

    started_ray = not ray.is_initialized()
    local = started_ray and address is None and not os.environ.get("RAY_ADDRESS")
    if started_ray:
        try:
            ray.init(address=address, include_dashboard=False if local else None)
        except ConnectionError as e:
            raise DataError(f"cannot connect to Ray at {address or '$RAY_ADDRESS'}: {e}") from None
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.wait_for_min_actors_s
    context.enable_progress_bars = False  # progress is logged per shard
    if context.wait_for_min_actors_s <= 0:
        # Start all actors before any work: a model that fails to load or a pool that does
        # not fit fails here instead of hanging, and the first batches spread over the pool.
        context.wait_for_min_actors_s = WAIT_FOR_ACTORS_S
    try:
        yield ray, local
    finally:
        context.enable_progress_bars, context.wait_for_min_actors_s = saved
        if started_ray:
            ray.shutdown()


def _check_options(
    input_format: str | None,
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float,
    batch_size: int | None,
    docs_per_batch: int,
) -> None:
    for name, value, least in (("actors", actors, 1), ("docs_per_batch", docs_per_batch, 1)):
        if value < least:
            raise DataError(f"{name} must be at least {least}, got {value}")
    if batch_size is not None and batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise DataError("cpus per actor must be positive and gpus per actor not negative")
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise DataError(f"unknown input format {input_format!r}; use one of {INPUT_FORMATS}")


def _pipeline(
    ray: Any,
    items: list[dict[str, Any]],
    actors: int,
    cpus_per_actor: float,
    gpus_per_actor: float,
    docs_per_batch: int,
    actor_options: dict[str, Any],
) -> Any:
    """The Ray Data pipeline: shard rows, read into document rows by a task pool, extracted
    by the pool of model actors."""
    readers = ray.data.TaskPoolStrategy(size=min(len(items), actors + 1))
    return (
        ray.data.from_items(items, override_num_blocks=len(items))
        # Reading takes no CPU slot, so it never waits for actors holding all CPUs.
        .flat_map(_read_shard, num_cpus=0, compute=readers)
        .map_batches(
            ExtractActor,
            batch_size=docs_per_batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor or None,
            fn_constructor_kwargs=actor_options,
        )
    )


def _collect(
    dataset: Any,
    shards: list[Path],
    outputs: list[Path],
    todo: list[int],
    summary: ShardSummary,
    progress: bool,
    start: float,
) -> None:
    """Gather the records of each shard as they come (in any order) and write the shard, in
    input order, once all its documents are back."""
    pending: dict[int, list[tuple[int, str]]] = {}
    expected: dict[int, int] = {}
    pids: set[int] = set()
    last_log = time.monotonic()
    for row in dataset.iter_rows():
        shard, pos, count = int(row["shard"]), int(row["pos"]), int(row["count"])
        if row["error"]:
            error, kind = str(row["error"]), DataError
            if error.startswith(MODEL_ERROR):
                error, kind = error[len(MODEL_ERROR) :], ModelError
            done = summary.skipped + summary.written
            raise kind(
                f"{error} ({done} of {summary.shards} shard(s) finished; fix it and rerun "
                "to do the rest)"
            )
        expected[shard] = count
        records = pending.setdefault(shard, [])
        if pos >= 0:
            records.append((pos, str(row["line"])))
            summary.documents += 1
            summary.entities += int(row["entities"])
            summary.relations += int(row["relations"])
            pids.add(int(row["pid"]))
        if len(records) == count:
            records.sort()
            atomic_write_text(outputs[shard], "".join(line for _, line in records), fsync=True)
            del pending[shard]
            summary.written += 1
            if progress:
                elapsed = time.monotonic() - start
                left = len(todo) - summary.written
                eta = format_duration(elapsed / summary.written * left)
                logger.info(
                    "[%d/%d shards] %s: %d document(s) -> %s (%.1f docs/s, ETA %s)",
                    summary.skipped + summary.written,
                    summary.shards,
                    shards[shard].name,
                    count,
                    outputs[shard],
                    summary.documents / max(elapsed, 1e-9),
                    eta,
                )
                last_log = time.monotonic()
        elif progress and time.monotonic() - last_log >= HEARTBEAT_S:
            elapsed = time.monotonic() - start
            logger.info(
                "%d document(s) extracted (%.1f docs/s); %d/%d shards finished",
                summary.documents,
                summary.documents / max(elapsed, 1e-9),
                summary.skipped + summary.written,
                summary.shards,
            )
            last_log = time.monotonic()
    summary.actors = len(pids)
    unfinished = [str(shards[s]) for s in todo if not outputs[s].exists()]
    if unfinished:  # every shard sends its documents or a marker; a gap is a bug
        raise RuntimeError(f"no complete output for shard(s) {', '.join(unfinished)}")


# -- command -------------------------------------------------------------------------------
