"""The shared path: character-offset documents to SpERT sentences, and back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.data import Entity, Relation, RelationType, Sentence, Types, check_record
from spert.data.formats.brat import read_brat, write_brat
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import FormatError, ImportReport
from spert.data.formats.segment import documents_to_sentences, sentences_to_documents


def _import(doc: CharDocument, **kwargs: object) -> tuple[list[Sentence], ImportReport]:
    report = ImportReport()
    sentences = documents_to_sentences([doc], report, **kwargs)  # type: ignore[arg-type]
    assert report.reconciles() or not report.read  # readers count reads; here none
    return sentences, report


def _spans(sentence: Sentence) -> list[tuple[str, str]]:
    return [(e.type, " ".join(sentence.tokens[e.start : e.end])) for e in sentence.entities]


def test_words_are_cut_at_entity_boundaries_and_keep_offsets() -> None:
    text = "Obama's visit to NewYork ended."
    doc = CharDocument(
        "d", text, [CharEntity("T1", "Person", 0, 5), CharEntity("T2", "Loc", 20, 24)]
    )
    (sentence,), _ = _import(doc)
    assert sentence.tokens[:2] == ["Obama", "'s"]
    assert "New" in sentence.tokens and "York" in sentence.tokens
    assert _spans(sentence) == [("Person", "Obama"), ("Loc", "York")]
    assert sentence.doc_id == "d"
    assert [text[a:b] for a, b in sentence.offsets or []] == sentence.tokens


def test_no_sentence_boundary_inside_an_entity() -> None:
    text = "He met Dr. Smith. Jones came. Then it rained."
    start = text.index("Smith")
    doc = CharDocument("d", text, [CharEntity("T1", "Person", start, text.index(" came"))])
    sentences, report = _import(doc)
    assert _spans(sentences[0]) == [("Person", "Smith . Jones")]
    assert len(sentences) == 2  # the entity's two sentences merged, the third one apart
    assert report.flagged["entity"]["units merged around it"] == 1


def _cross_sentence_doc() -> CharDocument:
    text = "Mary lives in Paris.\nShe works for Acme.\n\nAcme is big. It grew."
    ents = [
        CharEntity("T1", "Person", 0, 4),
        CharEntity("T2", "Loc", 14, 19),
        CharEntity("T3", "Org", text.index("Acme"), text.index("Acme") + 4),
        CharEntity("T4", "Org", text.rindex("Acme"), text.rindex("Acme") + 4),
    ]
    rels = [
        CharRelation("R1", "LivesIn", "T1", "T2"),
        CharRelation("R2", "WorksFor", "T1", "T3"),
        CharRelation("R3", "Same", "T3", "T4", symmetric=True),
    ]
    return CharDocument("d", text, ents, rels)


@pytest.mark.parametrize(
    ("unit", "n_units", "lost"),
    [
        ("sentence", 4, {"WorksFor": 1, "Same": 1}),
        ("paragraph", 2, {"Same": 1}),
        ("document", 1, {}),
    ],
)
def test_relations_across_units_are_counted_per_type(
    unit: str, n_units: int, lost: dict[str, int]
) -> None:
    sentences, report = _import(_cross_sentence_doc(), unit=unit)
    assert len(sentences) == n_units
    assert sum(len(s.relations) for s in sentences) == 3 - sum(lost.values())
    assert report.not_imported["relation"].get(f"cross-{unit}", 0) == sum(lost.values())
    by_type = report.by_type()["relation"]
    assert {
        t: c.get(f"cross-{unit}", 0) for t, c in by_type.items() if c.get(f"cross-{unit}")
    } == lost
    assert report.imported["entity"] == 4


def test_duplicates_types_whitespace_and_flags() -> None:
    text = "Mary Ann Smith works at Acme Corp today ."
    doc = CharDocument(
        "d",
        text,
        [
            CharEntity("T1", "Person", 0, 14),
            CharEntity("T2", "Person", 0, 14),  # duplicate
            CharEntity("T3", "Org", 0, 14),  # second type on one span
            CharEntity("T4", "Org", 23, 33),  # " Acme Corp": trimmed
            CharEntity("T5", "Org", 14, 15),  # whitespace only
            CharEntity("T6", "Person", 5, 8),  # nested in T1: overlapping
        ],
        [
            CharRelation("R1", "WorksFor", "T1", "T4"),
            CharRelation("R2", "WorksFor", "T2", "T4"),  # duplicate once T2 -> T1
            CharRelation("R3", "WorksFor", "T3", "T4"),  # argument not imported
            CharRelation("R4", "Same", "T1", "T2"),  # T2 is T1
        ],
    )
    (sentence,), report = _import(doc, max_span_size=2)
    assert _spans(sentence) == [
        ("Person", "Mary Ann Smith"),
        ("Org", "Acme Corp"),
        ("Person", "Ann"),
    ]
    assert sentence.relations == [Relation("WorksFor", 0, 1)]
    assert report.not_imported["entity"] == {
        "duplicate": 1,
        "second type on one span": 1,
        "whitespace only": 1,
    }
    assert report.not_imported["relation"] == {
        "argument not imported": 1,
        "duplicate": 1,
        "entity related to itself": 1,
    }
    assert report.flagged["entity"] == {
        "longer than max_span_size": 1,
        "overlapping": 2,
        "whitespace trimmed": 1,
    }


def test_symmetric_reversed_duplicate_and_errors() -> None:
    doc = CharDocument(
        "d",
        "Ann met Bob .",
        [CharEntity("T1", "P", 0, 3), CharEntity("T2", "P", 8, 11), CharEntity("T3", "P", 8, 40)],
        [
            CharRelation("R1", "Met", "T1", "T2", symmetric=True),
            CharRelation("R2", "Met", "T2", "T1", symmetric=True),
            CharRelation("R3", "Met", "T1", "T9"),
        ],
    )
    with pytest.raises(FormatError, match="annotation T3: .*outside the text"):
        documents_to_sentences([doc], ImportReport())
    report = ImportReport(lenient=True)
    (sentence,) = documents_to_sentences([doc], report)
    assert sentence.relations == [Relation("Met", 0, 1)]
    assert report.not_imported["relation"] == {"duplicate": 1, "error": 1}
    assert report.not_imported["entity"] == {"error": 1}


def test_sentences_to_documents_inverts_an_import() -> None:
    doc = _cross_sentence_doc()
    sentences, _ = _import(doc, unit="paragraph")
    (back,) = sentences_to_documents(sentences, {"d": doc.text})
    assert back.text == doc.text
    assert [(e.type, e.start, e.end) for e in back.entities] == [
        (e.type, e.start, e.end) for e in doc.entities
    ]
    # Without the text: rebuilt from the offsets, the same words at the same places.
    (rebuilt,) = sentences_to_documents(sentences)
    assert [rebuilt.text[e.start : e.end] for e in rebuilt.entities] == [
        doc.text[e.start : e.end] for e in doc.entities
    ]


# -- import(export(x)) == x over random SpERT sentences ------------------------------------------

_TOKEN = st.text(alphabet="abcXYZ09.,-'é", min_size=1, max_size=6)
TYPES = Types(("Person", "Org"), (RelationType("Works", False), RelationType("Same", True)))


@st.composite
def sentences(draw: st.DrawFn) -> list[Sentence]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        tokens = draw(st.lists(_TOKEN, min_size=1, max_size=12))
        spans = draw(
            st.lists(
                st.tuples(st.integers(0, len(tokens) - 1), st.integers(1, 4)),
                max_size=5,
                unique_by=lambda s: s[0],
            )
        )
        entities = [
            Entity(draw(st.sampled_from(TYPES.entities)), a, min(a + n, len(tokens)))
            for a, n in spans
        ]
        entities = list({(e.start, e.end): e for e in entities}.values())
        relations = []
        if len(entities) >= 2:
            pairs = draw(
                st.lists(
                    st.tuples(st.integers(0, len(entities) - 1), st.integers(0, len(entities) - 1)),
                    max_size=4,
                    unique_by=lambda p: frozenset(p),
                )
            )
            relations = [
                Relation(draw(st.sampled_from(TYPES.relation_names)), h, t)
                for h, t in pairs
                if h != t
            ]
        doc_id = draw(st.sampled_from([None, f"doc{i // 2}"]))
        out.append(Sentence(tokens, entities, relations, doc_id=doc_id))
    # Sentences of one document are consecutive.
    return sorted(out, key=lambda s: str(s.doc_id)) if all(s.doc_id for s in out) else out


def _by_document(sentences: list[Sentence]) -> dict[str, list[tuple[object, ...]]]:
    """Sentence contents per document (a brat folder keeps documents, not their order: files
    are read sorted by name). A sentence without doc_id is the document sentences_to_documents
    names after its position."""
    out: dict[str, list[tuple[object, ...]]] = {}
    for i, s in enumerate(sentences):
        key = str(s.doc_id) if s.doc_id is not None else f"sentence-{i + 1:06d}"
        out.setdefault(key, []).append((s.tokens, s.entities, s.relations))
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(x=sentences())
def test_import_of_export_is_identity(
    tmp_path_factory: pytest.TempPathFactory, x: list[Sentence]
) -> None:
    out: Path = tmp_path_factory.mktemp("brat")
    write_brat(sentences_to_documents(x, types=TYPES), out, TYPES)
    report = ImportReport()
    documents, types = read_brat([out], report)
    back = documents_to_sentences(documents, report, words="whitespace")
    assert report.reconciles() and report.entries == []
    assert types == TYPES
    assert _by_document(back) == _by_document(x)
    # ... and once more, now with offsets: the exact characters come back too.
    again = documents_to_sentences(
        sentences_to_documents(back, {d.id: d.text for d in documents}, TYPES),
        ImportReport(),
        words="whitespace",
    )
    assert [(s.offsets, s.doc_id) for s in again] == [(s.offsets, s.doc_id) for s in back]


def test_dataset_offsets_are_validated() -> None:
    record = {"tokens": ["a", "b"], "entities": [], "relations": [], "offsets": [[0, 1], [1, 1]]}
    sentence, problems = check_record(record, 3, "f.json", None)
    assert sentence is None and "offsets[1]" in str(problems[0]) and "record 3" in str(problems[0])
    record["offsets"] = [[0, 1], [2, 3]]
    sentence, problems = check_record(record, 3, "f.json", None)
    assert problems == [] and sentence is not None and sentence.offsets == [(0, 1), (2, 3)]
    assert sentence.to_dict()["offsets"] == [[0, 1], [2, 3]]
    del record["offsets"]  # old files stay valid
    assert check_record(record, 3, "f.json", None)[0].offsets is None  # type: ignore[union-attr]
