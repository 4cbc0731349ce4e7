"""Documents with character-offset annotations: what every annotation tool's format holds.

Readers of the tool formats (brat, Label Studio, doccano) produce :class:`CharDocument`; one
shared path (:mod:`spert.data.formats.segment`) turns them into SpERT sentences; writers turn
them back into each tool's format. Offsets are Unicode code points into ``CharDocument.text``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from spert.results import Document


@dataclass(frozen=True)
class CharEntity:
    """An annotated span of a document's text, ``text[start:end]``."""

    id: str  # the tool's annotation id (brat "T3", Label Studio region id, doccano int as str)
    type: str
    start: int
    end: int  # exclusive
    score: float | None = None  # a prediction's score; None for human annotations


@dataclass(frozen=True)
class CharRelation:
    """A typed relation between two entities of the same document, by entity id."""

    id: str
    type: str
    head: str  # CharEntity.id
    tail: str  # CharEntity.id
    symmetric: bool = False  # the direction carries no meaning (brat Equiv, Label Studio "bi")
    score: float | None = None


@dataclass
class CharDocument:
    """One document of an annotation tool: its text, entities and relations."""

    id: str
    text: str
    entities: list[CharEntity] = field(default_factory=list)
    relations: list[CharRelation] = field(default_factory=list)
    source: str = ""  # the file it was read from (for error messages and the report)


def document_from_extraction(
    doc: Document, index: int, symmetric: Collection[str] = ()
) -> CharDocument:
    """What ``spert extract`` found in one document, as a :class:`CharDocument` with scores.

    ``index`` (0-based position in the output) names a document without id (``doc<index+1>``).
    Entities are numbered ``T1, T2, ...`` and relations ``R1, R2, ...`` over the whole
    document (a sentence's relations point into that sentence's entities); relations of the
    types in ``symmetric`` are marked symmetric.
    """
    doc_id = str(doc.id) if doc.id is not None else f"doc{index + 1}"
    entities: list[CharEntity] = []
    relations: list[CharRelation] = []
    for sentence in doc.sentences:
        first = len(entities)
        for e in sentence.entities:
            entities.append(CharEntity(f"T{len(entities) + 1}", e.type, e.start, e.end, e.score))
        for r in sentence.relations:
            relations.append(
                CharRelation(
                    f"R{len(relations) + 1}",
                    r.type,
                    entities[first + r.head].id,
                    entities[first + r.tail].id,
                    r.type in symmetric,
                    r.score,
                )
            )
    return CharDocument(doc_id, doc.text, entities, relations)
