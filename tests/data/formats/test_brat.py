"""brat standoff: the shipped corpora, annotation.conf, malformed input, write/read round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.data import RelationType, Types
from spert.data.formats.brat import read_brat, read_conf, write_brat
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import FormatError, ImportReport
from spert.data.formats.segment import documents_to_sentences

BRAT = SHARED / "annotations" / "brat"
CORPORA = sorted(p for p in BRAT.glob("*") if p.is_dir()) if BRAT.is_dir() else []
needs_samples = pytest.mark.skipif(not CORPORA, reason=f"shared brat samples absent ({BRAT})")


@needs_samples
@pytest.mark.parametrize("corpus", CORPORA, ids=lambda p: p.name)
@pytest.mark.parametrize("unit", ["sentence", "paragraph"])
def test_every_shared_corpus_imports_with_reconciling_totals(corpus: Path, unit: str) -> None:
    report = ImportReport()
    documents, types = read_brat([corpus], report)
    sentences = documents_to_sentences(documents, report, unit)  # type: ignore[arg-type]
    assert report.reconciles(), report.totals()
    assert len(documents) == len(list(corpus.glob("*.ann")))
    assert types is not None and types.entities
    n_t_lines = sum(
        1
        for ann in corpus.glob("*.ann")
        for line in ann.read_text().splitlines()
        if line[:1] == "T"
    )
    assert report.read["entity"] == n_t_lines
    assert report.imported["entity"] == sum(len(s.entities) for s in sentences)
    assert report.imported["relation"] == sum(len(s.relations) for s in sentences)
    texts = {d.id: d.text for d in documents}
    for s in sentences:
        assert s.offsets is not None
        assert [texts[s.doc_id][a:b] for a, b in s.offsets] == s.tokens  # type: ignore[index]


@needs_samples
def test_news_tutorial_events_equivalences_and_symmetry() -> None:
    report = ImportReport()
    documents, types = read_brat([BRAT / "news-tutorial"], report)
    assert types is not None and types.symmetric == {"Alias"}
    # Events, their trigger T lines, attributes, notes and normalizations: counted, not imported.
    assert report.not_imported["event"]["not modelled"] == report.read["event"] > 0
    assert report.not_imported["entity"]["event trigger"] == report.read["event"]
    assert report.not_imported["attribute"]["not modelled"] == report.read["attribute"] > 0
    assert report.read["note"] > 0 and report.read["normalization"] == 1
    # "* Alias T3 T4 T5": a symmetric relation between every pair of members.
    doc = next(d for d in documents if d.id == "060-relation_annotation")
    aliases = {(r.head, r.tail) for r in doc.relations if r.type == "Alias"}
    assert aliases >= {("T3", "T4"), ("T3", "T5"), ("T4", "T5")}
    assert all(r.symmetric for r in doc.relations if r.type == "Alias")


@needs_samples
def test_bionlp_conf_types() -> None:
    conf = read_conf(BRAT / "bionlp-st-2011-rel" / "annotation.conf")
    assert conf.entities == ["Protein", "Entity"]
    assert [(r.name, r.symmetric) for r in conf.relations] == [
        ("Equiv", True),
        ("Protein-Component", False),
        ("Subunit-Complex", False),
    ]  # ENTITY-NESTING configures brat: not a relation type


def _write_pair(folder: Path, text: str, ann: str, name: str = "doc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    (folder / f"{name}.ann").write_text(ann, encoding="utf-8")
    return folder


TEXT = "Mary works for Acme in Boston.\n"


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ("T1\tPerson 0 4\tMary\nT2\tOrg 15 99\tAcme\n", r"line 2, annotation T2: .*outside"),
        ("T1\tPerson 0 4\tMark\n", r"line 1, annotation T1: .*'Mark' differs .*'Mary'"),
        ("T1\tPerson 0 4\tMary\nR1\tWorks Arg1:T1 Arg2:T9\n", r"line 2, annotation R1: .*'T9'"),
        ("T1\tPerson 0 4\tMary\n*\tSame T1\n", r"line 2, annotation \*2: .*two or more"),
        ("X1\twhat\n", r"line 1, annotation X1"),
    ],
)
def test_malformed_input_names_file_line_and_id(tmp_path: Path, ann: str, message: str) -> None:
    folder = _write_pair(tmp_path / "in", TEXT, ann)
    with pytest.raises(FormatError, match=re.escape(str(folder / "doc.ann")) + ".*" + message):
        read_brat([folder], ImportReport())
    report = ImportReport(lenient=True)
    documents, _ = read_brat([folder], report)
    documents_to_sentences(documents, report)
    assert sum(c["error"] for c in report.not_imported.values()) == 1
    assert report.reconciles()
    assert any(e.reason == "error" and e.where.startswith("line") for e in report.entries)


def test_relation_with_two_bad_arguments_is_one_entry(tmp_path: Path) -> None:
    ann = (
        "T1\tPerson 0 4;15 19\tMary Acme\nT2\tLoc 23 29\tBoston\n"
        "R1\tIn Arg1:T1 Arg2:T1\nR2\tIn Arg1:T8 Arg2:T9\nR3\tIn Arg1:T1 Arg2:T9\n*\tSame T1 T9 T2\n"
    )
    folder = _write_pair(tmp_path, TEXT, ann)
    report = ImportReport(lenient=True)
    documents_to_sentences(read_brat([folder], report, discontinuous="drop")[0], report)
    assert report.read["relation"] == 6 and report.reconciles(), report.totals()
    # A missing id is malformed input: an error, even after an argument not imported.
    assert report.not_imported["relation"] == {"argument not imported": 2, "error": 4}


def test_conf_symmetry_after_a_tab_without_spaces(tmp_path: Path) -> None:
    conf = tmp_path / "annotation.conf"
    conf.write_text("[entities]\nP\n[relations]\nSame\tArg1:P,Arg2:P,<REL-TYPE>:symmetric\n")
    assert read_conf(conf).relations == [RelationType("Same", True)]


def test_ann_without_txt_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "lone.ann").write_text("T1\tPerson 0 4\tMary\n")
    with pytest.raises(FormatError, match=r"lone.ann.*no .txt file"):
        read_brat([tmp_path], ImportReport())


def test_discontinuous_span_or_drop(tmp_path: Path) -> None:
    ann = "T1\tOrg 0 4;15 19\tMary Acme\nT2\tLoc 23 29\tBoston\nR1\tIn Arg1:T1 Arg2:T2\n"
    folder = _write_pair(tmp_path, TEXT, ann)
    report = ImportReport()
    (doc,), _ = read_brat([folder], report)
    assert doc.entities[0] == CharEntity("T1", "Org", 0, 19)
    assert report.flagged["entity"]["discontinuous, imported as covering span"] == 1
    report = ImportReport()
    (doc,), _ = read_brat([folder], report, discontinuous="drop")
    documents_to_sentences([doc], report)
    assert [e.id for e in doc.entities] == ["T2"] and doc.relations == []
    assert report.not_imported["entity"] == {"discontinuous": 1}
    assert report.not_imported["relation"] == {"argument not imported": 1}
    assert report.reconciles()


def test_crlf_offsets_and_types_from_data(tmp_path: Path) -> None:
    text = "Mary works.\r\nAcme hires.\r\n"
    folder = _write_pair(tmp_path, text, "T1\tPerson 0 4\tMary\nT2\tOrg 13 17\tAcme\n")
    report = ImportReport()
    (doc,), types = read_brat([folder], report)
    assert types is None  # no annotation.conf: the importer takes types from the data
    assert doc.text == text and doc.text[13:17] == "Acme"


# -- write_brat / read_brat round trip -----------------------------------------------------------

ENTITY_TYPES = ("Person", "Org", "Loc")
TYPES = Types(ENTITY_TYPES, (RelationType("Works", False), RelationType("Same", True)))
_CHARS = st.sampled_from(list("abcXYZ019 .,-'\n\té"))


@st.composite
def documents(draw: st.DrawFn) -> list[CharDocument]:
    out = []
    for d in range(draw(st.integers(1, 3))):
        text = "".join(draw(st.lists(_CHARS, min_size=1, max_size=60)))
        entities = []
        for i in range(draw(st.integers(0, 6))):
            start = draw(st.integers(0, len(text) - 1))
            end = draw(st.integers(start + 1, len(text)))
            score = draw(st.none() | st.floats(0, 1))
            entities.append(
                CharEntity(f"T{i + 1}", draw(st.sampled_from(ENTITY_TYPES)), start, end, score)
            )
        relations = []
        if len(entities) >= 2:
            for i in range(draw(st.integers(0, 4))):
                head, tail = draw(st.permutations([e.id for e in entities]))[:2]
                rtype = draw(st.sampled_from(["Works", "Same"]))
                score = draw(st.none() | st.floats(0, 1))
                relations.append(
                    CharRelation(f"R{i + 1}", rtype, head, tail, rtype == "Same", score)
                )
        out.append(CharDocument(f"doc{d}", text, entities, relations))
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=documents())
def test_read_of_write_is_identity(
    tmp_path_factory: pytest.TempPathFactory, docs: list[CharDocument]
) -> None:
    out = tmp_path_factory.mktemp("brat")
    write_brat(docs, out, TYPES)
    report = ImportReport()
    read, types = read_brat([out], report)
    assert types == TYPES
    assert [(d.id, d.text, d.entities, d.relations) for d in read] == [
        (d.id, d.text, d.entities, d.relations) for d in docs
    ]
    # Nothing rejected; score notes are scores, not notes.
    assert report.entries == [] and report.read["note"] == 0


def test_write_renumbers_ids_and_rejects_bad_type_names(tmp_path: Path) -> None:
    doc = CharDocument(
        "a/b c",
        "Mary Acme",
        [CharEntity("m", "Person", 0, 4), CharEntity("T1", "Org", 5, 9)],
        [CharRelation("x", "Works", "m", "T1")],
    )
    (ann,) = write_brat([doc], tmp_path, TYPES)
    assert ann.name == "a_b_c.ann"
    assert ann.read_text().splitlines() == [
        "T2\tPerson 0 4\tMary",
        "T1\tOrg 5 9\tAcme",
        "R1\tWorks Arg1:T2 Arg2:T1",
    ]
    bad = CharDocument("d", "Mary", [CharEntity("T1", "Per son", 0, 4)])
    with pytest.raises(FormatError, match="'Per son'"):
        write_brat([bad], tmp_path / "bad", Types(("Per son",), ()))


def test_non_utf8_text_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("Café Mary".encode("latin-1"))
    (tmp_path / "latin.ann").write_text("T1\tPerson 5 9\tMary\n")
    with pytest.raises(FormatError, match=r"latin.txt, byte 3, annotation latin: .*not UTF-8"):
        read_brat([tmp_path], ImportReport())
    report = ImportReport(lenient=True)
    assert read_brat([tmp_path], report)[0] == []
    assert report.not_imported["document"] == {"error": 1}


# -- issue 23 ----------------------------------------------------------------------------------
def _pair(folder: Path, name: str, text: str, ann: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    if isinstance(ann, bytes):
        (folder / f"{name}.ann").write_bytes(ann)
    else:
        (folder / f"{name}.ann").write_text(ann, encoding="utf-8")
    return folder


def test_duplicate_relation_ids_are_an_error_like_duplicate_entity_ids(tmp_path: Path) -> None:
    ann = (
        "T1\tPer 0 4\tMary\nT2\tOrg 15 19\tAcme\nR1\tWork Arg1:T1 Arg2:T2\nR1\tIn Arg1:T1 Arg2:T2\n"
    )
    folder = _pair(tmp_path, "d", "Mary works for Acme.", ann)
    with pytest.raises(FormatError, match=r"line 4, annotation R1: .*id used twice"):
        read_brat([folder], ImportReport())
    report = ImportReport(lenient=True)
    [doc], _ = read_brat([folder], report)
    assert [r.type for r in doc.relations] == ["Work"]
    assert report.not_imported["relation"] == {"error": 1}


def test_bom_in_ann_file_is_not_in_errors(tmp_path: Path) -> None:
    folder = _pair(tmp_path, "d", "Mary works.", "\ufeffT1\tPer 0 40\tMary\n".encode())
    with pytest.raises(FormatError) as e:
        read_brat([folder], ImportReport())
    assert "\ufeff" not in str(e.value) and "annotation T1:" in str(e.value)
    _pair(tmp_path, "d", "Mary works.", "\ufeffT1\tPer 0 4\tMary\n".encode())
    [doc], _ = read_brat([folder], ImportReport())
    assert [e.id for e in doc.entities] == ["T1"]


def test_bom_in_txt_is_not_in_the_first_token(tmp_path: Path) -> None:
    folder = _pair(tmp_path, "d", "\ufeffMary works.", "T1\tPer 1 5\tMary\n")
    report = ImportReport()
    docs, _ = read_brat([folder], report)
    sentences = documents_to_sentences(docs, report)
    assert sentences[0].tokens[0] == "Mary"
    assert all("\ufeff" not in t for s in sentences for t in s.tokens)
    assert docs[0].text[1:] == "Mary works." and len(docs[0].text) == 12  # offsets unchanged
    assert any(f.reason == "byte order mark" for f in report.flags)


def test_stray_txt_without_ann_is_reported_not_an_error(tmp_path: Path) -> None:
    folder = _pair(tmp_path, "d", "Mary works.", "T1\tPer 0 4\tMary\n")
    (folder / "README.txt").write_text("How these files were made.")
    report = ImportReport()
    docs, _ = read_brat([folder], report)
    assert [d.id for d in docs] == ["d"]
    [entry] = [e for e in report.entries if "README" in e.source]
    assert entry.kind == "file" and "no .ann" in entry.reason
    assert report.totals()["file"] == {
        "read": 1, "imported": 0, "not_imported": {"no .ann beside it": 1}, "flagged": {},
        "reconciles": True,
    }  # fmt: skip
    (folder / "d.txt").unlink()  # an .ann without its .txt holds annotations: still an error
    with pytest.raises(FormatError, match="no .txt"):
        read_brat([folder], ImportReport())


def test_brat_file_names_keep_non_ascii_letters(tmp_path: Path) -> None:
    docs = [CharDocument("Zürich-東京", "Zürich."), CharDocument("a/b:c", "x")]
    write_brat(docs, tmp_path / "out", Types(("Loc",), ()))
    names = sorted(p.name for p in (tmp_path / "out").glob("*.txt"))
    assert names == ["Zürich-東京.txt", "a_b_c.txt"]


def test_huge_offset_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    folder = _pair(tmp_path, "d", "Mary works.", f"T1\tPer 0 {'9' * 5001}\tMary\n")
    with pytest.raises(FormatError, match=r"line 1, annotation T1: .*outside the text"):
        read_brat([folder], ImportReport())


def test_empty_documents_are_flagged_or_skipped(tmp_path: Path) -> None:
    folder = _pair(tmp_path, "a", "Mary works.", "T1\tPer 0 4\tMary\n")
    _pair(folder, "b", "Nothing here.", "")
    report = ImportReport()
    docs, _ = read_brat([folder], report)
    assert [d.id for d in docs] == ["a", "b"]
    assert [(f.reason, f.annotation_id) for f in report.flags] == [("no annotation", "b")]
    report = ImportReport()
    docs, _ = read_brat([folder], report, skip_empty=True)
    assert [d.id for d in docs] == ["a"]
    assert report.not_imported["document"] == {"no annotation (--skip-empty)": 1}
    assert report.totals()["document"]["reconciles"]
