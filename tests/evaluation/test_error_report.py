"""The error report of `spert eval --report`: its files, and numbers that agree with the
breakdown, the metrics and the reliability of the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spert.api import SpERT
from spert.cli import main as cli_main
from spert.data import Entity, Relation, Sentence, Types, write_dataset
from spert.evaluation import evaluate
from spert.evaluation.error_report import (
    REPORT_FILES,
    ReportInput,
    precision_recall,
    report_numbers,
    summary_markdown,
    write_report,
)
from spert.evaluation.errors import error_breakdown
from spert.evaluation.reliability import calibration_samples, reliability
from spert.model.calibration import Calibration

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"


def scored(sentence: Sentence, rng: np.random.Generator) -> Sentence:
    """A prediction: gold with one entity dropped, a spurious one added, random scores."""
    entities = [
        Entity(e.type, e.start, e.end, float(rng.uniform(0.5, 1))) for e in sentence.entities
    ]
    relations = [
        Relation(r.type, r.head, r.tail, float(rng.uniform(0.05, 1))) for r in sentence.relations
    ]
    entities.append(Entity("Loc", 0, 1, float(rng.uniform(0.5, 1))))
    if entities[:-1]:
        relations.append(Relation("Live_In", 0, len(entities) - 1, float(rng.uniform(0.05, 1))))
    return Sentence(list(sentence.tokens), entities, relations)


def test_precision_recall_by_hand() -> None:
    curve = precision_recall(np.array([0.8, 0.9, 0.3, 0.8]), np.array([1, 1, 0, 0]), gold=4)
    assert curve["thresholds"] == [0.9, 0.8, 0.3]
    assert curve["precision"] == pytest.approx([1.0, 2 / 3, 0.5])
    assert curve["recall"] == pytest.approx([0.25, 0.5, 0.5])
    assert curve["average_precision"] == pytest.approx(0.25 * 1 + 0.25 * 2 / 3, abs=1e-6)
    empty = precision_recall(np.array([]), np.array([]), gold=0)
    assert empty["thresholds"] == [] and empty["average_precision"] == 0.0


def test_report_numbers_agree(types: Types, sentences: list[Sentence]) -> None:
    rng = np.random.default_rng(0)
    predictions = [scored(s, rng) for s in sentences]
    floor = [scored(s, rng) for s in sentences]
    uncalibrated = [scored(s, rng) for s in sentences]
    metrics = evaluate(sentences, predictions, types)
    numbers, breakdown = report_numbers(
        ReportInput(
            sentences,
            predictions,
            types,
            floor,
            uncalibrated,
            {"Work_For": 0.3, "Live_In": 0.5, "Spouse": 0.4},
            None,
            metrics,
        )
    )
    json.dumps(numbers)  # plain JSON
    assert numbers["calibrated"]
    for variant, data in (("before", uncalibrated), ("after", floor)):
        samples = calibration_samples(sentences, data, types)
        expected = reliability(samples.relation_scores, samples.relation_correct, 10)
        got = numbers["reliability"]["relations"][variant]
        assert got["ece"] == pytest.approx(expected.ece, abs=1e-6)
        assert got["counts"] == expected.counts
        assert got["samples"] == len(samples.relation_scores)
    assert numbers["errors"] == breakdown.to_dict()
    assert breakdown.totals == error_breakdown(sentences, predictions, types).totals
    # operating points are the actual predictions: they match the per type metrics
    for name, point in numbers["operating_points"]["relations"].items():
        m = metrics["relations_strict"]["per_type"][name]
        assert 100 * point["precision"] == pytest.approx(m["precision"], abs=1e-3)
        assert 100 * point["recall"] == pytest.approx(m["recall"], abs=1e-3)
    assert numbers["operating_points"]["relations"]["Live_In"]["threshold"] == 0.5
    # a curve's gold count is the type's support; its recall never exceeds 1
    for name, curve in numbers["precision_recall"]["entities"].items():
        assert curve["gold"] == metrics["entities"]["per_type"].get(name, {}).get("support", 0)
        assert all(0 <= r <= 1 for r in curve["recall"])
    text = summary_markdown(numbers)
    assert f"{numbers['reliability']['entities']['after']['ece']:.4f}" in text
    assert "![reliability diagrams](reliability.png)" in text


def test_write_report_without_calibration(
    types: Types, sentences: list[Sentence], tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    predictions = [scored(s, rng) for s in sentences]
    numbers = write_report(tmp_path / "r", ReportInput(sentences, predictions, types, predictions))
    for name in REPORT_FILES:
        path = tmp_path / "r" / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes().startswith(PNG)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(REPORT_FILES)
    assert not numbers["calibrated"]
    assert numbers["reliability"]["relations"]["after"] is None
    stored = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert stored["errors"]["counts"] == numbers["errors"]["counts"]
    page = (tmp_path / "r" / "errors.html").read_text(encoding="utf-8")
    # the spurious Loc entity of every sentence is an entity false positive
    assert "Entities, false positives: spurious" in page
    assert "no calibration" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_eval_report_cli(types, sentences, tiny_config, tmp_path, capsys) -> None:
    model = SpERT.create(types, tiny_config.replace(max_span_size=3))
    model.calibration = Calibration(
        types.entities,
        types.relation_names,
        entity_temperature=2.0,
        relation_scale=(0.5, 0.5, 0.5),
        relation_bias=(0.0, 0.0, 0.0),
        relation_thresholds=(0.3, 0.45, 0.6),
    )
    model.save(tmp_path / "model")
    data = tmp_path / "test.json"
    write_dataset(data, sentences)
    report = tmp_path / "report"
    cli_main(
        ["eval", "--model", str(tmp_path / "model"), "--data", str(data)]
        + ["--report", str(report), "--out", str(tmp_path / "m.json")]
    )
    out = capsys.readouterr().out
    assert f"report: {report / 'report.md'}" in out
    assert "relations ECE:" in out and "calibrated" in out
    numbers = json.loads((report / "report.json").read_text(encoding="utf-8"))
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert numbers["metrics"] == metrics
    assert numbers["calibrated"]
    assert numbers["reliability"]["entities"]["after"] is not None
    thresholds = {n: p["threshold"] for n, p in numbers["operating_points"]["relations"].items()}
    assert set(thresholds.values()) <= {0.3, 0.45, 0.6}
    for name in REPORT_FILES:
        assert (report / name).is_file(), name
    totals = numbers["errors"]["totals"]["relations"]
    micro = metrics["relations_strict"]["micro"]
    tp, fp, fn = totals["tp"], totals["fp"], totals["fn"]
    assert micro["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    # without its calibration: one set of reliability numbers, the default threshold
    plain = tmp_path / "plain"
    cli_main(
        ["eval", "--model", str(tmp_path / "model"), "--data", str(data)]
        + ["--report", str(plain), "--no-calibration"]
    )
    numbers = json.loads((plain / "report.json").read_text(encoding="utf-8"))
    assert not numbers["calibrated"]
    assert numbers["info"]["calibration"] == "off (--no-calibration)"
    assert numbers["reliability"]["relations"]["after"] is None
    thresholds = {p["threshold"] for p in numbers["operating_points"]["relations"].values()}
    assert thresholds <= {tiny_config.relation_threshold}


def test_eval_report_needs_matplotlib(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("spert.cli.predict.report_available", lambda: False)
    with pytest.raises(SystemExit, match="needs matplotlib|with matplotlib"):
        cli_main(["eval", "--model", "nowhere", "--data", "x.json", "--report", str(tmp_path)])
