"""Retraining from a Label Studio project: fetching the export (a stand-in Label Studio API on
a loopback port), import, training, calibration on held-out documents, publishing numbered
versions whole, failures kept apart, and the scheduler's one queued run."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import keeping_model, label_studio_result

from spert.active.retrain import (
    FAILED_DIR,
    Retrainer,
    RetrainError,
    RetrainJob,
    model_dir,
    retrain_config,
    run_job,
    versions,
)
from spert.api import ENCODER_DIR, SpERT
from spert.config import SpertConfig
from spert.data import Sentence, Types, write_dataset
from spert.model.calibration import CALIBRATION_FILE

KEY = "test-key"
TEXTS = [
    (
        "Mary works for Acme Corp in Boston.",
        [("Peop", "Mary"), ("Org", "Acme Corp"), ("Loc", "Boston")],
    ),
    ("John Wilkes Booth was an actor.", [("Peop", "John Wilkes Booth")]),
    (
        "The Ministry of Health in Paris hired Dr. Smith.",
        [("Org", "Ministry of Health"), ("Loc", "Paris"), ("Peop", "Smith")],
    ),
]


def export(copies: int) -> list[dict[str, Any]]:
    """A Label Studio JSON export of annotated tasks (``copies`` of each text)."""
    tasks = []
    for _ in range(copies):
        for text, entities in TEXTS:
            relations = [("Work_For", 0, 1)] if len(entities) > 1 else []
            result = label_studio_result(text, entities, relations)
            n = len(tasks) + 1
            tasks.append(
                {"id": n, "data": {"text": text}, "annotations": [{"id": n, "result": result}]}
            )
    return tasks


class FakeLabelStudio:
    """Serves ``GET /api/projects/ID/export`` for a legacy token; counts the requests."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.tasks = tasks
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if self.headers.get("Authorization") != f"Token {KEY}":
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"detail": "Invalid token."}')
                    return
                body = json.dumps(owner.tasks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def label_studio() -> Iterator[FakeLabelStudio]:
    fake = FakeLabelStudio(export(4))  # 12 documents
    yield fake
    fake.close()


def job(tmp_path: Path, url: str, config: SpertConfig, version: int = 1, **kw: Any) -> RetrainJob:
    options = {"project_dir": str(tmp_path / "project"), "version": version, "project_id": 5}
    options.update(label_studio_url=url, api_key=KEY, config=config.to_dict(), **kw)
    return RetrainJob(**options)


def test_run_job_publishes_a_calibrated_version(
    tmp_path: Path, label_studio: FakeLabelStudio, tiny_config: SpertConfig
) -> None:
    folder = run_job(job(tmp_path, label_studio.url, tiny_config, min_dev_documents=10))
    assert folder == tmp_path / "project" / "versions" / "v1"
    assert label_studio.requests == [
        "/api/projects/5/export?exportType=JSON&download_all_tasks=false"
    ]
    assert versions(tmp_path / "project") == {1: folder}
    info = json.loads((folder / "version.json").read_text())
    assert info["tasks"] == 12 and info["calibrated"] is True
    assert info["splits"]["train"]["documents"] + info["splits"]["dev"]["documents"] == 12
    assert info["splits"]["dev"]["documents"] > 0
    assert (model_dir(tmp_path / "project", 1) / CALIBRATION_FILE).is_file()
    log = (folder / "train.log").read_text()
    assert "import:   entity: 28 read, 28 imported" in log
    assert "totals reconcile" in log
    assert (folder / "data" / "import_report.md").is_file()
    assert not (tmp_path / "project" / "work" / "v1").exists()


def test_few_documents_train_on_all_without_calibration(
    tmp_path: Path, label_studio: FakeLabelStudio, tiny_config: SpertConfig
) -> None:
    folder = run_job(job(tmp_path, label_studio.url, tiny_config, min_dev_documents=13))
    info = json.loads((folder / "version.json").read_text())
    assert info["calibrated"] is False and info["splits"]["train"]["documents"] == 12
    assert not (folder / "final" / CALIBRATION_FILE).exists()


def test_failed_run_is_kept_apart(
    tmp_path: Path, label_studio: FakeLabelStudio, tiny_config: SpertConfig
) -> None:
    bad = job(tmp_path, label_studio.url, tiny_config)
    bad.api_key = "wrong"
    with pytest.raises(RetrainError, match="HTTP 401"):
        run_job(bad)
    assert versions(tmp_path / "project") == {}
    (failed,) = (tmp_path / "project" / FAILED_DIR).iterdir()  # one failure so far
    assert failed.name.startswith("v1-")
    assert "HTTP 401" in (failed / "train.log").read_text()
    label_studio.tasks = []
    with pytest.raises(RetrainError, match="no annotated task"):
        run_job(job(tmp_path, label_studio.url, tiny_config))
    assert len(list((tmp_path / "project" / FAILED_DIR).iterdir())) == 2


def test_retrain_config(tmp_path: Path) -> None:
    config = retrain_config("fast")
    assert config.epochs == 30 and config.calibrate is False
    # The encoder: the served model directory's own encoder/ folder, not the name or path the
    # served model was first trained from (moved, or on another machine) ...
    served = SpertConfig(encoder="/gone/elsewhere/encoder", max_span_size=4).model_config()
    config = retrain_config("fast", served, served_dir=tmp_path / "v3" / "final")
    assert config.encoder == str((tmp_path / "v3" / "final" / ENCODER_DIR).resolve())
    assert config.max_span_size == 4
    # ... unless --train-config sets one.
    train_config = tmp_path / "train.toml"
    train_config.write_text('encoder = "my/encoder"\n')
    config = retrain_config("fast", served, train_config, served_dir=tmp_path / "v3" / "final")
    assert config.encoder == "my/encoder"


def test_retrain_config_of_a_served_ensemble(tmp_path: Path, bert_dir: Path) -> None:
    """An ensemble retrains as one model, from its first member's encoder folder."""
    model = keeping_model(bert_dir)
    SpERT.ensemble([model, model]).save(tmp_path / "ensemble")
    config = retrain_config("fast", model.config, served_dir=tmp_path / "ensemble")
    assert config.encoder == str((tmp_path / "ensemble" / "member_1" / ENCODER_DIR).resolve())
    assert Path(config.encoder, "config.json").is_file()


def test_retraining_trains_from_a_served_version_whose_first_encoder_is_gone(
    tmp_path: Path, label_studio: FakeLabelStudio, tiny_config: SpertConfig
) -> None:
    """A served version, trained from an encoder path that no longer exists, retrains from its
    own encoder folder."""
    first = run_job(job(tmp_path, label_studio.url, tiny_config, min_dev_documents=13))
    served = SpERT.load(first / "final", device="cpu").config
    moved = tmp_path / "moved" / "final"
    shutil.copytree(first / "final", moved)
    served_elsewhere = replace(served, encoder=str(tmp_path / "gone"))
    config = retrain_config("fast", served_elsewhere, served_dir=moved)
    config = replace(config, epochs=1, neg_entity_count=20, neg_relation_count=20)
    second = run_job(job(tmp_path, label_studio.url, config, version=2, min_dev_documents=13))
    assert versions(tmp_path / "project") == {1: first, 2: second}
    assert SpERT.load(second / "final", device="cpu").config.encoder == str(
        (moved / ENCODER_DIR).resolve()
    )


def test_retrainer_runs_one_at_a_time_and_queues_one_more(
    tmp_path: Path, label_studio: FakeLabelStudio, tiny_config: SpertConfig
) -> None:
    switched: list[tuple[int, Path]] = []
    config = tiny_config.replace(keep_checkpoints=0)
    retrainer = Retrainer(
        tmp_path / "project",
        lambda version, reason: job(tmp_path, label_studio.url, config, version, reason=reason),
        lambda version, path: switched.append((version, path)),
    )
    assert retrainer.request("first") == "started"
    assert retrainer.request("second") == "queued"
    assert retrainer.request("third") == "already queued"
    assert retrainer.wait(timeout=600)
    status = retrainer.to_dict()
    assert status["runs"] == 2 and status["failures"] == 0 and not status["queued"]
    assert [h["reason"] for h in status["history"]] == ["first", "second"]
    assert switched == [
        (1, model_dir(tmp_path / "project", 1)),
        (2, model_dir(tmp_path / "project", 2)),
    ]
    # A failing run (Label Studio refuses the key) leaves the versions as they were.
    retrainer.make_job = lambda version, reason: _bad(tmp_path, label_studio.url, config, version)
    assert retrainer.request("bad") == "started"
    assert retrainer.wait(timeout=600)
    assert retrainer.to_dict()["failures"] == 1 and len(switched) == 2
    assert sorted(versions(tmp_path / "project")) == [1, 2]


def _bad(tmp_path: Path, url: str, config: SpertConfig, version: int) -> RetrainJob:
    bad = job(tmp_path, url, config, version)
    bad.api_key = "wrong"
    return bad


def test_train_data_is_added_to_the_annotations(
    tmp_path: Path,
    label_studio: FakeLabelStudio,
    tiny_config: SpertConfig,
    sentences: list[Sentence],
    types: Types,
) -> None:
    data, types_file = tmp_path / "base.json", tmp_path / "types.json"
    write_dataset(data, sentences)
    types_file.write_text(json.dumps(types.to_dict()))
    extra = {"train_data": [str(data)], "train_types": str(types_file), "min_dev_documents": 99}
    folder = run_job(job(tmp_path, label_studio.url, tiny_config, **extra))
    info = json.loads((folder / "version.json").read_text())
    assert info["train_data"] == {"files": [str(data)], "sentences": 3}
    assert info["splits"]["train"]["sentences"] == 12
    # The model knows the annotated types and those of the data (Live_In, Spouse: only there).
    saved = json.loads((folder / "final" / "spert.json").read_text())["types"]
    assert list(saved["entities"]) == ["Peop", "Org", "Loc"]
    assert sorted(saved["relations"]) == ["Live_In", "Spouse", "Work_For"]
    assert (
        "training on 15 sentences (12 annotated documents, 3 sentences of 1 data file(s))"
        in (folder / "train.log").read_text()
    )
