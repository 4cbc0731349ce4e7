"""Label Studio JSON exports: entities, relations (right, left, bi), cancelled and several
annotations, malformed input, the labeling config, and the round trip read(write(x)) == x."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.cli import main
from spert.data import RelationType, Types
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.label_studio import (
    UNLABELED_RELATION,
    check_annotation_choice,
    label_config,
    label_config_path,
    label_studio_task,
    read_label_studio,
    write_label_studio,
)
from spert.data.formats.report import FormatError, ImportReport
from spert.data.formats.segment import documents_to_sentences

TEXT = "Mary works for Acme in Boston. Her husband John lives there."


def region(rid: str, start: int, end: int, *labels: str, text: str = TEXT) -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": list(labels)},
    }


def relation(head: str, tail: str, direction: str = "right", *labels: str) -> dict[str, Any]:
    out: dict[str, Any] = {"from_id": head, "to_id": tail, "type": "relation"}
    out["direction"] = direction
    if labels:
        out["labels"] = list(labels)
    return out


MARY, ACME, BOSTON, JOHN = (
    region("m", 0, 4, "Peop"),
    region("a", 15, 19, "Org"),
    region("b", 23, 29, "Loc"),
    region("j", 43, 47, "Peop"),
)


def annotation(aid: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": aid, "completed_by": 1, "was_cancelled": False, "result": result, **extra}


def export(*tasks: dict[str, Any]) -> list[dict[str, Any]]:
    return list(tasks)


def task(tid: int, *annotations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": tid, "data": {"text": TEXT}, "annotations": list(annotations), **extra}


def write(tmp_path: Path, content: Any, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content, indent=2), encoding="utf-8")
    return path


def triples(doc: CharDocument) -> list[tuple[str, str, str, bool]]:
    text = {e.id: doc.text[e.start : e.end] for e in doc.entities}
    return [(r.type, text[r.head], text[r.tail], r.symmetric) for r in doc.relations]


def test_entities_and_relation_directions(tmp_path):
    result = [
        MARY,
        ACME,
        BOSTON,
        JOHN,
        relation("m", "a", "right", "Work_For"),
        relation("b", "a", "left", "OrgBased_In"),  # left: Acme -> Boston
        relation("m", "j", "bi", "Spouse"),
        relation("j", "b"),  # drawn without a label
        {"id": "c1", "type": "choices", "value": {"choices": ["ok"]}, "from_name": "x"},
    ]
    report = ImportReport()
    [doc] = read_label_studio(write(tmp_path, export(task(5, annotation(1, result)))), report)
    assert doc.id == "5" and doc.text == TEXT
    assert [(e.id, e.type, doc.text[e.start : e.end]) for e in doc.entities] == [
        ("m", "Peop", "Mary"),
        ("a", "Org", "Acme"),
        ("b", "Loc", "Boston"),
        ("j", "Peop", "John"),
    ]
    assert triples(doc) == [
        ("Work_For", "Mary", "Acme", False),
        ("OrgBased_In", "Acme", "Boston", False),
        ("Spouse", "Mary", "John", True),
        (UNLABELED_RELATION, "John", "Boston", False),
    ]
    assert report.not_imported["choices"] == {"not modelled": 1}
    sentences = documents_to_sentences([doc], report, unit="document")
    assert sum(len(s.relations) for s in sentences) == 4
    assert report.reconciles(), report.totals()


def test_cancelled_and_the_annotation_choice(tmp_path):
    first = annotation(1, [MARY], completed_by={"id": 3, "email": "ann@example.org"})
    cancelled = annotation(2, [ACME], was_cancelled=True, completed_by=4)
    last = annotation(3, [BOSTON, JOHN], completed_by=4)
    path = write(tmp_path, export(task(1, first, cancelled, last), task(2)))

    def chosen(choice: str) -> tuple[list[str], ImportReport]:
        report = ImportReport()
        docs = read_label_studio([path], report, annotation=choice)
        assert report.totals()["task"] == {
            "read": 2,
            "imported": 1,
            "not_imported": {"no annotation": 1},  # task 2 has none: not a negative example
            "flagged": {},
            "reconciles": True,
        }
        return [e.id for d in docs for e in d.entities], report

    ids, report = chosen("first")
    assert ids == ["m"]
    assert report.not_imported["annotation"] == {"cancelled": 1, "not chosen": 1}
    assert chosen("last")[0] == ["b", "j"]
    assert chosen("annotator:ann@example.org")[0] == ["m"]
    ids, report = chosen("annotator:4")  # annotation 2 is by 4 too, but cancelled
    assert ids == ["b", "j"]
    assert report.not_imported["annotation"] == {"cancelled": 1, "other annotator": 1}
    with pytest.raises(FormatError, match="annotator:<email or id>"):
        check_annotation_choice("best")


def test_several_labels_one_region_and_a_relation_with_two_labels(tmp_path):
    result = [
        region("m", 0, 4, "Peop", "Org"),
        ACME,
        relation("m", "a", "right", "Work_For", "Live_In"),
    ]
    report = ImportReport()
    [doc] = read_label_studio(write(tmp_path, [task(1, annotation(1, result))]), report)
    assert [(e.id, e.type) for e in doc.entities] == [("m", "Peop"), ("m:Org", "Org"), ("a", "Org")]
    assert [(r.type, r.head, r.tail) for r in doc.relations] == [
        ("Work_For", "m", "a"),
        ("Live_In", "m", "a"),
    ]
    assert len({r.id for r in doc.relations}) == 2
    documents_to_sentences([doc], report)
    assert report.not_imported["entity"] == {"second type on one span": 1}
    assert report.reconciles(), report.totals()


def test_text_field_other_than_text_and_utf16_offsets(tmp_path):
    text = "\U0001f600 Mary works for Acme."
    # Older Label Studio versions count an emoji as two (UTF-16) characters.
    utf16 = {
        "id": "a",
        "type": "labels",
        "to_name": "body",
        "value": {"start": 18, "end": 22, "text": "Acme", "labels": ["Org"]},
    }
    current = {
        "id": "m",
        "type": "labels",
        "to_name": "body",
        "value": {"start": 2, "end": 6, "text": "Mary", "labels": ["Peop"]},
    }
    tasks = [{"id": 1, "data": {"content": text}, "annotations": [annotation(1, [current, utf16])]}]
    [doc] = read_label_studio(write(tmp_path, tasks), ImportReport())
    assert [doc.text[e.start : e.end] for e in doc.entities] == ["Mary", "Acme"]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([region("m", 0, 99, "Peop")], "annotation m: entity bad offsets"),
        (
            [{**MARY, "value": {**MARY["value"], "text": "Marx"}}],
            "annotation m: entity text mismatch",
        ),
        ([MARY, relation("m", "zz", "right", "Work_For")], "no region with id zz"),
        ([MARY, ACME, relation("m", "a", "up", "Work_For")], "relation bad direction"),
    ],
)
def test_malformed_input_names_file_task_and_id(tmp_path, result, message):
    path = write(tmp_path, [task(1, annotation(1, [MARY])), task(7, annotation(1, result))])
    with pytest.raises(FormatError) as info:
        read_label_studio([path], ImportReport())
    assert str(path) in str(info.value) and "record 2" in str(info.value)
    assert "task 7" in str(info.value) and message in str(info.value)
    report = ImportReport(lenient=True)
    docs = read_label_studio([path], report)
    assert len(docs) == 2 and report.entries[0].reason == "error"
    documents_to_sentences(docs, report)
    assert report.reconciles(), report.totals()


def test_invalid_json_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"data": {"text": "x"},\n  oops\n]', encoding="utf-8")
    with pytest.raises(FormatError, match=r"broken.json, record 1 \(line 3, column 3\)"):
        read_label_studio([path], ImportReport())


def test_write_predictions_and_label_config(tmp_path):
    doc = CharDocument(
        "doc-1",
        TEXT,
        [CharEntity("T1", "Peop", 0, 4, 0.9), CharEntity("T2", "Org", 15, 19, 0.7)],
        [CharRelation("R1", "Work_For", "T1", "T2", False, 0.5)],
    )
    types = Types(("Peop", "Org", "Loc"), (RelationType("Work_For"), RelationType("Spouse", True)))
    out = write_label_studio([doc], tmp_path / "tasks.json", types, model_version="run/final")
    [written] = json.loads(out.read_text("utf-8"))
    assert written == label_studio_task(doc, "run/final")
    [prediction] = written["predictions"]
    assert "annotations" not in written
    assert prediction["model_version"] == "run/final"
    assert prediction["score"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert [r.get("score") for r in prediction["result"]] == [0.9, 0.7, 0.5]
    config = ET.fromstring(label_config_path(out).read_text("utf-8"))
    assert [x.get("value") for x in config.iter("Label")] == ["Peop", "Org", "Loc"]
    assert [x.get("value") for x in config.iter("Relation")] == ["Work_For", "Spouse"]
    labels, text = config.find("Labels"), config.find("Text")
    assert labels is not None and text is not None and labels.get("toName") == text.get("name")
    # A gold document (no model version) is written as an annotation.
    assert "annotations" in label_studio_task(dataclasses.replace(doc), None)
    # What was predicted reads back with --annotation prediction, scores included.
    assert read_label_studio([out], ImportReport(), "prediction") == [
        dataclasses.replace(doc, source=str(out))
    ]
    assert read_label_studio([out], ImportReport()) == []  # nothing reviewed yet


def test_label_config_escapes_names():
    types = Types(('A&B "x"', "<C>"), (RelationType("r<1>"),))
    config = ET.fromstring(label_config(types))
    assert [x.get("value") for x in config.iter("Label")] == ['A&B "x"', "<C>"]


# -- property: read(write(x)) == x ---------------------------------------------------------
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
SCORES = st.none() | st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def documents(draw: st.DrawFn, scored: bool) -> CharDocument:
    text = draw(st.text(CHARS, min_size=1, max_size=40))
    scores = SCORES if scored else st.none()
    entities = []
    for i in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, len(text)))
        kind = draw(st.sampled_from(["Peop", "Org", "Loc"]))
        entities.append(CharEntity(f"e{i}", kind, start, end, draw(scores)))
    relations = []
    if len(entities) >= 2:
        for i in range(draw(st.integers(0, 5))):
            head, tail = draw(st.lists(st.sampled_from(entities), min_size=2, max_size=2))
            kind = draw(st.sampled_from(["Work_For", "Spouse"]))
            symmetric = draw(st.booleans())
            relations.append(CharRelation(f"r{i}", kind, head.id, tail.id, symmetric, draw(scores)))
    return CharDocument(draw(st.text(CHARS, min_size=1, max_size=8)), text, entities, relations)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.lists(documents(scored=False), max_size=4), predicted=st.booleans())
def test_property_read_of_write_is_identity(tmp_path, docs, predicted):
    path = tmp_path / "round.json"
    write_label_studio(docs, path, model_version="m" if predicted else None)
    back = read_label_studio([path], ImportReport(), "prediction" if predicted else "first")
    assert back == [dataclasses.replace(d, source=str(path)) for d in docs]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.lists(documents(scored=True), max_size=3))
def test_property_predictions_keep_their_scores(tmp_path, docs):
    path = tmp_path / "predicted.json"
    write_label_studio(docs, path, model_version="m")
    back = read_label_studio([path], ImportReport(), "prediction")
    assert back == [dataclasses.replace(d, source=str(path)) for d in docs]


# -- spert import label-studio, spert export label-studio -------------------------------------
def test_cli_import_then_export_gives_the_chosen_annotations_back(tmp_path):
    chosen = [MARY, ACME, JOHN, relation("m", "a", "right", "Work_For")]
    chosen += [relation("j", "m", "bi", "Spouse")]
    tasks = [
        task(1, annotation(1, [MARY]), annotation(2, chosen)),
        task(2, annotation(3, [BOSTON, ACME, relation("b", "a", "left", "OrgBased_In")])),
    ]
    source = write(tmp_path, tasks)
    out = tmp_path / "data"
    main(
        ["import", "label-studio", str(source), "--out", str(out), "--annotation", "last"]
        + ["--split", "1,0,0", "--unit", "document", "--quiet"]
    )
    types = json.loads((out / "types.json").read_text("utf-8"))
    assert types["relations"]["Spouse"]["symmetric"] is True
    assert types["relations"]["Work_For"]["symmetric"] is False
    report = json.loads((out / "import_report.json").read_text("utf-8"))
    assert report["reconciles"] and report["totals"]["annotation"]["not_imported"] == {
        "not chosen": 1
    }
    exported = tmp_path / "review.json"
    main(["export", "label-studio", str(out / "train.json"), "--out", str(exported)])
    assert label_config_path(exported).is_file()
    original = read_label_studio([source], ImportReport(), "last")
    back = read_label_studio([exported], ImportReport())

    def content(doc: CharDocument) -> tuple:
        spans = sorted((e.type, e.start, e.end) for e in doc.entities)
        return doc.id, doc.text, spans, sorted(triples(doc))

    assert sorted(map(content, back)) == sorted(map(content, original))


# -- issue 23 ----------------------------------------------------------------------------------
def test_duplicate_region_ids_are_reported_not_reattached(tmp_path: Path) -> None:
    results = [
        region("r1", 0, 4, "Peop"),
        region("r2", 15, 19, "Org"),
        region("r1", 23, 29, "Loc"),  # another region with the same id
        relation("r1", "r2", "right", "Work_For"),
    ]
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps([{"id": 7, "data": {"text": TEXT}, "annotations": [{"result": results}]}])
    )
    with pytest.raises(FormatError, match=r"task 7, annotation r1: .*duplicate region id"):
        read_label_studio([path], ImportReport())
    report = ImportReport(lenient=True)
    [doc] = read_label_studio([path], report)
    assert [(e.type, TEXT[e.start : e.end]) for e in doc.entities] == [
        ("Peop", "Mary"),
        ("Org", "Acme"),
    ]
    assert doc.relations == []  # which r1 the relation meant cannot be told
    assert report.not_imported["relation"] == {"ambiguous region id": 1}
    assert report.totals()["relation"]["reconciles"]
    # One region with labels of two controls (the same span twice) is one region, not a duplicate.
    twice = [region("r1", 0, 4, "Peop"), region("r1", 0, 4, "Other"), region("r2", 15, 19, "Org")]
    path.write_text(json.dumps([{"data": {"text": TEXT}, "annotations": [{"result": twice}]}]))
    [doc] = read_label_studio([path], ImportReport())
    assert len(doc.entities) == 3


def test_offsets_unchecked_outside_the_bmp_are_flagged(tmp_path: Path) -> None:
    text = "😀 Mary works for Acme."
    r = region("r1", 2, 6, "Peop", text=text)
    del r["value"]["text"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"data": {"text": text}, "annotations": [{"result": [r]}]}]))
    report = ImportReport()
    [doc] = read_label_studio([path], report)
    [flag] = report.flags
    assert flag.reason == "offsets unchecked" and "outside the BMP" in flag.detail
    # With value.text the offsets are checked (and UTF-16 ones converted): nothing to flag.
    path.write_text(
        json.dumps(
            [
                {
                    "data": {"text": text},
                    "annotations": [{"result": [region("r1", 2, 6, "Peop", text=text)]}],
                }
            ]
        )
    )
    report = ImportReport()
    read_label_studio([path], report)
    assert report.flags == []
