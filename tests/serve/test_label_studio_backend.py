"""A real Label Studio 1.23 drives ``spert serve --label-studio``, all on loopback addresses.

Label Studio runs from its own virtual environment ($SPERT_LABEL_STUDIO_VENV, default
``~/.cache/spert-test/label-studio-venv``, which ``.ci/run`` creates), so that its pins never
touch ours; where it could not be installed, the test is skipped with the reason. The test
creates a project with a labeling config, connects the backend through Label Studio's API, has
Label Studio retrieve predictions for the tasks (regions, relations, scores, the task score and
the model version arrive), posts annotations, presses "Start Training" (``POST
/api/ml/ID/train``) and checks that a new model version is then served and predicted with.
The model is a tiny random encoder (tests/conftest.py), so that retraining takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import keeping_model, label_studio_result

VENV = Path(
    os.environ.get("SPERT_LABEL_STUDIO_VENV", Path.home() / ".cache/spert-test/label-studio-venv")
)
#: Written by .ci/run when the install failed: the reason the test is skipped.
INSTALL_FAILED = VENV.parent / "label-studio-install-failed.txt"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
HEADERS = {"Authorization": f"Token {TOKEN}"}
LABEL_CONFIG = """<View>
  <Relations><Relation value="Work_For"/><Relation value="Live_In"/></Relations>
  <Labels name="label" toName="text">
    <Label value="Peop"/><Label value="Org"/><Label value="Loc"/><Label value="Misc"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
#: Task texts with their gold entities (type, text) and relations (type, head, tail).
GOLD: dict[str, tuple[list[tuple[str, str]], list[tuple[str, int, int]]]] = {
    "Mary works for Acme Corp in Boston and lives in Cambridge.": (
        [("Peop", "Mary"), ("Org", "Acme Corp"), ("Loc", "Boston"), ("Loc", "Cambridge")],
        [("Work_For", 0, 1), ("Live_In", 0, 3)],
    ),
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.": (
        [("Peop", "John Wilkes Booth"), ("Peop", "Lincoln")],
        [],
    ),
    "The Ministry of Health in Paris hired Dr. Smith last year.": (
        [("Org", "Ministry of Health"), ("Loc", "Paris"), ("Peop", "Smith")],
        [("Work_For", 2, 0)],
    ),
}
START_TIMEOUT_S = 420.0  # the first start migrates a new database: minutes on 2 busy cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, what: str, log: Path | None = None) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` (and the log's
    end) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, log: Path, timeout: float, what: str
) -> Iterator[str]:
    """A server started by ``command`` (output to ``log``), once its /health answers on
    ``port``; stopped at the end. Fails, with the log's end, if it exits or is not up in
    ``timeout`` seconds."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: (
                process.poll() is not None
                or httpx.get(f"{url}/health", timeout=2).status_code == 200
            ),
            timeout,
            what,
            log,
        )
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Label Studio on a free loopback port, with a user and a legacy API token."""
    executable = VENV / "bin" / "label-studio"
    if not executable.exists():
        reason = INSTALL_FAILED.read_text().strip() if INSTALL_FAILED.exists() else ""
        pytest.skip(
            f"Label Studio is not installed in {VENV} ({reason or 'run .ci/run to install it'})"
        )
    folder = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    log = folder / "label-studio.log"
    env = {
        **os.environ,
        # A backend (and its webhook) on this machine: Label Studio 1.23 refuses loopback
        # addresses unless told otherwise.
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",
    }
    command = [
        str(executable),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(folder / "data"),
        "--username",
        "user@example.com",
        "--password",
        "spert-test-password",
        "--user-token",
        TOKEN,
        "--enable-legacy-api-token",
    ]
    with running(command, env, port, log, START_TIMEOUT_S, "Label Studio") as url:
        yield url


@pytest.fixture(scope="module")
def backend(
    label_studio: str, bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Path]]:
    """``spert serve --label-studio`` with an untrained tiny model (it keeps some entities:
    the "none" class pushed up) and a training config of 2 epochs on the tiny encoder."""
    folder = tmp_path_factory.mktemp("backend")
    model = keeping_model(bert_dir)
    model.save(folder / "model")
    (folder / "train.toml").write_text(
        f'encoder = "{bert_dir}"\nepochs = 2\ntrain_batch_size = 2\nneg_entity_count = 20\n'
        "neg_relation_count = 20\nbf16 = false\nfreeze_word_embeddings = false\n"
        "keep_checkpoints = 0\n"
    )
    port = free_port()
    log = folder / "backend.log"
    project_dir = folder / "project"
    src = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        "LABEL_STUDIO_URL": label_studio,
        "LABEL_STUDIO_API_KEY": TOKEN,
    }
    command = [
        sys.executable,
        "-m",
        "spert",
        "serve",
        "--label-studio",
        "--model",
        str(folder / "model"),
        "--project-dir",
        str(project_dir),
        "--train-config",
        str(folder / "train.toml"),
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    with running(command, env, port, log, 180, "the backend") as url:
        yield url, project_dir, log


def api(label_studio: str) -> httpx.Client:
    return httpx.Client(base_url=label_studio, headers=HEADERS, timeout=120)


def retrieve_predictions(ls: httpx.Client, project: int) -> None:
    """The data manager's "Retrieve Predictions" action on every task of the project."""
    answer = ls.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert answer.status_code == 200, answer.text


def predictions_of(ls: httpx.Client, project: int, version: str) -> list[dict[str, Any]]:
    found = ls.get("/api/predictions", params={"project": project}).json()
    return [p for p in found if p["model_version"] == version]


def annotation(text: str) -> list[dict[str, Any]]:
    return label_studio_result(text, *GOLD[text])


def test_label_studio_predicts_and_retrains(
    label_studio: str, backend: tuple[str, Path, Path]
) -> None:
    url, project_dir, log = backend
    ls = api(label_studio)
    project = ls.post("/api/projects", json={"title": "spert", "label_config": LABEL_CONFIG})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    imported = ls.post(f"/api/projects/{project_id}/import", json=[{"text": text} for text in GOLD])
    assert imported.json()["task_count"] == len(GOLD), imported.text

    # Connect the backend: Label Studio checks /health and /setup, and adds a webhook to it.
    ml = ls.post("/api/ml", json={"url": url, "project": project_id, "title": "spert"})
    assert ml.status_code == 201, ml.text
    assert (ml.json()["readable_state"], ml.json()["model_version"]) == ("Connected", "v0")
    webhooks = ls.get("/api/webhooks", params={"project": project_id}).json()
    assert [w["url"] for w in webhooks] == [f"{url}/webhook"]
    # /setup reported the label the model does not know, and the type the config lacks.
    assert "labeling config of project" in log.read_text() and "'Misc'" in log.read_text()

    # Label Studio asks the backend for predictions of every task.
    retrieve_predictions(ls, project_id)
    first = predictions_of(ls, project_id, "v0")
    assert len(first) == len(GOLD)
    regions = [r for p in first for r in p["result"] if r["type"] == "labels"]
    relations = [r for p in first for r in p["result"] if r["type"] == "relation"]
    assert regions and relations
    for item in regions + relations:
        assert 0.0 <= item["score"] <= 1.0
    assert all(r["from_name"] == "label" and r["to_name"] == "text" for r in regions)
    assert {r["labels"][0] for r in relations} <= {"Work_For", "Live_In"}  # Spouse: not in config
    assert all(isinstance(p["score"], float) and p["score"] >= 0 for p in first)
    assert any(p["score"] > 0 for p in first)
    # The backend made its version the project's model version: the data manager's
    # "Prediction score" column is the task score.
    wait_for(
        lambda: ls.get(f"/api/projects/{project_id}").json()["model_version"] == "v0",
        30,
        "the project's model version to become v0",
        log,
    )
    tasks = ls.get("/api/tasks", params={"project": project_id, "fields": "all"}).json()["tasks"]
    scores = {p["task"]: p["score"] for p in first}
    for task in tasks:
        assert task["predictions_score"] == pytest.approx(scores[task["id"]])

    # Annotate every task (each one a webhook to the backend), then "Start Training".
    for task in tasks:
        answer = ls.post(
            f"/api/tasks/{task['id']}/annotations",
            json={"result": annotation(task["data"]["text"])},
        )
        assert answer.status_code == 201, answer.text
    assert ls.post(f"/api/ml/{ml.json()['id']}/train").status_code == 200
    info = wait_for(
        lambda: (i := httpx.get(f"{url}/info", timeout=5).json())["model_version"] == "v1" and i,
        300,
        "version v1 to be trained and served",
        log,
    )
    assert info["retraining"]["runs"] == 1 and info["retraining"]["failures"] == 0
    assert (project_dir / "versions" / "v1" / "final" / "spert.json").is_file()
    assert (
        "import:   entity: 9 read, 9 imported"
        in (project_dir / "versions/v1/train.log").read_text()
    )
    # The new model knows the types that were annotated.
    assert sorted(info["entity_types"]) == ["Loc", "Org", "Peop"]
    assert sorted(info["relation_types"]) == ["Live_In", "Work_For"]

    # Label Studio sees the new version at its next /setup and predicts every task again.
    retrieve_predictions(ls, project_id)
    second = predictions_of(ls, project_id, "v1")
    assert len(second) == len(GOLD)
    assert ls.get(f"/api/ml/{ml.json()['id']}").json()["model_version"] == "v1"
    wait_for(
        lambda: ls.get(f"/api/projects/{project_id}").json()["model_version"] == "v1",
        30,
        "the project's model version to become v1",
        log,
    )
    assert httpx.get(f"{url}/versions").json()["versions"] == ["v1"]
