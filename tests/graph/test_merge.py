"""Name normalization and the merging rules: one node per entity, one edge per triple."""

from __future__ import annotations

import pytest
from graph_docs import CORPUS, make_document

from spert.graph.merge import acronym_matches, document_mentions, edge_id, normalize_name


@pytest.mark.parametrize(
    "text, name",
    [
        ("Acme Corp", "acme corp"),
        ("  ACME   corp ", "acme corp"),  # case folding, whitespace collapsed
        ("Ａｃｍｅ", "acme"),  # NFKC: full-width letters
        ("Straße", "strasse"),  # case folding, not lower()
        ('"Acme Corp."', "acme corp"),  # surrounding punctuation
        ("(Acme)", "acme"),
        ("The Beatles", "beatles"),  # leading article
        ("an apple", "apple"),
        ("Theodore", "theodore"),  # not an article
        ("IBM's", "ibm"),  # possessive
        ("IBM’s", "ibm"),
        ("Jones'", "jones"),
        ("the Smiths'", "smiths"),
        ("U.S.", "u.s"),
        ("Memphis , Tenn.", "memphis , tenn"),  # inner punctuation stays
        ("the", "the"),  # nothing left: the folded text
        ("...", "..."),
    ],
)
def test_normalize_name(text: str, name: str) -> None:
    assert normalize_name(text) == name


def test_normalize_name_is_idempotent() -> None:
    for text in ["The IBM's", '"The  Beatles\'"', "A.", "Straße"]:
        once = normalize_name(text)
        assert normalize_name(once) == once


@pytest.mark.parametrize(
    "acronym, long_form, expected",
    [
        ("IBM", "International Business Machines", True),
        ("I.B.M.", "International Business Machines", True),
        ("BOA", "Bank of America", True),
        ("BA", "Bank of America", True),
        ("NPC", "National People 's Congress", True),
        ("IBM", "International Machines", False),
        ("ibm", "international business machines", False),  # not capitals
        ("US", "United", False),  # one word
    ],
)
def test_acronym_matches(acronym: str, long_form: str, expected: bool) -> None:
    assert acronym_matches(acronym, long_form) is expected


def nodes_of(doc, **kwargs) -> list[tuple[str, str]]:
    entities, _ = document_mentions(doc, str(doc.id), **kwargs)
    return [(m.text, m.node) for m in entities]


def test_acronym_and_person_rules_within_a_document() -> None:
    nodes = nodes_of(CORPUS[0], person_types=["peop"])
    assert nodes == [
        ("John Smith", "Peop:john smith"),
        ("International Business Machines", "Org:international business machines"),
        ("IBM", "Org:international business machines"),
        ("Armonk", "Loc:armonk"),
        ("Smith", "Peop:john smith"),  # later, shorter, last word: merged
        ("IBM", "Org:international business machines"),
        ("Armonk", "Loc:armonk"),
    ]
    # Not across documents: d2 has no definition of IBM and no earlier John Smith.
    assert nodes_of(CORPUS[1], person_types=["Peop"]) == [
        ("IBM", "Org:ibm"),
        ("Mary Jones", "Peop:mary jones"),
        ("Smith", "Peop:smith"),
    ]


def test_person_rule_needs_a_person_type_an_earlier_mention_and_the_same_type() -> None:
    doc = make_document(
        "x",
        [
            (
                "Smith met John Smith and Ford saw Henry Ford at Ford Motor.",
                [
                    ("Smith", "Peop"),
                    ("John Smith", "Peop"),
                    ("Ford", "Peop"),
                    ("Henry Ford", "Peop"),
                    ("Ford Motor", "Org"),
                ],
                [],
            ),
            ("Ford left; Smith stayed.", [("Ford", "Org"), ("Smith", "Peop")], []),
        ],
    )
    nodes = nodes_of(doc, person_types=["Peop"])
    assert nodes == [
        ("Smith", "Peop:smith"),  # before the full name: not merged
        ("John Smith", "Peop:john smith"),
        ("Ford", "Peop:ford"),
        ("Henry Ford", "Peop:henry ford"),
        ("Ford Motor", "Org:ford motor"),
        ("Ford", "Org:ford"),  # an organization: the person rule does not apply
        ("Smith", "Peop:john smith"),
    ]
    assert [n for _, n in nodes_of(doc)] == [
        "Peop:smith",
        "Peop:john smith",
        "Peop:ford",
        "Peop:henry ford",
        "Org:ford motor",
        "Org:ford",
        "Peop:smith",
    ]


def test_the_most_recent_full_name_wins() -> None:
    doc = make_document(
        "x",
        [
            (
                "John Smith and Anna Smith came; Smith spoke.",
                [("John Smith", "Peop"), ("Anna Smith", "Peop"), ("Smith", "Peop")],
                [],
            )
        ],
    )
    assert nodes_of(doc, person_types=["Peop"])[-1] == ("Smith", "Peop:anna smith")


def test_symmetric_relations_are_one_edge() -> None:
    _, relations = document_mentions(CORPUS[1], "d2", symmetric={"Spouse"})
    assert {r.edge for r in relations} == {edge_id("Peop:mary jones", "Spouse", "Peop:smith")}
    # Evidence keeps head and tail offsets consistent with the ordered edge.
    for r in relations:
        assert CORPUS[1].text[r.head_start : r.head_end] == "Mary Jones"
    _, directed = document_mentions(CORPUS[1], "d2")
    assert len({r.edge for r in directed}) == 2
