"""``spert extract --format brat|label-studio|doccano``: what a tiny model predicts, written for
the annotation tools, reads back (with the importers' readers) to the same entities, relations
and scores as ``--format jsonl`` gives."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from spert.api import SpERT
from spert.cli import predict as predict_cli
from spert.config import SpertConfig
from spert.data import RelationType, Types
from spert.data.formats.brat import read_brat
from spert.data.formats.doccano import doccano_label_paths, read_doccano
from spert.data.formats.document import CharDocument, document_from_extraction
from spert.data.formats.label_studio import label_config_path, read_label_studio
from spert.data.formats.report import ImportReport
from spert.results import Document
from spert.runtime import io as X

pytestmark = pytest.mark.usefixtures("one_thread")

LINES = [
    "Mary works for Acme Corp in Boston.",
    "",
    "John Wilkes Booth, who assassinated President Lincoln, was an actor. He lived in Paris.",
    "The Ministry of Health (Paris) hired Dr. Smith. \u00c9t\u00e9 \U0001f600 caf\u00e9!",
]
TYPES = Types(
    entities=("Peop", "Org", "Loc"),
    relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
)


@pytest.fixture(scope="module")
def model_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model that predicts entities (the "none" class pushed down) and,
    with a low threshold, relations."""
    torch.manual_seed(0)
    config = SpertConfig(
        encoder=str(bert_dir), max_span_size=3, max_sentence_words=30, relation_threshold=0.3
    )
    model = SpERT.create(TYPES, config, "cpu")
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = -100.0
    path = tmp_path_factory.mktemp("extract-formats") / "run" / "final"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "input.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def extract(model_dir: Path, inputs: Path, out: Path, *extra: str) -> None:
    parser = argparse.ArgumentParser(prog="spert")
    predict_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["extract", "--model", str(model_dir), "--input", str(inputs), "--out", str(out)]
        + ["--quiet", *extra]
    )
    args.func(args)


@pytest.fixture(scope="module")
def expected(model_dir: Path, inputs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The documents of ``--format jsonl``, as CharDocuments."""
    out = tmp_path_factory.mktemp("jsonl") / "docs.jsonl"
    extract(model_dir, inputs, out)
    docs = [Document.from_dict(json.loads(line)) for line in out.read_text("utf-8").splitlines()]
    return [document_from_extraction(d, i, TYPES.symmetric) for i, d in enumerate(docs)]


def content(doc: CharDocument) -> tuple:
    """Text, entities and relations by their spans, scores rounded to 12 digits (each format
    is read from a run of its own)."""
    span = {e.id: (e.start, e.end) for e in doc.entities}

    def rounded(score: float | None) -> float | None:
        return None if score is None else round(score, 12)

    return (
        doc.id,
        doc.text,
        sorted((e.type, e.start, e.end, rounded(e.score)) for e in doc.entities),
        sorted(
            (r.type, span[r.head], span[r.tail], r.symmetric, rounded(r.score))
            for r in doc.relations
        ),
    )


def test_the_model_predicts_something(expected):
    assert [d.id for d in expected] == ["1", "3", "4"]
    assert sum(len(d.entities) for d in expected) > 0
    assert sum(len(d.relations) for d in expected) > 0


def test_label_studio(model_dir, inputs, expected, tmp_path):
    out = tmp_path / "tasks.json"
    extract(model_dir, inputs, out, "--format", "label-studio")
    tasks = json.loads(out.read_text("utf-8"))
    assert [t["predictions"][0]["model_version"] for t in tasks] == ["run/final"] * 3
    assert all("annotations" not in t for t in tasks)
    back = read_label_studio([out], ImportReport(), annotation="prediction")
    assert [content(d) for d in back] == [content(d) for d in expected]
    config = label_config_path(out).read_text("utf-8")
    assert all(f'"{name}"' in config for name in (*TYPES.entities, *TYPES.relation_names))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json", "tasks.label_config.xml"]


def test_doccano(model_dir, inputs, expected, tmp_path):
    out = tmp_path / "docs.jsonl"
    extract(model_dir, inputs, out, "--format", "doccano")
    back = read_doccano([out], ImportReport())
    assert [content(d) for d in back] == [content(d) for d in expected]
    spans_path, relations_path = doccano_label_paths(out)
    assert [x["text"] for x in json.loads(spans_path.read_text("utf-8"))] == list(TYPES.entities)
    assert [x["text"] for x in json.loads(relations_path.read_text("utf-8"))] == list(
        TYPES.relation_names
    )


def test_brat(model_dir, inputs, expected, tmp_path):
    out = tmp_path / "brat"
    extract(model_dir, inputs, out, "--format", "brat")
    assert sorted(p.name for p in out.iterdir()) == [
        "1.ann",
        "1.txt",
        "3.ann",
        "3.txt",
        "4.ann",
        "4.txt",
        "annotation.conf",
    ]
    back, types = read_brat([out], ImportReport())
    assert types is not None and types.symmetric == TYPES.symmetric
    assert set(types.entities) == set(TYPES.entities)
    assert [content(d) for d in sorted(back, key=lambda d: d.id)] == [content(d) for d in expected]


def test_brat_into_a_folder_of_documents_is_refused_before_predicting(
    model_dir, inputs, tmp_path, monkeypatch
):
    out = tmp_path / "brat"
    out.mkdir()
    (out / "other.txt").write_text("Someone else's document.", "utf-8")
    (out / "other.ann").write_text("", "utf-8")

    def never(*args, **kwargs):
        raise AssertionError("predicted before refusing the folder")

    with monkeypatch.context() as patch:
        patch.setattr(SpERT, "extract_stream", never)
        with pytest.raises(X.DataError, match=r"holds documents already \(other.ann, other.txt\)"):
            extract(model_dir, inputs, out, "--format", "brat")
    assert sorted(p.name for p in out.iterdir()) == ["other.ann", "other.txt"]
    # --overwrite replaces them.
    extract(model_dir, inputs, out, "--format", "brat", "--overwrite")
    assert sorted(p.name for p in out.iterdir())[:2] == ["1.ann", "1.txt"]
    assert not (out / "other.txt").exists()


def test_brat_needs_a_folder(model_dir, inputs):
    with pytest.raises(X.DataError, match="--format brat writes a folder"):
        extract(model_dir, inputs, Path("-"), "--format", "brat")


@pytest.mark.parametrize("fmt", ["label-studio", "doccano", "brat"])
def test_interrupted_run_leaves_valid_output(model_dir, tmp_path, monkeypatch, fmt):
    original = SpERT.extract_stream

    def interrupted(self, texts, batch_size=None):
        for i, doc in enumerate(original(self, texts, batch_size)):
            if i == 2:
                raise KeyboardInterrupt
            yield doc

    monkeypatch.setattr(SpERT, "extract_stream", interrupted)
    source = tmp_path / "in.txt"
    source.write_text("".join(f"Mary works in Boston {i}.\n" for i in range(5)), "utf-8")
    out = tmp_path / ("out" if fmt == "brat" else "out.json")
    with pytest.raises(SystemExit) as exit_info:
        extract(model_dir, source, out, "--format", fmt)
    assert exit_info.value.code == X.INTERRUPTED_EXIT_CODE
    if fmt == "label-studio":
        docs = read_label_studio([out], ImportReport(), annotation="prediction")
    elif fmt == "doccano":
        docs = read_doccano([out], ImportReport())
    else:
        docs = read_brat([out], ImportReport())[0]
    assert sorted(d.id for d in docs) == ["1", "2"]
    assert not list(tmp_path.glob(".*.tmp"))
