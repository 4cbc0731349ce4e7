"""The Label Studio ML backend app, in process: the labeling config and its mapping to the
model's types, /setup, /predict (regions, relations, scores, task score, model version),
/webhook and /versions. The real Label Studio drives it in test_label_studio_backend.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import keeping_model
from fastapi.testclient import TestClient

from spert.active.selection import binary_entropy, document_uncertainty
from spert.api import ENCODER_DIR, SpERT
from spert.config import BackendSettings
from spert.serve import ServeSettings
from spert.serve.label_studio import (
    LabelConfigError,
    TypeMapping,
    create_label_studio_app,
    parse_label_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: Names other than the ones `spert extract --format label-studio` writes, and a label (Misc)
#: and relation (Born_In) the model does not know; the model's Spouse is not in the config.
CONFIG = """<View>
  <Header value="Annotate"/>
  <Relations>
    <Relation value="Work_For"/><Relation value="Live_In"/><Relation value="Born_In"/>
  </Relations>
  <Labels name="ner" toName="doc">
    <Label value="Peop"/><Label value="Org"/><Label value="Loc"/><Label value="Misc"/>
  </Labels>
  <Text name="doc" value="$content"/>
</View>"""
TEXTS = [
    "Mary works for Acme Corp in Boston and lives in Cambridge.",
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.",
    "The Ministry of Health in Paris hired Dr. Smith last year.",
]


@pytest.fixture(scope="module")
def model(bert_dir: Path) -> SpERT:
    return keeping_model(bert_dir)


@pytest.fixture()
def client(model: SpERT, tmp_path: Path):
    settings = BackendSettings(project_dir=str(tmp_path / "project"), train_every=2)
    app = create_label_studio_app(model, ServeSettings(max_texts=2), settings)
    with TestClient(app) as c:
        yield c


def test_label_config_and_mapping(model: SpERT) -> None:
    config = parse_label_config(CONFIG)
    assert (config.text_name, config.text_field, config.labels_name) == ("doc", "content", "ner")
    assert config.labels == ("Peop", "Org", "Loc", "Misc")
    assert config.relations == ("Work_For", "Live_In", "Born_In")
    mapping = TypeMapping.of(config, model.types.entities, model.types.relation_names)
    assert mapping.entities == ["Peop", "Org", "Loc"]
    assert mapping.relations == ["Work_For", "Live_In"]
    assert mapping.config_only == {"labels": ["Misc"], "relations": ["Born_In"]}
    assert mapping.model_only == {"entity_types": [], "relation_types": ["Spouse"]}
    no_relations = parse_label_config(
        CONFIG.replace("<Relations>", "<!--").replace("</Relations>", "-->")
    )
    assert no_relations.relations is None


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<View><Labels name="l" toName="i"><Label value="A"/></Labels>'
            '<Image name="i" value="$img"/></View>',
            "no <Text",
        ),
        (
            '<View><Choices name="c" toName="t"/><Text name="t" value="$text"/></View>',
            "no <Labels> tag over its text",
        ),
        ("<View><Text", "not valid XML"),
    ],
)
def test_label_config_errors(xml: str, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(xml)


def test_health_and_setup(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "UP"
    body = {"project": "7.1733300000", "schema": CONFIG, "hostname": "http://localhost:8080"}
    answer = client.post("/setup", json=body).json()
    assert answer["model_version"] == "v0"
    assert answer["text_field"] == "content"
    assert answer["mapping"]["config_only"]["labels"] == ["Misc"]
    assert answer["mapping"]["model_only"]["relation_types"] == ["Spouse"]
    bad = client.post(
        "/setup", json={"project": "7.1", "schema": "<View><Image name='i' value='$x'/></View>"}
    )
    assert bad.status_code == 422
    assert "no text field the model can read" in bad.json()["detail"]
    assert client.get("/info").json()["project_id"] == 7


def test_predict(client: TestClient, model: SpERT) -> None:
    tasks = [{"id": 10 + i, "data": {"content": t}} for i, t in enumerate(TEXTS)]
    answer = client.post(
        "/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "7.1"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "v0"
    results = body["results"]
    assert len(results) == len(tasks)  # 3 tasks with max_texts 2: in two parts, in order
    expected = model.extract(TEXTS)
    regions = relations = 0
    for prediction, document, text in zip(results, expected, TEXTS):
        assert prediction["model_version"] == "v0"
        # The task score is the uncertainty of what the task shows: its regions and relations
        # (not Spouse, which the config cannot show), per word.
        words = sum(len(s.tokens) for s in document.sentences)
        shown = sum(binary_entropy(item["score"]) for item in prediction["result"]) / words
        assert prediction["score"] == pytest.approx(shown, abs=1e-4)
        ids = set()
        for item in prediction["result"]:
            assert 0.0 <= item["score"] <= 1.0
            if item["type"] == "labels":
                regions += 1
                ids.add(item["id"])
                assert (item["from_name"], item["to_name"]) == ("ner", "doc")
                value = item["value"]
                assert text[value["start"] : value["end"]] == value["text"]
                assert value["labels"][0] in ("Peop", "Org", "Loc")
            else:
                relations += 1
                assert item["type"] == "relation"
                assert item["labels"][0] in ("Work_For", "Live_In")  # not Spouse: not in config
                assert {item["from_id"], item["to_id"]} <= ids
        kept = [e for e in document.entities]
        assert len([r for r in prediction["result"] if r["type"] == "labels"]) == len(kept)
    assert regions > 0 and relations > 0


def test_predict_errors(client: TestClient) -> None:
    tasks = [{"id": 5, "data": {"text": "Mary works in Boston."}}]
    answer = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG})
    assert answer.status_code == 422
    assert (
        answer.json()["detail"] == "task 5: no text in data field 'content' (of <Text name='doc'>)"
    )
    long_task = [{"id": 6, "data": {"content": "x" * 100_001}}]
    answer = client.post("/predict", json={"tasks": long_task, "label_config": CONFIG})
    assert answer.status_code == 422 and "max_chars" in answer.json()["detail"]
    assert client.post("/predict", json={"tasks": "no"}).status_code == 422


def test_webhook_and_versions(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    # No Label Studio address known: the training is not started, and says why.
    answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3}})
    assert answer.status_code == 201
    assert answer.json()["training"].startswith(
        "not started: retraining needs Label Studio's address"
    )
    # train_every 2: the second annotation requests a training.
    first = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 3}})
    assert first.json()["training"] == "not requested"
    second = client.post("/webhook", json={"action": "ANNOTATION_UPDATED", "project": {"id": 3}})
    assert second.json()["training"].startswith("not started")
    # A bulk ANNOTATIONS_CREATED (Label Studio 1.23 sends the list as "annotation") counts
    # each of its annotations: 3 >= 2 requests a training at once.
    bulk = {
        "action": "ANNOTATIONS_CREATED",
        "project": {"id": 3},
        "annotation": [{"id": i} for i in range(3)],
        "task": [{"id": 1}],
    }
    assert client.post("/webhook", json=bulk).json()["training"].startswith("not started")
    # One annotation object is one annotation.
    single = {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "annotation": {"id": 9}}
    assert client.post("/webhook", json=single).json()["training"] == "not requested"
    other = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}})
    assert other.json()["training"] == "not requested"
    info = client.get("/info").json()
    assert info["retraining"]["runs"] == 0 and info["model_version"] == "v0"
    assert client.get("/versions").json()["versions"] == []


def test_task_score_counts_only_what_the_config_shows(client: TestClient, model: SpERT) -> None:
    """Types the labeling config cannot show (here Loc, left out of it) do not raise the task
    score the data manager sorts by."""
    config = CONFIG.replace('<Label value="Loc"/>', "")
    tasks = [{"id": i, "data": {"content": t}} for i, t in enumerate(TEXTS)]
    answer = client.post("/predict", json={"tasks": tasks, "label_config": config})
    assert answer.status_code == 200, answer.text
    changed = 0
    for prediction, document in zip(answer.json()["results"], model.extract(TEXTS)):
        regions = [item for item in prediction["result"] if item["type"] == "labels"]
        assert all(item["value"]["labels"] != ["Loc"] for item in regions)
        words = sum(len(s.tokens) for s in document.sentences)
        shown = sum(binary_entropy(item["score"]) for item in prediction["result"]) / words
        assert prediction["score"] == pytest.approx(shown, abs=1e-4)
        changed += abs(document_uncertainty(document) - prediction["score"]) > 1e-3
    assert changed > 0  # Loc was predicted: without the mapping the scores would differ


class Recording:
    """A model that records, by name, each model run it predicts, and calls ``hook`` (once)
    during its first."""

    def __init__(self, model: SpERT, name: str, runs: list[str], hook: Callable | None = None):
        self._model, self._name, self._runs, self._hook = model, name, runs, hook

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._model, attribute)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self._runs.append(self._name)
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return self._model.predict(*args, **kwargs)


def test_a_switch_during_a_request_leaves_it_one_version(
    model: SpERT, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new version switched to while a request is being predicted (one sentence per model
    run here, so its 3 sentences take 3 runs) serves from the next request on: the request in
    flight is predicted and labelled by the version it started with."""
    runs: list[str] = []
    new = Recording(model, "v1", runs)
    monkeypatch.setattr(SpERT, "load", lambda *args, **kwargs: new)
    settings = BackendSettings(project_dir=str(tmp_path / "project"))
    backend_box: list[Any] = []
    old = Recording(model, "v0", runs, hook=lambda: backend_box[0]._switch(1, tmp_path / "v1"))
    app = create_label_studio_app(old, ServeSettings(max_batch_sentences=1), settings)
    backend_box.append(app.state.backend)
    task = {"id": 1, "data": {"content": " ".join(TEXTS)}}
    body = {"tasks": [task], "label_config": CONFIG}
    with TestClient(app) as client:
        first = client.post("/predict", json=body).json()
        assert runs == ["v0", "v0", "v0"]  # the switch came during the first run
        assert first["model_version"] == "v0"
        assert first["results"][0]["model_version"] == "v0"
        runs.clear()
        second = client.post("/predict", json=body).json()
        assert runs == ["v1", "v1", "v1"]
        assert second["model_version"] == second["results"][0]["model_version"] == "v1"
        assert client.get("/info").json()["model_version"] == "v1"


def test_retraining_starts_from_the_served_model_directory(
    model: SpERT, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder of a retraining is the served version's own encoder folder, not the name or
    path the model was first trained from (which may have moved)."""
    monkeypatch.setattr(SpERT, "load", lambda *args, **kwargs: model)
    settings = BackendSettings(project_dir=str(tmp_path / "project"))
    first = tmp_path / "models" / "v0"
    app = create_label_studio_app(model, ServeSettings(), settings, path=first)
    backend = app.state.backend
    assert model.config.encoder != str(first / ENCODER_DIR)
    assert backend.served.train_config.encoder == str((first / ENCODER_DIR).resolve())
    backend._switch(1, tmp_path / "models" / "v1")
    assert backend.served.train_config.encoder == str(
        (tmp_path / "models" / "v1" / ENCODER_DIR).resolve()
    )
