"""``spert serve --label-studio``: the HTTP server speaking Label Studio's ML backend protocol.

The routes Label Studio 1.23 calls (its ``ml/api_connector.py``; the same as HumanSignal's
``label-studio-ml`` SDK serves):

- ``GET /health`` (and ``GET /``): liveness, before every prediction round (1 s timeout);
- ``POST /setup`` with the project (``"ID.TIMESTAMP"``) and its labeling config (``schema``):
  maps the config's ``<Labels>`` and ``<Relations>`` to the model's types and answers the
  ``model_version``; Label Studio calls it before every prediction round (3 s timeout) and
  re-predicts the tasks that have no prediction of the version it answers;
- ``POST /predict`` with ``tasks``: one prediction per task, in order: its regions and
  relations with a ``score`` each (calibrated when the model has a calibration), the task's
  ``score`` (the uncertainty of :mod:`spert.active.selection` over the regions and relations
  of the types the config can show, so that the data manager sorts by what to annotate next)
  and the ``model_version``, all from the one model version serving when the request came;
- ``POST /webhook``: Label Studio's webhook events; ``START_TRAINING`` (the "Start Training"
  button, ``POST /api/ml/ID/train``) retrains, and with ``train_every`` so does every N new
  annotations (``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` count one, a bulk
  ``ANNOTATIONS_CREATED`` each of its annotations); the others are acknowledged;
- ``GET /versions``: the model versions in the project directory.

Tasks are predicted through the same micro-batcher as ``spert serve``, ``max_texts`` tasks at
a time; a task text over ``max_chars`` gets 422 naming the task. Retraining runs in a
background process (:class:`spert.active.retrain.Retrainer`); the served model changes only
once a new version is completely written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import JSONResponse

from spert.active.retrain import (
    Retrainer,
    RetrainError,
    RetrainJob,
    model_dir,
    retrain_config,
    show_version,
    version_name,
    versions,
)
from spert.active.selection import document_uncertainty
from spert.api import SpERT, default_model_dir
from spert.config import (
    TORCH_RUNTIMES,
    BackendSettings,
    ConfigError,
    ServeSettings,
    SpertConfig,
)
from spert.data.formats.document import CharDocument, document_from_extraction
from spert.data.formats.label_studio import label_studio_results
from spert.results import Document
from spert.serve.app import default_worker_id, new_app, set_threads, torch_threads
from spert.serve.batching import MicroBatcher, Unavailable
from spert.version import __version__

logger = logging.getLogger("spert.serve")

#: Webhook actions that count as new annotations for ``train_every``.
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")


def annotation_count(body: dict[str, Any]) -> int:
    """How many annotations a webhook event is about: Label Studio 1.23 sends one annotation
    object as ``annotation`` (ANNOTATION_CREATED/UPDATED), a list of them for a bulk
    ANNOTATIONS_CREATED (e.g. "Create annotations from predictions"); without a payload (a
    webhook with ``send_payload`` off), one."""
    for key in ("annotation", "annotations"):
        value = body.get(key)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, dict):
            return 1
    return 1


# -- the labeling config -------------------------------------------------------------------------
class LabelConfigError(ValueError):
    """A labeling config the model cannot predict into."""


@dataclass(frozen=True)
class LabelConfig:
    """What of a project's labeling config the backend uses."""

    text_name: str
    """``name`` of the ``<Text>`` tag the regions point to (``to_name``)."""
    text_field: str
    """The task ``data`` field it shows (``value="$field"``)."""
    labels_name: str
    """``name`` of the ``<Labels>`` tag over that text (``from_name``)."""
    labels: tuple[str, ...]
    relations: tuple[str, ...] | None
    """The ``<Relation>`` values; None without a ``<Relations>`` tag."""


@lru_cache(maxsize=64)
def parse_label_config(xml: str) -> LabelConfig:
    """The text field, labels and relation labels of a labeling config (XML); a
    LabelConfigError naming what is missing when the model cannot predict into it."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise LabelConfigError(f"the labeling config is not valid XML: {e}") from None
    texts = {
        t.get("name"): t.get("value", "")
        for t in root.iter("Text")
        if t.get("name") and t.get("value", "").startswith("$")
    }
    if not texts:
        raise LabelConfigError(
            'the labeling config has no <Text name="..." value="$field"/> tag: no text field '
            "the model can read (it reads plain text from a task data field)"
        )
    for labels in root.iter("Labels"):
        target = labels.get("toName", "")
        for text_name in target.split(","):
            if text_name in texts:
                values = tuple(v for v in (x.get("value") for x in labels.iter("Label")) if v)
                relations_tag = next(root.iter("Relations"), None)
                relations = None
                if relations_tag is not None:
                    values_rel = (r.get("value") for r in relations_tag.iter("Relation"))
                    relations = tuple(v for v in values_rel if v)
                return LabelConfig(
                    text_name,
                    texts[text_name][1:],
                    labels.get("name", ""),
                    values,
                    relations,
                )
    raise LabelConfigError(
        f"the labeling config has no <Labels> tag over its text ({', '.join(texts)}): "
        "nothing for the model's entities to become"
    )


@dataclass
class TypeMapping:
    """The model's types against a labeling config's labels: the shared ones are predicted;
    the others are reported (``config_only``: labels the model cannot predict; ``model_only``:
    types the model predicts that the config cannot show, left out of predictions)."""

    entities: list[str]
    relations: list[str]
    config_only: dict[str, list[str]] = field(default_factory=dict)
    model_only: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: LabelConfig, entity_types: Sequence[str], relation_types: Sequence[str]):
        config_relations = config.relations or ()
        return cls(
            entities=[t for t in entity_types if t in config.labels],
            relations=[t for t in relation_types if t in config_relations],
            config_only={
                "labels": [t for t in config.labels if t not in entity_types],
                "relations": [t for t in config_relations if t not in relation_types],
            },
            model_only={
                "entity_types": [t for t in entity_types if t not in config.labels],
                "relation_types": [t for t in relation_types if t not in config_relations],
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity_types": self.entities,
            "relation_types": self.relations,
            "config_only": self.config_only,
            "model_only": self.model_only,
        }


def keep_mapped(document: Document, mapping: TypeMapping) -> Document:
    """The document with only the entities and relations of the mapped types (relations also
    need both their entities kept): what the labeling config can show."""
    sentences = []
    for sentence in document.sentences:
        index: dict[int, int] = {}
        entities = []
        for i, e in enumerate(sentence.entities):
            if e.type in mapping.entities:
                index[i] = len(entities)
                entities.append(e)
        relations = [
            replace(r, head=index[r.head], tail=index[r.tail])
            for r in sentence.relations
            if r.type in mapping.relations and r.head in index and r.tail in index
        ]
        sentences.append(replace(sentence, entities=entities, relations=relations))
    return replace(document, sentences=sentences)


def task_prediction(
    document: Document,
    config: LabelConfig,
    mapping: TypeMapping,
    symmetric: Sequence[str],
    version: str,
) -> dict[str, Any]:
    """One task's prediction in Label Studio's format (see the module docstring). The regions
    and the task score are those of the mapped types only: a type the labeling config cannot
    show must not raise the score the data manager sorts by."""
    mapped = keep_mapped(document, mapping)
    char_document: CharDocument = document_from_extraction(mapped, 0, symmetric)
    result = label_studio_results(char_document, config.labels_name, config.text_name)
    return {
        "result": result,
        "score": round(document_uncertainty(mapped), 6),
        "model_version": version,
    }


# -- the backend ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    """What is served, replaced as a whole when a new version is switched to: a request takes
    it once and predicts, maps and names its version from that one snapshot."""

    model: Any
    version: int
    train_config: SpertConfig
    """The options of the next retraining (see :func:`spert.active.retrain.retrain_config`)."""

    @property
    def name(self) -> str:
        return version_name(self.version)

    def mapping(self, config: LabelConfig) -> TypeMapping:
        types = self.model.types
        return TypeMapping.of(config, types.entities, types.relation_names)


class Backend:
    """The served model and its version, the retrainer and what Label Studio told us."""

    def __init__(
        self,
        model: Any,
        version: int,
        extractor: MicroBatcher,
        settings: BackendSettings,
        calibration: bool = True,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.calibration = calibration
        self.extractor = extractor
        self.settings = settings
        self.served = self._served(model, version, path)
        self.project_id: int | None = None
        self.hostname: str | None = None
        self.access_token: str | None = None
        self.new_annotations = 0
        self.shown_version: str | None = None  # the project's model version we last set
        self._showing = threading.Lock()
        self.retrainer = Retrainer(settings.project_dir, self._job, self._switch)

    def _served(self, model: Any, version: int, path: str | os.PathLike[str] | None) -> Served:
        """The snapshot of ``model``, loaded from the model directory ``path`` (None: not
        known; a retraining then starts from the encoder the model was trained from)."""
        config = retrain_config(
            self.settings.preset, model.config, self.settings.train_config, served_dir=path
        )
        return Served(model, version, config)

    @property
    def model(self) -> Any:
        return self.served.model

    @property
    def model_version(self) -> str:
        return self.served.name

    def connection(self) -> tuple[str, str, int]:
        """Label Studio's address, the API key and the project to train from; a ConfigError
        saying what is missing."""
        url = self.settings.label_studio_url or os.environ.get("LABEL_STUDIO_URL") or self.hostname
        key = self.settings.api_key or os.environ.get("LABEL_STUDIO_API_KEY") or self.access_token
        if not url or not key:
            raise ConfigError(
                "retraining needs Label Studio's address and an API key: set LABEL_STUDIO_URL "
                "and LABEL_STUDIO_API_KEY (or connect the backend, whose /setup sends them)"
            )
        if self.project_id is None:
            raise ConfigError("retraining: no Label Studio project has connected yet")
        return url, key, self.project_id

    def _job(self, version: int, reason: str) -> RetrainJob:
        url, key, project_id = self.connection()
        return RetrainJob(
            project_dir=self.settings.project_dir,
            version=version,
            project_id=project_id,
            label_studio_url=url,
            api_key=key,
            config=self.served.train_config.to_dict(),
            min_dev_documents=self.settings.min_dev_documents,
            reason=reason,
            train_data=list(self.settings.train_data),
            train_types=self.settings.train_types,
        )

    def _switch(self, version: int, path: Path) -> None:
        """Load a finished version (in the retrainer's thread) and serve it from now on: the
        requests that arrive from now on; those in flight finish with the model they took."""
        model = SpERT.load(
            path, device=self.model.device, runtime=self.model.runtime, calibration=self.calibration
        )
        self.served = self._served(model, version, path)  # one assignment: all or nothing
        logger.info(
            "now serving %s (%s): %d entity and %d relation types%s",
            version_name(version),
            path,
            len(model.types.entities),
            len(model.types.relations),
            ", calibrated" if model.calibration is not None else "",
        )

    def show_version(self, attempts: int = 1, pause_s: float = 2.0) -> None:
        """Make the served version the project's model version in Label Studio (see
        :func:`spert.active.retrain.show_version`), once per version. Label Studio accepts
        only a version it has predictions of, so after predicting this waits and tries again
        (``attempts``); failures are logged."""
        if not self._showing.acquire(blocking=False):
            return  # another request is on it
        try:
            self._show_version(attempts, pause_s)
        finally:
            self._showing.release()

    def _show_version(self, attempts: int, pause_s: float) -> None:
        version = self.model_version
        for attempt in range(attempts):
            if self.shown_version == version:
                return
            try:
                url, key, project_id = self.connection()
                replaced = show_version(url, key, project_id, version)
            except (ConfigError, RetrainError, ValueError) as e:
                if "doesn't exist" in str(e) and attempt + 1 < attempts:
                    time.sleep(pause_s)  # Label Studio has not saved the predictions yet
                    continue
                level = logging.INFO if "doesn't exist" in str(e) else logging.WARNING
                logger.log(level, "the project's model version stays as it is for now: %s", e)
                return
            self.shown_version = version
            if replaced is not None:
                logger.info(
                    "project %d: model version %r -> %r (the data manager's prediction score "
                    "is the task score of this version)",
                    project_id,
                    replaced,
                    version,
                )
            return

    def remember_project(self, project: Any) -> None:
        """The project id of /setup's ``"ID.TIMESTAMP"`` or a webhook's project object."""
        if isinstance(project, dict):
            project = project.get("id")
        text = str(project or "").split(".")[0]
        if text.isdigit():
            self.project_id = int(text)

    async def predict(self, tasks: list[Any], config: LabelConfig, limits: ServeSettings):
        """Predictions for ``tasks`` (see the module docstring)."""
        texts = []
        for i, task in enumerate(tasks):
            data = task.get("data") if isinstance(task, dict) else None
            text = data.get(config.text_field) if isinstance(data, dict) else None
            name = f"task {task.get('id', i) if isinstance(task, dict) else i}"
            if not isinstance(text, str):
                raise HTTPException(
                    422,
                    f"{name}: no text in data field {config.text_field!r} (of <Text "
                    f"name={config.text_name!r}>)",
                )
            if len(text) > limits.max_chars:
                raise HTTPException(
                    422,
                    f"{name}: text too long: {len(text)} characters > max_chars {limits.max_chars}",
                )
            texts.append(text)
        served = self.served  # one snapshot for the whole request, however many runs it takes
        chunks = [texts[i : i + limits.max_texts] for i in range(0, len(texts), limits.max_texts)]
        parts = await asyncio.gather(
            *(self.extractor.extract(chunk, model=served.model) for chunk in chunks)
        )
        mapping = served.mapping(config)
        symmetric = list(served.model.types.symmetric)
        results = [
            task_prediction(d, config, mapping, symmetric, served.name)
            for part in parts
            for d in part
        ]
        return results, served.name

    def request_training(self, reason: str) -> str:
        try:
            self.connection()
            state = self.retrainer.request(reason)
        except ConfigError as e:
            logger.error("%s", e)
            return f"not started: {e}"
        logger.info("retraining (%s): %s", reason, state)
        return state

    def annotation_event(self, count: int = 1) -> str | None:
        """Count ``count`` new annotations; start a retraining every ``train_every`` of them."""
        self.new_annotations += count
        every = self.settings.train_every
        if every and self.new_annotations >= every:
            self.new_annotations = 0
            return self.request_training(f"{every} new annotations")
        return None


def _label_config(xml: Any) -> LabelConfig:
    if not isinstance(xml, str) or not xml.strip():
        raise HTTPException(422, "no labeling config in the request")
    try:
        return parse_label_config(xml)
    except LabelConfigError as e:
        logger.error("labeling config: %s", e)
        raise HTTPException(422, str(e)) from None


def create_label_studio_app(
    model: Any,
    settings: ServeSettings | None = None,
    backend_settings: BackendSettings | None = None,
    version: int = 0,
    worker_id: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """The ML backend app for a loaded model, served as version ``version``; ``path``: the
    model directory it was loaded from (retraining starts from its encoder)."""
    settings = settings or ServeSettings()
    backend_settings = backend_settings or BackendSettings()
    extractor = MicroBatcher(model, settings)
    backend = Backend(model, version, extractor, backend_settings, settings.calibration, path)
    app = new_app(
        "spert Label Studio ML backend",
        "SpERT as a Label Studio ML backend: pre-annotations with relations and calibrated "
        "scores, retraining, and task scores for choosing what to annotate next.",
        extractor,
        settings,
        worker_id or default_worker_id(),
    )
    app.state.backend = backend

    @app.get("/health", summary="Liveness, as Label Studio checks it")
    @app.get("/", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "UP", "model_version": backend.model_version, "v2": True}

    @app.post("/setup", summary="Map the project's labeling config; answer the model version")
    async def setup(body: dict[str, Any], background: BackgroundTasks) -> dict[str, Any]:
        config = _label_config(body.get("schema"))
        backend.remember_project(body.get("project"))
        backend.hostname = body.get("hostname") or backend.hostname
        backend.access_token = body.get("access_token") or backend.access_token
        served = backend.served
        mapping = served.mapping(config)
        unknown = {k: v for k, v in {**mapping.config_only, **mapping.model_only}.items() if v}
        if unknown:
            logger.warning("labeling config of project %s: %s", backend.project_id, unknown)
        if backend.shown_version != served.name:
            background.add_task(backend.show_version)  # after the answer: Label Studio waits
        return {
            "model_version": served.name,
            "text_field": config.text_field,
            "mapping": mapping.to_dict(),
        }

    @app.post("/predict", summary="Regions, relations and scores for Label Studio tasks")
    async def predict(body: dict[str, Any], background: BackgroundTasks) -> Any:
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise HTTPException(422, "'tasks' must be a list of tasks")
        config = _label_config(body.get("label_config"))
        backend.remember_project(body.get("project"))
        try:
            results, version = await backend.predict(tasks, config, settings)
        except Unavailable as e:
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"retry-after": "1"})
        if backend.shown_version != version:  # once Label Studio has saved these predictions
            background.add_task(backend.show_version, attempts=5)
        return {"results": results, "model_version": version}

    @app.post("/webhook", summary="Label Studio events: START_TRAINING retrains", status_code=201)
    async def webhook(body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        backend.remember_project(body.get("project"))
        if action == "START_TRAINING":
            return {"action": action, "training": backend.request_training("START_TRAINING")}
        if action in ANNOTATION_ACTIONS:
            state = backend.annotation_event(annotation_count(body))
            return {"action": action, "training": state or "not requested"}
        return {"action": action, "training": "not requested"}

    @app.get("/versions", summary="Model versions in the project directory")
    async def list_versions() -> dict[str, Any]:
        found = versions(backend_settings.project_dir)
        return {
            "versions": [version_name(n) for n in found],
            "model_version": backend.model_version,
            "model_dir": str(Path(backend_settings.project_dir).resolve()),
        }

    @app.get("/info", summary="Served version, types, mapping, retraining and batching state")
    async def info() -> dict[str, Any]:
        served = backend.served
        return {
            "spert_version": __version__,
            "model_version": served.name,
            "entity_types": list(served.model.types.entities),
            "relation_types": list(served.model.types.relation_names),
            "calibrated": served.model.calibration is not None,
            "project_id": backend.project_id,
            "retraining": backend.retrainer.to_dict(),
            "train_every": backend_settings.train_every,
            "torch_threads": torch_threads(),
            "batching": extractor.stats(),
        }

    return app


def load_label_studio_app(
    model_dir_arg: str | None,
    settings: ServeSettings,
    backend_settings: BackendSettings,
    device: str | None = None,
) -> FastAPI:
    """Load the model to serve (the newest version in the project directory, else
    ``model_dir_arg``) and build the ML backend app."""
    set_threads(settings.threads)
    found = versions(backend_settings.project_dir)
    version = max(found, default=0)
    path = model_dir(backend_settings.project_dir, version) if found else model_dir_arg
    if settings.runtime not in TORCH_RUNTIMES:  # a retrained version has no ONNX files
        raise ConfigError(
            f"--label-studio retrains its model: use --runtime {' or '.join(TORCH_RUNTIMES)}"
        )
    model = SpERT.load(
        path, device=device, runtime=settings.runtime, calibration=settings.calibration
    )
    logger.info(
        "Label Studio ML backend: serving %s (%s), %d entity and %d relation types%s; "
        "project directory %s",
        version_name(version),
        path or "the default model",
        len(model.types.entities),
        len(model.types.relations),
        ", calibrated" if model.calibration is not None else "",
        backend_settings.project_dir,
    )
    served_dir = path if path is not None else default_model_dir()
    return create_label_studio_app(model, settings, backend_settings, version, path=served_dir)
