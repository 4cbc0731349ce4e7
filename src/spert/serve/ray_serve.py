"""The same HTTP app on Ray Serve: several replicas, each holding a model, with Ray's dynamic
batching (``@serve.batch``, by sentence) in place of the in-process micro-batcher.

From the command line (starts a local Ray instance unless ``--ray-address`` is given)::

    spert serve --ray --replicas 2 --num-cpus 1 --num-gpus 0 --model DIR --port 8000

Or with a Serve config file (``serve run spert.yaml``, or ``serve deploy`` on a cluster)::

    applications:
      - name: spert
        route_prefix: /
        import_path: spert.serve.ray_serve:app_builder
        args:
          model: /path/to/model     # all keys optional; model defaults to `spert demo`'s
          replicas: 2
          num_cpus: 1               # per replica
          num_gpus: 0               # per replica
          max_texts: 256            # and any other ServeSettings field except host/port

Each response names its replica in the ``x-spert-worker`` header (also in ``GET /info``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from ray.serve import Application

from spert.config import ConfigError, RayServeSettings, ServeSettings
from spert.results import Document, ExtractedSentence
from spert.serve.app import set_threads
from spert.serve.batching import Inputs, Item, Unavailable, predict_groups, prepare
from spert.utils import quiet_transformers, sigterm_as_interrupt

#: The settings' defaults, for the decorator (each replica sets its own in __init__).
_DEFAULTS = ServeSettings()
_RAY_DEFAULTS = RayServeSettings()

logger = logging.getLogger("spert.serve")

#: Requests one replica accepts at once; Ray's default (5) would leave its batches near empty.
MAX_ONGOING_REQUESTS = 256


def _sentences(chunks: list[list[Item]]) -> int:
    return sum(len(chunk) for chunk in chunks)


class _RayExtractor:
    """The app's Extractor inside a replica: splits requests, sends their sentences through
    the replica's ``@serve.batch`` method in chunks of at most ``max_batch_sentences``."""

    def __init__(self, replica: SpertDeployment) -> None:
        self.replica = replica
        self.pending = 0
        self.requests = 0
        self.sentences = 0

    async def start(self) -> None:
        pass

    async def extract(self, inputs: Inputs) -> list[Document]:
        r = self.replica
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(r.split_pool, prepare, r.model, inputs)
        items = prepared.items()
        if not items:
            return prepared.documents
        limit = r.settings.max_pending_sentences
        if self.pending and self.pending + len(items) > limit:
            raise Unavailable(
                f"server busy: {self.pending} sentences pending, max_pending_sentences {limit}"
            )
        size = r.settings.max_batch_sentences
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        self.pending += len(items)
        try:
            results = await asyncio.gather(*(r.predict_batch(chunk) for chunk in chunks))
        finally:
            self.pending -= len(items)
        extracted: list[ExtractedSentence] = []
        for result in results:
            if isinstance(result, Exception):
                raise result
            extracted.extend(result)
        self.requests += 1
        self.sentences += len(extracted)
        return prepared.assemble(extracted)

    async def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        r = self.replica
        return {
            "requests": self.requests,
            "sentences": self.sentences,
            "runs": r.runs,
            "largest_run": r.largest_run,
            "model_seconds": round(r.model_seconds, 3),
            "pending_sentences": self.pending,
            "max_batch_sentences": r.settings.max_batch_sentences,
            "max_wait_ms": r.settings.max_wait_ms,
            "batch_size": r.batch_size,
            "engine": "ray-serve",
        }


@serve.deployment(name="spert")
@serve.ingress()
class SpertDeployment:
    """One replica: a model, its threads (splitting, model) and the FastAPI app."""

    def __init__(self, model_dir: str | None, settings: dict[str, Any], device: str | None):
        from spert.api import SpERT

        quiet_transformers()
        self.settings = ServeSettings(**settings)
        set_threads(self.settings.threads)
        self.model = SpERT.load(
            model_dir,
            device=device,
            runtime=self.settings.runtime,
            calibration=self.settings.calibration,
        )
        self.batch_size = self.settings.batch_size or self.model.inference.eval_batch_size
        self.split_pool = ThreadPoolExecutor(1, thread_name_prefix="spert-split")
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="spert-model")
        self.predict_batch.set_max_batch_size(self.settings.max_batch_sentences)
        self.predict_batch.set_batch_wait_timeout_s(self.settings.max_wait_ms / 1000)
        self.runs = 0
        self.largest_run = 0
        self.model_seconds = 0.0
        context = serve.get_replica_context()
        self.worker_id = f"{context.replica_tag}:{os.getpid()}"

    def __serve_build_asgi_app__(self) -> Any:
        from spert.serve.app import create_app

        return create_app(
            self.model, self.settings, extractor=_RayExtractor(self), worker_id=self.worker_id
        )

    @serve.batch(
        max_batch_size=_DEFAULTS.max_batch_sentences,  # set per replica in __init__
        batch_wait_timeout_s=_DEFAULTS.max_wait_ms / 1000,
        batch_size_fn=_sentences,
    )
    async def predict_batch(
        self, chunks: list[list[Item]]
    ) -> list[list[ExtractedSentence] | Exception]:
        """Ray gathers the chunks of concurrent requests (up to max_batch_sentences sentences,
        waiting up to max_wait_ms); one model run, in the model thread, predicts them all."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        results = await loop.run_in_executor(
            self.model_pool, predict_groups, self.model, chunks, self.batch_size
        )
        self.model_seconds += time.perf_counter() - started
        self.runs += 1
        self.largest_run = max(self.largest_run, _sentences(chunks))
        return results


def build_app(
    model_dir: str | os.PathLike[str] | None = None,
    settings: ServeSettings | None = None,
    replicas: int = _RAY_DEFAULTS.replicas,
    num_cpus: float = _RAY_DEFAULTS.num_cpus,
    num_gpus: float = _RAY_DEFAULTS.num_gpus,
    device: str | None = None,
) -> Application:
    """A Ray Serve application of ``replicas`` copies of the model, with ``num_cpus`` and
    ``num_gpus`` each (``serve.run(build_app(...))``)."""
    from spert.api import default_model_dir

    settings = settings or ServeSettings()
    ray = RayServeSettings(replicas, num_cpus, num_gpus)  # checks them
    path = str(model_dir) if model_dir is not None else str(default_model_dir())
    deployment = SpertDeployment.options(
        num_replicas=ray.replicas,
        ray_actor_options={"num_cpus": ray.num_cpus, "num_gpus": ray.num_gpus},
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        graceful_shutdown_timeout_s=settings.shutdown_timeout_s,
    )
    return deployment.bind(path, settings.to_dict(), device)


def app_builder(args: dict[str, Any]) -> Application:
    """For Serve config files (``import_path: spert.serve.ray_serve:app_builder``); ``args``
    holds model, replicas, num_cpus, num_gpus, device and ServeSettings fields."""
    args = dict(args)
    options = {k: args.pop(k) for k in ("replicas", "num_cpus", "num_gpus", "device") if k in args}
    model = args.pop("model", None)
    unknown = sorted(set(args) - set(ServeSettings.field_names()))
    if unknown:
        raise ConfigError(f"unknown spert serve option(s) {unknown}")
    return build_app(model, ServeSettings(**args), **options)


def serve_ray(
    model_dir: str | None,
    settings: ServeSettings,
    replicas: int = _RAY_DEFAULTS.replicas,
    num_cpus: float = _RAY_DEFAULTS.num_cpus,
    num_gpus: float = _RAY_DEFAULTS.num_gpus,
    device: str | None = None,
    address: str | None = None,
) -> None:
    """Deploy on Ray Serve (a local Ray instance, or the cluster at ``address``) and serve
    until Ctrl-C or SIGTERM, then shut Serve down (replicas finish their requests)."""
    import ray

    app = build_app(model_dir, settings, replicas, num_cpus, num_gpus, device)
    with sigterm_as_interrupt():
        try:
            if address:
                ray.init(address=address)
            else:
                ray.init(include_dashboard=False)
            serve.start(http_options={"host": settings.host, "port": settings.port})
            serve.run(app, name="spert", route_prefix="/")
            logger.info(
                "serving on http://%s:%d with %d replica(s); Ctrl-C or SIGTERM to stop",
                settings.host,
                settings.port,
                replicas,
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            logger.info("shutting down")
        finally:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
