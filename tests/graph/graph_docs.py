"""Documents for the graph tests, written as text with marked mentions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from spert.graph.source import documents_with_ids
from spert.graph.store import GraphStore, build_graph
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

#: (sentence text, [(surface, type)], [(head, tail, type, score)]); surfaces are found left to
#: right in the sentence text.
SentenceSpec = tuple[str, Sequence[tuple[str, str]], Sequence[tuple[int, int, str, float]]]


def make_document(doc_id: str | None, sentences: Sequence[SentenceSpec]) -> Document:
    parts = []
    pos = 0
    for text, entities, relations in sentences:
        tokens, offsets = [], []
        i = 0
        for word in text.split():
            i = text.index(word, i)
            tokens.append(word)
            offsets.append((pos + i, pos + i + len(word)))
            i += len(word)
        found, search = [], 0
        for surface, entity_type in entities:
            at = text.index(surface, search)
            search = at + len(surface)
            start, end = pos + at, pos + at + len(surface)
            first = next(k for k, (a, b) in enumerate(offsets) if b > start)
            last = next(k for k, (a, b) in enumerate(offsets) if b >= end) + 1
            found.append(ExtractedEntity(entity_type, surface, start, end, first, last, 0.9))
        rels = [ExtractedRelation(t, h, tl, s) for h, tl, t, s in relations]
        parts.append(ExtractedSentence(text, pos, pos + len(text), tokens, offsets, found, rels))
        pos += len(text) + 1
    return Document(" ".join(text for text, _, _ in sentences), parts, doc_id)


def write_jsonl(path: Path, documents: Sequence[Document]) -> Path:
    path.write_text(
        "".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in documents),
        encoding="utf-8",
    )
    return path


#: A small corpus: IBM defined as an acronym, Smith after John Smith, a symmetric relation.
CORPUS = [
    make_document(
        "d1",
        [
            (
                "John Smith joined International Business Machines (IBM) in Armonk.",
                [
                    ("John Smith", "Peop"),
                    ("International Business Machines", "Org"),
                    ("IBM", "Org"),
                    ("Armonk", "Loc"),
                ],
                [(0, 1, "Work_For", 0.8), (1, 3, "OrgBased_In", 0.6)],
            ),
            (
                "Smith said IBM's office in Armonk grew.",
                [("Smith", "Peop"), ("IBM", "Org"), ("Armonk", "Loc")],
                [(0, 1, "Work_For", 0.5), (1, 2, "OrgBased_In", 0.7)],
            ),
        ],
    ),
    make_document(
        "d2",
        [
            (
                "The IBM of today met Mary Jones and Smith.",
                [("IBM", "Org"), ("Mary Jones", "Peop"), ("Smith", "Peop")],
                [(1, 2, "Spouse", 0.9), (2, 1, "Spouse", 0.4)],
            ),
        ],
    ),
]


def open_corpus_store(tmp_path_factory):
    """The store of CORPUS (Spouse symmetric), open."""
    pytest.importorskip("ladybug")
    path = tmp_path_factory.mktemp("kg") / "kg"
    build_graph(path, documents_with_ids(CORPUS), symmetric={"Spouse"}, progress=False)
    with GraphStore(path) as opened:
        yield opened
