"""Retraining from a Label Studio project into numbered model versions.

A run (:func:`run_job`, in a process of its own) fetches the project's annotations through
Label Studio's API (the JSON export of the annotated tasks), imports them with the importer
of ``spert import label-studio`` (the same report, ``data/import_report.md``), trains, and,
when there are at least ``min_dev_documents`` annotated documents, holds a fifth of them out
as a dev set on which training's ``calibrate`` fits the new model's calibration. Everything
goes to ``PROJECT/work/vN``, renamed to ``PROJECT/versions/vN`` only once complete, so that a
version that exists is always whole; a failed run is moved to ``PROJECT/failed/vN-TIME``
with its log.

:class:`Retrainer` schedules the runs: one at a time, in a background process; a request while
one runs queues exactly one more run (later requests join it); each finished version is handed
to a callback (the server loads it and switches to it).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spert.config import MODEL_OPTIONS, ModelConfig, SpertConfig, preset, read_toml
from spert.data import read_dataset, read_types
from spert.data.formats.importer import ImportOptions, import_documents, merge_types
from spert.model.directory import ENCODER_DIR, ensemble_members
from spert.training import train
from spert.utils import atomic_write, atomic_write_text, setup_logging

logger = logging.getLogger("spert.active")

VERSIONS_DIR = "versions"
WORK_DIR = "work"
FAILED_DIR = "failed"
#: The model of a version: the training run's final model.
MODEL_SUBDIR = "final"
VERSION_FILE = "version.json"
LOG_FILE = "train.log"
EXPORT_FILE = "export.json"
DATA_SUBDIR = "data"
_VERSION_NAME = re.compile(r"^v(\d+)$")


class RetrainError(RuntimeError):
    """A retraining run that cannot go on (no access to Label Studio, no annotations, ...)."""


# -- the project directory ------------------------------------------------------------------
def versions(project_dir: str | os.PathLike[str]) -> dict[int, Path]:
    """The complete versions of a project directory: number -> version folder."""
    root = Path(project_dir) / VERSIONS_DIR
    found: dict[int, Path] = {}
    if root.is_dir():
        for path in root.iterdir():
            match = _VERSION_NAME.match(path.name)
            if match and (path / MODEL_SUBDIR).is_dir():
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def version_name(number: int) -> str:
    return f"v{number}"


def model_dir(project_dir: str | os.PathLike[str], number: int) -> Path:
    return Path(project_dir) / VERSIONS_DIR / version_name(number) / MODEL_SUBDIR


# -- Label Studio's API -----------------------------------------------------------------------
def _is_jwt(key: str) -> bool:
    return key.count(".") == 2


def authorization(url: str, api_key: str, timeout: float = 30.0) -> str:
    """The Authorization header for ``api_key``: a legacy token as ``Token KEY``; a personal
    access token (a JWT refresh token) is exchanged for an access token (``Bearer``)."""
    if not _is_jwt(api_key):
        return f"Token {api_key}"
    body = json.dumps({"refresh": api_key}).encode()
    answer = _request(f"{url}/api/token/refresh/", None, body, timeout)
    try:
        return f"Bearer {json.loads(answer)['access']}"
    except (ValueError, KeyError, TypeError):
        raise RetrainError(f"{url}: no access token in the answer to the token refresh") from None


def _request(
    url: str, auth: str | None, body: bytes | None, timeout: float, method: str | None = None
) -> bytes:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode("utf-8", "replace")
        raise RetrainError(f"{url}: HTTP {e.code} {e.reason}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RetrainError(f"{url}: cannot reach Label Studio ({e})") from None


def fetch_export(url: str, api_key: str, project_id: int, timeout: float = 300.0) -> bytes:
    """The project's JSON export of its annotated tasks (full annotation objects)."""
    url = url.rstrip("/")
    query = urllib.parse.urlencode({"exportType": "JSON", "download_all_tasks": "false"})
    auth = authorization(url, api_key)
    return _request(f"{url}/api/projects/{project_id}/export?{query}", auth, None, timeout)


def retrain_config(
    preset_name: str = "fast",
    served: ModelConfig | None = None,
    config_file: str | os.PathLike[str] | None = None,
    served_dir: str | os.PathLike[str] | None = None,
) -> SpertConfig:
    """The training options of a retraining: the preset, with the model options (span size,
    ...) of the ``served`` model, then what ``config_file`` (TOML) sets. The encoder is the
    one in the served model's directory ``served_dir`` (its ``encoder/`` folder, as an
    absolute path): the name or path the served model was first trained from
    (``ModelConfig.encoder``) may be a path that moved or exists on another machine only; that
    name is the fallback without ``served_dir``. A served ensemble retrains as one model,
    from its first member's encoder."""
    options = preset(preset_name).to_dict()
    if served is not None:
        options.update({name: getattr(served, name) for name in MODEL_OPTIONS})
    if served_dir is not None:
        folders = ensemble_members(Path(served_dir))
        model_dir = folders[0] if folders else Path(served_dir)
        options["encoder"] = str((model_dir / ENCODER_DIR).resolve())
    source = f"preset {preset_name}"
    if config_file is not None:
        options.update(read_toml(config_file))
        source = str(config_file)
    return SpertConfig.from_dict(options, source)


def show_version(
    url: str, api_key: str, project_id: int, version: str, timeout: float = 30.0
) -> str | None:
    """Make ``version`` the project's model version (what Label Studio 1.23's data manager
    averages as "Prediction score" and shows to annotators), unless the project has chosen
    another source: it is changed only while empty, the title of one of its ML backends, or
    another ``vN``. Returns the version it replaced (None: left as it was)."""
    url = url.rstrip("/")
    auth = authorization(url, api_key, timeout)
    project = json.loads(_request(f"{url}/api/projects/{project_id}", auth, None, timeout))
    current = project.get("model_version") or ""
    if current == version:
        return None
    backends = json.loads(_request(f"{url}/api/ml?project={project_id}", auth, None, timeout))
    titles = {b.get("title") for b in backends if isinstance(b, dict)}
    if current and current not in titles and not _VERSION_NAME.match(current):
        return None
    body = json.dumps({"model_version": version}).encode()
    _request(f"{url}/api/projects/{project_id}", auth, body, timeout, method="PATCH")
    return current


# -- one run ----------------------------------------------------------------------------------
@dataclass
class RetrainJob:
    """Everything a run needs (picklable: it crosses into the training process)."""

    project_dir: str
    version: int
    project_id: int
    label_studio_url: str
    api_key: str
    config: dict[str, Any]
    """SpertConfig options of the training (``calibrate`` is set by the run)."""
    min_dev_documents: int = 50
    """Hold out a dev set (a fifth of the documents, for calibration) from this many on."""
    reason: str = ""
    train_data: list[str] = field(default_factory=list)
    """SpERT dataset files added to every retraining's training set (e.g. the data the first
    model was trained on), with their types file ``train_types``."""
    train_types: str | None = None


def run_job(job: RetrainJob) -> Path:
    """Fetch, import, train and publish version ``job.version`` (see the module docstring).
    Returns the version folder; raises on failure (the work folder then moves to failed/)."""
    project = Path(job.project_dir)
    work = project / WORK_DIR / version_name(job.version)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    handler = logging.FileHandler(work / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    # The run's record holds its INFO lines, whatever the caller's logging level.
    spert_logger = logging.getLogger("spert")
    level = spert_logger.level
    if spert_logger.getEffectiveLevel() > logging.INFO:
        spert_logger.setLevel(logging.INFO)
    started = time.time()
    try:
        info = _train_version(job, work)
        info["seconds"] = round(time.time() - started, 1)
        atomic_write_text(work / VERSION_FILE, json.dumps(info, indent=2) + "\n")
        final = project / VERSIONS_DIR / version_name(job.version)
        final.parent.mkdir(parents=True, exist_ok=True)
        root.removeHandler(handler)
        handler.close()
        spert_logger.setLevel(level)
        os.replace(work, final)  # the version appears whole or not at all
        logger.info(
            "version %s ready in %s (%.0f s)", version_name(job.version), final, info["seconds"]
        )
        return final
    except BaseException:
        logger.exception("retraining %s failed", version_name(job.version))
        root.removeHandler(handler)
        handler.close()
        spert_logger.setLevel(level)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        failed = project / FAILED_DIR / f"{version_name(job.version)}-{stamp}"
        n = 1
        while failed.exists():  # two failures in one second
            n += 1
            failed = failed.with_name(f"{version_name(job.version)}-{stamp}-{n}")
        failed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, failed)
        raise


def _train_version(job: RetrainJob, work: Path) -> dict[str, Any]:
    logger.info(
        "retraining %s (%s): fetching project %d from %s",
        version_name(job.version),
        job.reason or "requested",
        job.project_id,
        job.label_studio_url,
    )
    export = fetch_export(job.label_studio_url, job.api_key, job.project_id)
    export_path = atomic_write(work / EXPORT_FILE, lambda tmp: tmp.write_bytes(export))
    try:
        tasks = json.loads(export)
    except ValueError:
        raise RetrainError(f"{export_path}: the export is not JSON") from None
    if not isinstance(tasks, list) or not tasks:
        raise RetrainError(f"project {job.project_id} has no annotated task to train on")
    with_dev = len(tasks) >= job.min_dev_documents
    split = (0.8, 0.2, 0.0) if with_dev else (1.0, 0.0, 0.0)
    options = ImportOptions(split=split, lenient=True)
    result = import_documents(
        "label-studio", work / DATA_SUBDIR, [str(export_path)], options=options
    )
    for line in result.summary_lines():
        logger.info("import: %s", line)
    types = result.types
    if job.train_data:
        if not job.train_types:
            raise RetrainError("train_data needs its types file (train_types)")
        types = merge_types(types, read_types(job.train_types))
        assert types is not None
    train_data = read_dataset(result.files["train"], types)
    annotated = len(train_data)
    for path in job.train_data:
        train_data += read_dataset(path, types)
    dev_data = read_dataset(result.files["dev"], types) if with_dev else []
    if not train_data:
        raise RetrainError(f"project {job.project_id}: no training sentence after the import")
    config = SpertConfig.from_dict({**job.config, "calibrate": bool(dev_data)}, "retraining")
    logger.info(
        "training on %d sentences (%d annotated documents%s)%s",
        len(train_data),
        len(result.documents["train"]),
        f", {len(train_data) - annotated} sentences of {len(job.train_data)} data file(s)"
        if job.train_data
        else "",
        f", calibrating on {len(dev_data)} held-out sentences" if dev_data else "",
    )
    train(config, train_data, types, work, dev_data=dev_data or None, progress=False)
    return {
        "version": version_name(job.version),
        "project": job.project_id,
        "reason": job.reason,
        "tasks": len(tasks),
        "splits": result.summary(),
        "train_data": {"files": job.train_data, "sentences": len(train_data) - annotated},
        "calibrated": bool(dev_data),
        "entity_types": list(types.entities),
        "relation_types": list(types.relation_names),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _run_in_child(job: RetrainJob) -> None:
    """The training process: log to stderr (the server's log) and the version's train.log."""
    setup_logging(tag=f"train {version_name(job.version)}")
    try:
        run_job(job)
    except BaseException:
        raise SystemExit(1) from None


# -- scheduling -------------------------------------------------------------------------------
@dataclass
class RetrainStatus:
    running: int | None = None
    """Version being trained, if any."""
    queued: bool = False
    """One more run will start when this one ends."""
    last_finished: int | None = None
    last_failed: int | None = None
    runs: int = 0
    failures: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class Retrainer:
    """Runs :func:`run_job` in a background process, one at a time (see the module docstring).

    ``make_job(version, reason)`` builds the job when the run starts (so it sees the latest
    settings); ``on_version(number, model_dir)`` is called from the scheduler's thread once a
    version is complete.
    """

    def __init__(
        self,
        project_dir: str | os.PathLike[str],
        make_job: Callable[[int, str], RetrainJob],
        on_version: Callable[[int, Path], None],
    ) -> None:
        self.project_dir = Path(project_dir)
        self.make_job = make_job
        self.on_version = on_version
        self.status = RetrainStatus()
        self._lock = threading.Lock()
        self._queued_reason = ""
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server

    def next_version(self) -> int:
        found = versions(self.project_dir)
        return max(found, default=0) + 1

    def request(self, reason: str) -> str:
        """Start a run, or queue one more if one is running: "started", "queued" or
        "already queued"."""
        with self._lock:
            if self.status.running is not None:
                if self.status.queued:
                    return "already queued"
                self.status.queued = True
                self._queued_reason = reason
                return "queued"
            self._start(reason)
            return "started"

    def _start(self, reason: str) -> None:  # with the lock held
        version = self.next_version()
        self.status.running = version
        self._thread = threading.Thread(
            target=self._run, args=(version, reason), name="spert-retrain", daemon=True
        )
        self._thread.start()

    def _run(self, version: int, reason: str) -> None:
        ok = False
        try:
            job = self.make_job(version, reason)
            process = self._context.Process(target=_run_in_child, args=(job,), daemon=True)
            process.start()
            process.join()
            ok = process.exitcode == 0 and model_dir(self.project_dir, version).is_dir()
            if not ok:
                logger.error(
                    "retraining %s failed (exit code %s); still serving the previous model; "
                    "its log is under %s",
                    version_name(version),
                    process.exitcode,
                    self.project_dir / FAILED_DIR,
                )
            else:
                self.on_version(version, model_dir(self.project_dir, version))
        except Exception:
            ok = False
            logger.exception("retraining %s failed; still serving the previous model", version)
        with self._lock:
            self.status.runs += 1
            self.status.history.append(
                {"version": version_name(version), "ok": ok, "reason": reason}
            )
            if ok:
                self.status.last_finished = version
            else:
                self.status.failures += 1
                self.status.last_failed = version
            self.status.running = None
            if self.status.queued:
                self.status.queued = False
                self._start(self._queued_reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no run is running or queued (True), or ``timeout`` seconds (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self.status.running is None:
                    return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.status)
