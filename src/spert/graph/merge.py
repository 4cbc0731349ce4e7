"""Which mentions are one entity: the name normalization and the merging rules of the graph.

Across documents, two entity mentions are one node when they have the same type and the same
normalized name (:func:`normalize_name`). Within one document two more rules apply, in this
order (:func:`document_mentions`):

1. An acronym defined in the text ("International Business Machines (IBM)") names the entity
   of the long form: every mention of that type whose name is the acronym joins the long
   form's node.
2. A later, shorter mention of a person ("Smith") whose words are the last word(s) of an
   earlier mention of the same type ("John Smith") joins that mention's node (the most recent
   one when several match).

A relation mention becomes evidence of the edge (head node, type, tail node); for a symmetric
type, head and tail are ordered by node id, so both directions are one edge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

from spert.data import DataError
from spert.results import Document

_ARTICLES = ("the ", "a ", "an ")
#: A trailing possessive after normalization: "'s"/"’s", or the apostrophe after a final s.
_POSSESSIVE = re.compile(r"(?:['’]s|(?<=s)['’])$")
#: Words left out of an acronym's initials ("Bank of America (BOA)" or "(BA)").
_ACRONYM_SKIPPED = frozenset({"of", "and", "the", "for", "&", "de", "in", "on", "to", "a"})
#: "(ACRONYM)" right after a long form: 2-12 characters, no brackets.
_DEFINITION = re.compile(r"\s*\(\s*([^()\s][^()]{0,10}[^()\s])\s*\)")


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _strip_punctuation(text: str) -> str:
    start, end = 0, len(text)
    while start < end and (_is_punctuation(text[start]) or text[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(text[end - 1]) or text[end - 1].isspace()):
        end -= 1
    return text[start:end]


@lru_cache(maxsize=1 << 16)  # names repeat across a corpus
def normalize_name(text: str) -> str:
    """The name under which mentions merge (with the same type).

    In order: Unicode NFKC; case folding; runs of whitespace to one space; punctuation around
    the name removed; a leading article ("the", "a", "an") removed; a trailing possessive
    ("'s", "’s", or the apostrophe of "Jones'") removed; punctuation around it removed again.
    A name that would become empty (only punctuation, or only "the") keeps its case-folded,
    whitespace-collapsed form, so that every mention has a name.

    >>> normalize_name("  The  IBM's ")
    'ibm'
    >>> normalize_name('"Acme Corp."')
    'acme corp'
    """
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    name = _strip_punctuation(folded)
    for article in _ARTICLES:
        if name.startswith(article) and len(name) > len(article):
            name = name[len(article) :]
            break
    name = _strip_punctuation(_POSSESSIVE.sub("", name))
    return name or folded


def node_id(entity_type: str, name: str) -> str:
    """The id of the node of a type and a normalized name: ``"Type:name"``."""
    return f"{entity_type}:{name}"


def edge_id(head: str, relation_type: str, tail: str) -> str:
    """The id of the edge (head node, type, tail node)."""
    return f"{head}|{relation_type}|{tail}"


def acronym_matches(acronym: str, long_form: str) -> bool:
    """Whether ``acronym`` (at least two capitals, dots and ``&`` ignored) is the initials of
    the words of ``long_form``, with or without its small words ("of", "and", ...)."""
    letters = "".join(c for c in acronym if c.isalnum())
    if len(letters) < 2 or sum(c.isupper() for c in acronym) < 2:
        return False
    words = [w for w in re.split(r"[\s\-]+", long_form) if w and w[0].isalnum()]
    if len(words) < 2:
        return False
    letters = letters.casefold()
    initials = "".join(w[0] for w in words).casefold()
    content = "".join(w[0] for w in words if w.casefold() not in _ACRONYM_SKIPPED).casefold()
    return letters in (initials, content)


@dataclass(frozen=True)
class EntityMention:
    """One entity mention of a document and the node it belongs to."""

    doc: str
    sentence: int
    index: int  # in the sentence's entities
    type: str
    text: str
    start: int  # character offsets in the document text
    end: int
    score: float
    node: str


@dataclass(frozen=True)
class RelationMention:
    """One relation mention: evidence of the edge (head, type, tail)."""

    doc: str
    sentence: int
    index: int  # in the sentence's relations
    type: str
    head: str  # node ids, ordered for a symmetric type
    tail: str
    head_start: int
    head_end: int
    tail_start: int
    tail_end: int
    head_text: str
    tail_text: str
    sentence_text: str
    score: float

    @property
    def edge(self) -> str:
        return edge_id(self.head, self.type, self.tail)


def document_mentions(
    doc: Document,
    doc_id: str,
    symmetric: Collection[str] = (),
    person_types: Collection[str] = (),
    where: str = "<input>",
) -> tuple[list[EntityMention], list[RelationMention]]:
    """The entity mentions of ``doc`` with their nodes (the rules of this module) and its
    relation mentions with their edges. ``where`` names the document in errors."""
    persons = {t.casefold() for t in person_types}
    # (sentence, index, entity), in document order.
    ordered = sorted(
        ((s, i, e) for s, sent in enumerate(doc.sentences) for i, e in enumerate(sent.entities)),
        key=lambda item: (item[2].start, item[2].end, item[0], item[1]),
    )
    names = {(s, i): normalize_name(e.text) for s, i, e in ordered}

    # Rule 1: acronyms defined in the text.
    acronyms: dict[tuple[str, str], str] = {}
    for s, i, e in ordered:
        found = _DEFINITION.match(doc.text, e.end)
        if found and acronym_matches(found.group(1), e.text):
            acronyms.setdefault((e.type, normalize_name(found.group(1))), names[s, i])
    if acronyms:
        for s, i, e in ordered:
            long_form = acronyms.get((e.type, names[s, i]))
            if long_form is not None:
                names[s, i] = long_form

    # Rule 2: a later shorter person mention that ends an earlier one.
    suffixes: dict[tuple[str, tuple[str, ...]], str] = {}  # (type, last words) -> name
    for s, i, e in ordered:
        if e.type.casefold() not in persons:
            continue
        words = tuple(names[s, i].split())
        earlier = suffixes.get((e.type, words))
        if earlier is not None:
            names[s, i] = earlier
            continue
        for n in range(1, len(words)):
            suffixes[e.type, words[-n:]] = names[s, i]

    entities = [
        EntityMention(
            doc_id, s, i, e.type, e.text, e.start, e.end, e.score, node_id(e.type, names[s, i])
        )
        for s, i, e in ordered
    ]
    nodes = {(m.sentence, m.index): m.node for m in entities}
    relations = []
    for s, sentence in enumerate(doc.sentences):
        for r_index, r in enumerate(sentence.relations):
            n = len(sentence.entities)
            if not (0 <= r.head < n and 0 <= r.tail < n):
                raise DataError(
                    f"{where}, sentence {s}, relation {r_index}: head/tail index out of range "
                    f"(the sentence has {n} entities)"
                )
            head, tail = sentence.entities[r.head], sentence.entities[r.tail]
            head_node, tail_node = nodes[s, r.head], nodes[s, r.tail]
            if r.type in symmetric and tail_node < head_node:
                head, tail, head_node, tail_node = tail, head, tail_node, head_node
            relations.append(
                RelationMention(
                    doc_id,
                    s,
                    r_index,
                    r.type,
                    head_node,
                    tail_node,
                    head.start,
                    head.end,
                    tail.start,
                    tail.end,
                    head.text,
                    tail.text,
                    sentence.text,
                    r.score,
                )
            )
    return entities, relations
