"""What to annotate next: the uncertainty and margin measures, ranking, ``spert select``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import keeping_model

from spert.active.selection import (
    binary_entropy,
    document_uncertainty,
    margin,
    rank,
    rank_documents,
    select,
)
from spert.api import SpERT
from spert.cli import main
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

pytestmark = pytest.mark.usefixtures("one_thread")


def sentence(words: int, entity_scores=(), relation_scores=()) -> ExtractedSentence:
    tokens = [f"w{i}" for i in range(words)]
    entities = [ExtractedEntity("Peop", "w0", 0, 2, 0, 1, s) for s in entity_scores]
    relations = [ExtractedRelation("Work_For", 0, 1, s) for s in relation_scores]
    return ExtractedSentence(" ".join(tokens), 0, 0, tokens, [(0, 0)] * words, entities, relations)


def test_binary_entropy() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert binary_entropy(0.9) == pytest.approx(-(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1)))
    assert binary_entropy(0.2) == pytest.approx(binary_entropy(0.8))


def test_uncertainty_sums_entities_and_relations_per_word() -> None:
    doc = Document("", [sentence(4, [0.5, 0.9], [0.5]), sentence(6)])
    expected = (1.0 + binary_entropy(0.9) + 1.0) / 10
    assert document_uncertainty(doc) == pytest.approx(expected)
    # The same decisions in a document twice as long: half as uncertain per word.
    longer = Document("", [sentence(4, [0.5, 0.9], [0.5]), sentence(16)])
    assert document_uncertainty(longer) == pytest.approx(expected / 2)
    assert document_uncertainty(Document("")) == 0.0


def test_margin_is_the_most_ambiguous_decision() -> None:
    doc = Document("", [sentence(3, [0.95, 0.6], [0.99])])
    assert margin(doc.sentences) == pytest.approx(1 - 0.2)
    assert margin([sentence(3)]) == 0.0


def test_rank_documents() -> None:
    docs = [
        Document("sure", [sentence(5, [0.99])]),
        Document("most uncertain", [sentence(5, [0.5, 0.5])]),
        Document("unsure", [sentence(5, [0.7])]),
    ]
    chosen = rank_documents(docs, 2, "uncertainty")
    assert [(c.index, c.rank) for c in chosen] == [(1, 1), (2, 2)]
    assert chosen[0].score > chosen[1].score
    assert [c.index for c in rank_documents(docs, 5, "margin")] == [1, 2, 0]
    draws = [[c.index for c in rank_documents(docs * 5, 15, "random", seed)] for seed in (0, 1)]
    assert sorted(draws[0]) == list(range(15))  # a permutation
    assert draws[0] != draws[1]
    assert draws[0] == [c.index for c in rank_documents(docs * 5, 15, "random", 0)]
    # The same text twice: chosen once.
    twins = [Document("a  b", docs[1].sentences), Document("a b", docs[1].sentences), docs[2]]
    assert [c.index for c in rank_documents(twins, 3, "uncertainty")] == [0, 2]
    assert [c.index for c in rank([0.9, 0.9, 0.5], 3, "margin", keys=["x", "y", "x"])] == [0, 1]
    with pytest.raises(ValueError, match="unknown strategy"):
        rank_documents(docs, 1, "entropy")
    with pytest.raises(ValueError, match="budget"):
        rank_documents(docs, 0, "uncertainty")


@pytest.fixture(scope="module")
def model_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("select") / "model"
    keeping_model(bert_dir).save(path)
    return path


TEXTS = [
    "Mary works for Acme Corp in Boston and lives in Cambridge.",
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.",
    "The Ministry of Health in Paris hired Dr. Smith last year.",
    "Mary lives in Paris.",
]


def test_select_scores_the_model_predictions(model_dir: Path) -> None:
    model = SpERT.load(model_dir, device="cpu")
    chosen, documents = select(model, TEXTS, 3, "uncertainty")
    assert [c.rank for c in chosen] == [1, 2, 3]
    assert any(d.entities for d in documents)  # a measure over something
    for c in chosen:
        assert c.score == pytest.approx(document_uncertainty(documents[c.index]))
    assert [c.score for c in chosen] == sorted((c.score for c in chosen), reverse=True)
    rest = set(range(len(TEXTS))) - {c.index for c in chosen}
    assert all(document_uncertainty(documents[i]) <= chosen[-1].score for i in rest)


def test_select_command(model_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    out = tmp_path / "selected.jsonl"
    main(
        [
            "select",
            "--model",
            str(model_dir),
            "--input",
            str(docs),
            "--budget",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rank"] for r in records] == [1, 2]
    assert {r["id"] for r in records} <= {f"d{i}" for i in range(len(TEXTS))}
    assert all(r["text"] == TEXTS[int(r["id"][1:])] for r in records)
    assert records[0]["uncertainty"] >= records[1]["uncertainty"]
    main(
        [
            "select",
            "--input",
            str(docs),
            "--budget",
            "4",
            "--strategy",
            "random",
            "--out",
            str(out),
            "--seed",
            "3",
        ]
    )
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == [
        f"d{i}" for i in range(4)
    ]
    with pytest.raises(SystemExit, match="budget"):
        main(["select", "--input", str(docs), "--budget", "0", "--strategy", "random"])


def test_select_has_the_prediction_options(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spert select`` loads its model as ``spert extract`` does: --device, --runtime,
    --no-calibration and --batch-size."""
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(TEXTS) + "\n")
    loaded: list[tuple[Any, ...]] = []
    load = SpERT.load

    def recording_load(path: Any, device: Any = None, runtime: str = "torch", calibration=True):
        loaded.append((str(path), device, runtime, calibration))
        return load(path, device=device, runtime=runtime, calibration=calibration)

    monkeypatch.setattr(SpERT, "load", recording_load)
    out = tmp_path / "selected.jsonl"
    main(
        ["select", "--model", str(model_dir), "--input", str(docs), "--budget", "2"]
        + ["--out", str(out), "--quiet", "--device", "cpu", "--runtime", "torch"]
        + ["--no-calibration", "--batch-size", "2"]
    )
    assert loaded == [(str(model_dir), "cpu", "torch", False)]
    assert len(out.read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="export-onnx"):  # --runtime onnx needs its files
        main(
            ["select", "--model", str(model_dir), "--input", str(docs), "--budget", "1"]
            + ["--runtime", "onnx", "--quiet"]
        )
