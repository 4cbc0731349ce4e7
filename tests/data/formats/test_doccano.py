"""doccano relation extraction files: the shipped samples, malformed input, writing, and the
round trip read(write(x)) == x."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.cli import main
from spert.data import RelationType, Types
from spert.data.formats.doccano import (
    doccano_label_paths,
    doccano_record,
    read_doccano,
    read_doccano_labels,
    write_doccano,
    write_doccano_labels,
)
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import FormatError, ImportReport
from spert.data.formats.segment import documents_to_sentences

SAMPLES = SHARED / "annotations" / "doccano"
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="the shared annotation samples are not on this machine"
)
IMPORT_SAMPLE = "relation_extraction_import.jsonl"
EXPORT_SAMPLE = "relation_extraction_export.json"
GOOGLE = "Google was founded on September 4, 1998, by Larry Page and Sergey Brin."


def spans(doc: CharDocument) -> list[tuple[str, str]]:
    return [(e.type, doc.text[e.start : e.end]) for e in doc.entities]


def relation_texts(doc: CharDocument) -> list[tuple[str, str, str]]:
    text = {e.id: doc.text[e.start : e.end] for e in doc.entities}
    return [(r.type, text[r.head], text[r.tail]) for r in doc.relations]


@needs_samples
@pytest.mark.parametrize(
    "name", ["relation_extraction_import.jsonl", "relation_extraction_export.json"]
)
def test_shipped_samples(name):
    report = ImportReport()
    [doc] = read_doccano([SAMPLES / name], report)
    assert doc.text == GOOGLE
    assert spans(doc) == [
        ("ORG", "Google"),
        ("DATE", "September 4, 1998"),
        ("PERSON", "Larry Page"),
        ("PERSON", "Sergey Brin"),
    ]
    assert relation_texts(doc) == [
        ("foundedAt", "Google", "September 4, 1998"),
        ("foundedBy", "Google", "Larry Page"),
        ("foundedBy", "Google", "Sergey Brin"),
    ]
    assert [r.id for r in doc.relations] == ["0", "1", "2"]  # the export's ids, or positions
    assert not any(r.symmetric for r in doc.relations)
    assert (report.read["record"], report.read["entity"], report.read["relation"]) == (1, 4, 3)
    # Through the shared path, every annotation is imported and the totals reconcile.
    sentences = documents_to_sentences([doc], report)
    assert sum(len(s.entities) for s in sentences) == 4
    assert sum(len(s.relations) for s in sentences) == 3
    assert report.reconciles(), report.totals()


@needs_samples
def test_folder_input_reads_both_samples_the_same():
    docs = read_doccano([SAMPLES / IMPORT_SAMPLE, SAMPLES / EXPORT_SAMPLE], ImportReport())
    assert len(docs) == 2
    assert docs[0].id != docs[1].id  # no record id: file stem and record number
    assert [dataclasses.replace(d, id="", source="") for d in docs[:1]] == [
        dataclasses.replace(d, id="", source="") for d in docs[1:]
    ]


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def record(**changes: object) -> dict:
    base = {
        "text": "Mary works for Acme.",
        "entities": [
            {"id": 1, "start_offset": 0, "end_offset": 4, "label": "Peop"},
            {"id": 2, "start_offset": 15, "end_offset": 19, "label": "Org"},
        ],
        "relations": [{"id": 7, "from_id": 1, "to_id": 2, "type": "Work_For"}],
    }
    return {**base, **changes}


def test_pretty_printed_objects_json_list_and_sequence_labeling(tmp_path):
    pretty = "\n".join(json.dumps(record(id=i), indent=4) for i in (10, 11))
    docs = read_doccano([write(tmp_path, "a.json", pretty)], ImportReport())
    assert [d.id for d in docs] == ["10", "11"]
    listed = read_doccano(
        [write(tmp_path, "b.json", json.dumps([record(), record()]))], ImportReport()
    )
    assert [d.id for d in listed] == ["b:1", "b:2"]
    assert relation_texts(listed[1]) == [("Work_For", "Mary", "Acme")]
    labeled = {"text": "Mary works for Acme.", "label": [[0, 4, "Peop"], [15, 19, "Org"]]}
    [doc] = read_doccano([write(tmp_path, "c.jsonl", json.dumps(labeled))], ImportReport())
    assert spans(doc) == [("Peop", "Mary"), ("Org", "Acme")] and doc.relations == []


@pytest.mark.parametrize(
    ("changes", "located"),
    [
        (
            {"entities": [{"id": 1, "start_offset": 0, "end_offset": 40, "label": "Peop"}]},
            "annotation 1: entity bad offsets",
        ),
        ({"relations": [{"id": 7, "from_id": 1, "to_id": 9, "type": "W"}]}, "annotation 7"),
        ({"text": None}, "record no text"),
        ({"entities": [{"id": 1, "start_offset": 0, "end_offset": 4}]}, "entity no label"),
    ],
)
def test_malformed_records_name_file_record_and_id(tmp_path, changes, located):
    lines = [json.dumps(record()), json.dumps(record(**changes))]
    path = write(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(FormatError) as info:
        read_doccano([path], ImportReport())
    message = str(info.value)
    assert str(path) in message and "record 2 (line 2)" in message and located in message
    # Lenient: an entry instead, the rest read, and the counts still reconcile.
    report = ImportReport(lenient=True)
    docs = read_doccano([path], report)
    assert len(docs) in (1, 2)
    assert any(e.reason == "error" and "record 2" in e.where for e in report.entries)
    documents_to_sentences(docs, report)
    assert report.reconciles(), report.totals()


def test_relation_to_missing_entity_says_which(tmp_path):
    bad = record(relations=[{"from_id": 1, "to_id": 5, "type": "Work_For"}])
    path = write(tmp_path, "x.jsonl", json.dumps(bad))
    with pytest.raises(FormatError, match="no entity with id 5"):
        read_doccano([path], ImportReport())


def test_invalid_json_line_names_the_line_and_lenient_reads_the_others(tmp_path):
    content = json.dumps(record()) + "\n{not json\n" + json.dumps(record(id=3)) + "\n"
    path = write(tmp_path, "x.jsonl", content)
    with pytest.raises(FormatError, match=r"record 2 \(line 2, column 2\).*invalid JSON"):
        read_doccano([path], ImportReport())
    report = ImportReport(lenient=True)
    docs = read_doccano([path], report)
    assert [d.id for d in docs] == ["x:1", "3"]
    assert report.totals()["record"]["not_imported"] == {"error": 1}
    assert report.totals()["record"]["reconciles"]


def test_relation_of_an_entity_not_imported_is_counted(tmp_path):
    bad = record(
        entities=[
            {"id": 1, "start_offset": 0, "end_offset": 99, "label": "Peop"},
            {"id": 2, "start_offset": 15, "end_offset": 19, "label": "Org"},
        ]
    )
    report = ImportReport(lenient=True)
    [doc] = read_doccano([write(tmp_path, "x.jsonl", json.dumps(bad))], report)
    assert len(doc.entities) == 1 and doc.relations == []
    assert report.not_imported["relation"] == {"entity not imported": 1}
    documents_to_sentences([doc], report)
    assert report.reconciles(), report.totals()


def test_write_numbers_ids_and_writes_label_files(tmp_path):
    doc = CharDocument(
        "d1",
        "Mary works for Acme.",
        [CharEntity("T1", "Peop", 0, 4, 0.9), CharEntity("T7", "Org", 15, 19)],
        [CharRelation("R1", "Work_For", "T1", "T7", score=0.5)],
    )
    types = Types(("Peop", "Org"), (RelationType("Work_For"), RelationType("Spouse", True)))
    out = write_doccano([doc], tmp_path / "out.jsonl", types)
    raw = json.loads(out.read_text("utf-8"))
    assert raw == doccano_record(doc)
    assert [e["id"] for e in raw["entities"]] == [0, 1]  # doccano needs integer ids
    assert raw["relations"][0]["from_id"] == 0 and raw["relations"][0]["to_id"] == 1
    spans_path, relations_path = doccano_label_paths(out)
    assert [x["text"] for x in json.loads(spans_path.read_text("utf-8"))] == ["Peop", "Org"]
    assert [x["text"] for x in json.loads(relations_path.read_text("utf-8"))] == [
        "Work_For",
        "Spouse",
    ]
    [back] = read_doccano([out], ImportReport())
    assert spans(back) == spans(doc) and relation_texts(back) == relation_texts(doc)
    assert [e.score for e in back.entities] == [0.9, None] and back.relations[0].score == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.jsonl",
        "out.relation_types.json",
        "out.span_types.json",
    ]


# -- property: read(write(x)) == x ---------------------------------------------------------
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
SCORES = st.none() | st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def documents(draw: st.DrawFn) -> CharDocument:
    text = draw(TEXT)
    n = draw(st.integers(0, 6))
    entities = []
    ids = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    for i in range(n):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, len(text)))
        kind = draw(st.sampled_from(["Peop", "Org", "Loc"]))
        entities.append(CharEntity(str(ids[i]), kind, start, end, draw(SCORES)))
    relations = []
    if len(entities) >= 2:
        m = draw(st.integers(0, 5))
        rel_ids = draw(st.lists(st.integers(0, 10**6), min_size=m, max_size=m, unique=True))
        for rid in rel_ids:
            head, tail = draw(st.lists(st.sampled_from(entities), min_size=2, max_size=2))
            kind = draw(st.sampled_from(["Work_For", "Spouse"]))
            relations.append(
                CharRelation(str(rid), kind, head.id, tail.id, draw(st.booleans()), draw(SCORES))
            )
    return CharDocument(draw(st.text(min_size=1, max_size=8)), text, entities, relations)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.lists(documents(), max_size=4))
def test_property_read_of_write_is_identity(tmp_path, docs):
    path = tmp_path / "round.jsonl"
    write_doccano(docs, path)
    back = read_doccano([path], ImportReport())
    assert back == [dataclasses.replace(d, source=str(path)) for d in docs]


# -- spert import doccano ------------------------------------------------------------------
@needs_samples
def test_cli_import_of_the_samples(tmp_path):
    out = tmp_path / "data"
    samples = [str(SAMPLES / IMPORT_SAMPLE), str(SAMPLES / EXPORT_SAMPLE)]
    main(["import", "doccano", *samples, "--out", str(out), "--split", "1,0,0", "--quiet"])
    train = json.loads((out / "train.json").read_text("utf-8"))
    assert sum(len(s["entities"]) for s in train) == 8
    assert sum(len(s["relations"]) for s in train) == 6
    report = json.loads((out / "import_report.json").read_text("utf-8"))
    assert report["reconciles"] and report["totals"]["relation"]["imported"] == 6
    types = json.loads((out / "types.json").read_text("utf-8"))
    assert set(types["entities"]) == {"ORG", "DATE", "PERSON"}
    assert set(types["relations"]) == {"foundedAt", "foundedBy"}


def test_a_file_that_is_not_utf8_is_counted(tmp_path: Path) -> None:
    (tmp_path / "latin.jsonl").write_bytes('{"text": "Café"}\n'.encode("latin-1"))
    (tmp_path / "ok.jsonl").write_text('{"text": "Mary"}\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"latin.jsonl, byte 13: file not UTF-8"):
        read_doccano([tmp_path], ImportReport())
    report = ImportReport(lenient=True)
    assert len(read_doccano([tmp_path], report)) == 1
    assert report.totals()["file"] == {
        "read": 2, "imported": 1, "not_imported": {"error": 1}, "flagged": {}, "reconciles": True,
    }  # fmt: skip


def test_written_ids_are_integers_one_per_annotation() -> None:
    doc = CharDocument(
        "d",
        "Mary Acme",
        [CharEntity("T1", "Person", 0, 4), CharEntity("²", "Org", 5, 9)],
        [CharRelation("R1", "Works", "T1", "²")],
    )
    record = doccano_record(doc)
    assert [e["id"] for e in record["entities"]] == [0, 1]
    assert record["relations"][0]["from_id"] == 0 and record["relations"][0]["to_id"] == 1
    bad = CharDocument("d", "Mary", [CharEntity("T1", "Person", 0, 4)], [
        CharRelation("R1", "Works", "T1", "T7")
    ])  # fmt: skip
    with pytest.raises(FormatError, match="'T7'"):
        doccano_record(bad)


# -- issue 23 ----------------------------------------------------------------------------------
def test_records_never_annotated_are_flagged_or_skipped(tmp_path):
    records = [
        {"id": 1, "text": "Mary works.", "entities": [
            {"id": 1, "start_offset": 0, "end_offset": 4, "label": "Peop"}], "relations": []},
        {"id": 2, "text": "Not annotated yet.", "entities": [], "relations": []},
    ]  # fmt: skip
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = ImportReport()
    assert [d.id for d in read_doccano([path], report)] == ["1", "2"]
    [flag] = report.flags
    assert (flag.kind, flag.reason, flag.where) == ("record", "no annotation", "record 2 (line 2)")
    report = ImportReport()
    assert [d.id for d in read_doccano([path], report, skip_empty=True)] == ["1"]
    assert report.not_imported["record"] == {"no annotation (--skip-empty)": 1}
    assert report.totals()["record"]["reconciles"]
    main(["import", "doccano", str(path), "--out", str(tmp_path / "o"), "--skip-empty", "--quiet"])
    docs = (tmp_path / "o" / "documents.jsonl").read_text().splitlines()
    assert [json.loads(d)["id"] for d in docs] == ["1"]


def test_label_files_declare_types(tmp_path: Path) -> None:
    types = Types(("Peop", "Org", "Unused"), (RelationType("Work_For"), RelationType("Kill")))
    spans, relations = write_doccano_labels(tmp_path / "docs.jsonl", types)
    back = read_doccano_labels(spans, relations)
    assert back.entities == types.entities
    assert back.relation_names == ("Work_For", "Kill")
    assert read_doccano_labels(spans).relations == ()
    # doccano's own label export: the same objects with an id.
    exported = tmp_path / "label_config.json"
    exported.write_text(json.dumps([{"id": 4, "text": "Loc", "background_color": "#fff"}]))
    assert read_doccano_labels(exported).entities == ("Loc",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not a doccano label file"),
        ('{"text": "Peop"}', "a JSON list of labels expected"),
        ('[{"text": "Peop"}, {"name": "Org"}]', "label 1: field 'text' must be a non-empty"),
        ("[]", "declares no span type"),
    ],
)
def test_bad_label_files_name_the_file_and_label(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=message) as e:
        read_doccano_labels(path)
    assert str(path) in str(e.value)


@needs_samples
def test_import_of_a_real_export_keeps_the_declared_types(tmp_path: Path, capsys) -> None:
    types = Types(
        ("Peop", "Org", "Loc", "Other", "Never_Used"),
        (RelationType("Work_For"), RelationType("Never_Related")),
    )
    spans, relations = write_doccano_labels(tmp_path / "labels.jsonl", types)
    export = SAMPLES / "from-doccano-1.8" / "news_export.jsonl"
    out = tmp_path / "data"
    main(
        [
            "import",
            "doccano",
            str(export),
            "--out",
            str(out),
            "--doccano-labels",
            str(spans),
            str(relations),
            "--quiet",
        ]
    )
    written = json.loads((out / "types.json").read_text())
    assert list(written["entities"])[:5] == list(types.entities)
    assert {"Work_For", "Never_Related"} <= set(written["relations"])
    with pytest.raises(SystemExit) as e:
        main(
            [
                "import",
                "brat",
                str(export),
                "--out",
                str(tmp_path / "x"),
                "--doccano-labels",
                str(spans),
            ]
        )
    assert "--doccano-labels are doccano's label files, not for brat" in str(e.value.code)
