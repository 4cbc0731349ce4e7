"""The one path from character-offset documents to SpERT sentences, and back.

:func:`documents_to_sentences` is what every importer (brat, Label Studio, doccano) ends with:

1. **Entities are checked.** Offsets must lie in the text (else an error). Whitespace at an
   entity's edges is trimmed (flagged); an entity of whitespace only is not imported. Of two
   entities with the same span and type the first is kept (``duplicate``); of two with the same
   span and different types the first one read is kept (``second type on one span``: SpERT
   predicts one type per span), and relations of the other are not imported.
2. **Words.** ``words="spacy"`` splits text into sentences and words as ``spert extract`` does
   (:func:`spert.data.text.split_sentences`); ``words="whitespace"`` takes runs of non-space
   characters as words and lines as sentences (exact for pre-tokenized text, see
   :func:`sentences_to_documents`). Either way a word is cut where an entity starts or ends
   inside it, so that every entity is a run of whole words.
3. **Units.** A training example covers a ``sentence``, a ``paragraph`` (text between blank
   lines) or the whole ``document``. No unit boundary falls inside an entity: those units are
   merged (the entity is flagged).
4. **Relations** whose entities lie in different units are not imported (``cross-unit``, counted
   per relation type); so are duplicates (the same type and entities; either order for a
   symmetric relation) and relations of an entity with itself.
5. **Flags** (imported, listed): entities longer than ``max_span_size`` words (training never
   predicts them), overlapping entities (nested or crossing).

Each sentence carries its ``doc_id`` and each word its character offsets, so
:func:`sentences_to_documents` writes what was imported back to the exact characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm import tqdm

from spert.config import ModelConfig
from spert.data.dataset import DataError, Entity, Relation, Sentence, Types
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import ImportReport, ReportEntry
from spert.data.text import _LB, _PARAGRAPH_BREAK, split_sentences

#: What one training example covers.
Unit = Literal["sentence", "paragraph", "document"]
#: How text is split into words and sentences.
Words = Literal["spacy", "whitespace"]

UNITS: tuple[Unit, ...] = ("sentence", "paragraph", "document")
WORDS: tuple[Words, ...] = ("spacy", "whitespace")

_NON_SPACE = re.compile(r"\S+")
_LINE_BREAK = re.compile(_LB)
#: spaCy never cuts sentences by length here: units are encoded in windows when long.
_NO_LENGTH_LIMIT = 1 << 40


@dataclass(frozen=True)
class _Kept:
    """An entity that is imported: its trimmed character span and its word span."""

    entity: CharEntity
    start: int  # first word
    end: int  # one past the last word


def documents_to_sentences(
    documents: Iterable[CharDocument],
    report: ImportReport,
    unit: Unit = "sentence",
    max_span_size: int = ModelConfig.max_span_size,
    words: Words = "spacy",
    progress: bool = False,
) -> list[Sentence]:
    """SpERT sentences (one per ``unit``) of ``documents``, counting in ``report`` what is
    imported, what is not and why, and what is flagged (see the module docstring)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if words not in WORDS:
        raise ValueError(f"words must be one of {', '.join(WORDS)}, got {words!r}")
    documents = list(documents)
    out: list[Sentence] = []
    for doc in tqdm(documents, desc="segmenting", unit="doc", disable=not progress):
        out.extend(_document_sentences(doc, report, unit, max_span_size, words))
    return out


def _entry(
    doc: CharDocument, kind: str, reason: str, ident: str, detail: str = "", type: str = ""
) -> ReportEntry:
    """A report entry about one annotation of ``doc``."""
    return ReportEntry(
        kind, reason, doc.source or doc.id, f"document {doc.id}", ident, detail, type
    )


def _check_entities(
    doc: CharDocument, report: ImportReport
) -> tuple[list[CharEntity], dict[str, str | None]]:
    """Entities to import (trimmed, in document order) and, for every entity id, the id of the
    entity that stands for it (None: not imported)."""
    kept: list[CharEntity] = []
    alias: dict[str, str | None] = {}
    by_span: dict[tuple[int, int], CharEntity] = {}
    for e in doc.entities:
        if e.id in alias:
            report.error(_entry(doc, "entity", "id used twice", e.id, type=e.type))
            continue
        alias[e.id] = None
        if not 0 <= e.start < e.end <= len(doc.text):
            report.error(
                _entry(
                    doc,
                    "entity",
                    f"offsets {e.start} {e.end} outside the text ({len(doc.text)} characters)",
                    e.id,
                    type=e.type,
                )
            )
            continue
        surface = doc.text[e.start : e.end]
        stripped = surface.strip()
        if not stripped:
            report.skip(_entry(doc, "entity", "whitespace only", e.id, type=e.type))
            continue
        if stripped != surface:
            start = e.start + (len(surface) - len(surface.lstrip()))
            end = start + len(stripped)
            detail = f"{e.start} {e.end} -> {start} {end}"
            report.flag(_entry(doc, "entity", "whitespace trimmed", e.id, detail, e.type))
            e = CharEntity(e.id, e.type, start, end, e.score)
        other = by_span.get((e.start, e.end))
        if other is None:
            by_span[(e.start, e.end)] = e
            kept.append(e)
            alias[e.id] = e.id
        elif other.type == e.type:
            report.skip(_entry(doc, "entity", "duplicate", e.id, f"of {other.id}", e.type))
            alias[e.id] = other.id
        else:
            detail = f"{e.type} on the span of {other.id} ({other.type}), which is kept"
            report.skip(_entry(doc, "entity", "second type on one span", e.id, detail, e.type))
    return kept, alias


def _check_relations(
    doc: CharDocument, alias: Mapping[str, str | None], report: ImportReport
) -> list[CharRelation]:
    """Relations to import, arguments resolved through ``alias``."""
    kept: list[CharRelation] = []
    seen: dict[tuple[str, str, str], str] = {}
    for r in doc.relations:
        if r.head not in alias or r.tail not in alias:
            missing = r.head if r.head not in alias else r.tail
            reason = f"argument {missing!r} is not an entity of the document"
            report.error(_entry(doc, "relation", reason, r.id, type=r.type))
            continue
        head, tail = alias[r.head], alias[r.tail]
        if head is None or tail is None:
            detail = r.head if head is None else r.tail
            report.skip(_entry(doc, "relation", "argument not imported", r.id, detail, r.type))
            continue
        if head == tail:
            report.skip(_entry(doc, "relation", "entity related to itself", r.id, head, r.type))
            continue
        key = (r.type, head, tail)
        if key in seen or (r.symmetric and (r.type, tail, head) in seen):
            first = seen.get(key) or seen[(r.type, tail, head)]
            report.skip(_entry(doc, "relation", "duplicate", r.id, f"of {first}", r.type))
            continue
        seen[key] = r.id
        kept.append(CharRelation(r.id, r.type, head, tail, r.symmetric, r.score))
    return kept


def _words(text: str, words: Words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word starts, word ends and whether each word starts a sentence."""
    if words == "spacy":
        starts_list: list[int] = []
        ends_list: list[int] = []
        first: list[int] = []
        for sentence in split_sentences(text, max_words=_NO_LENGTH_LIMIT):
            first.append(len(starts_list))
            starts_list += [a for a, _ in sentence.offsets]
            ends_list += [b for _, b in sentence.offsets]
        starts = np.asarray(starts_list, dtype=np.int64)
        ends = np.asarray(ends_list, dtype=np.int64)
        is_start = np.zeros(len(starts), dtype=bool)
        is_start[first] = True
        return starts, ends, is_start
    spans = [m.span() for m in _NON_SPACE.finditer(text)]
    starts = np.asarray([a for a, _ in spans], dtype=np.int64)
    ends = np.asarray([b for _, b in spans], dtype=np.int64)
    return starts, ends, _breaks_between(text, _LINE_BREAK, starts, ends)


def _breaks_between(
    text: str, pattern: re.Pattern[str], starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """For each word, whether a match of ``pattern`` lies between it and the word before
    (the first word: True)."""
    positions = np.asarray([m.start() for m in pattern.finditer(text)], dtype=np.int64)
    before = np.searchsorted(positions, starts, side="left")
    after_previous = np.searchsorted(positions, np.concatenate([[0], ends[:-1]]), side="left")
    out = before > after_previous
    if len(out):
        out[0] = True
    return out


def _cut_at(
    starts: np.ndarray, ends: np.ndarray, boundaries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Words cut at every boundary that falls strictly inside one."""
    index = np.searchsorted(starts, boundaries, side="right") - 1
    valid = index >= 0
    inside = np.zeros(len(boundaries), dtype=bool)
    inside[valid] = (starts[index[valid]] < boundaries[valid]) & (
        boundaries[valid] < ends[index[valid]]
    )
    cuts = np.unique(boundaries[inside])
    return np.sort(np.concatenate([starts, cuts])), np.sort(np.concatenate([ends, cuts]))


def _document_sentences(
    doc: CharDocument, report: ImportReport, unit: Unit, max_span_size: int, words: Words
) -> list[Sentence]:
    entities, alias = _check_entities(doc, report)
    relations = _check_relations(doc, alias, report)
    text = doc.text
    starts, ends, sentence_start = _words(text, words)
    if len(starts) == 0:
        for e in entities:  # cannot happen: kept entities hold non-space characters
            raise AssertionError(f"entity {e.id} of {doc.id} holds no word")
        return []
    # Every entity boundary becomes a word boundary.
    boundaries = np.asarray([p for e in entities for p in (e.start, e.end)], dtype=np.int64)
    old_first = starts[sentence_start]
    starts, ends = _cut_at(starts, ends, boundaries)
    n = len(starts)
    if unit == "sentence":
        unit_start = np.isin(starts, old_first)
    elif unit == "paragraph":
        unit_start = _breaks_between(text, _PARAGRAPH_BREAK, starts, ends)
    else:
        unit_start = np.zeros(n, dtype=bool)
    unit_start[0] = True

    # Word spans of the entities; no unit boundary inside one (those units merge).
    first = np.searchsorted(starts, [e.start for e in entities]).astype(np.int64)
    last = np.searchsorted(ends, [e.end for e in entities]).astype(np.int64) + 1
    inside = np.zeros(n + 1, dtype=np.int64)
    np.add.at(inside, first + 1, 1)
    np.add.at(inside, last, -1)
    covered = np.cumsum(inside)[:n] > 0
    starts_seen = np.concatenate([[0], np.cumsum(unit_start)])
    crossing = starts_seen[last] - starts_seen[first + 1] > 0
    unit_start &= ~covered
    unit_of_word = np.cumsum(unit_start) - 1
    unit_first_word = np.flatnonzero(unit_start)

    kept = [_Kept(e, int(a), int(b)) for e, a, b in zip(entities, first, last)]
    _flag_entities(doc, kept, crossing, max_span_size, report)

    # Sentences: entities in document order, relations only within a unit.
    n_units = len(unit_first_word)
    bounds = np.append(unit_first_word, n).tolist()
    unit_entities: list[list[Entity]] = [[] for _ in range(n_units)]
    place: dict[str, tuple[int, int]] = {}
    for k in kept:
        u = int(unit_of_word[k.start])
        place[k.entity.id] = (u, len(unit_entities[u]))
        offset = bounds[u]
        unit_entities[u].append(
            Entity(k.entity.type, k.start - offset, k.end - offset, k.entity.score)
        )
        report.count_imported("entity", type=k.entity.type)
    unit_relations: list[list[Relation]] = [[] for _ in range(n_units)]
    for r in relations:
        (head_unit, head), (tail_unit, tail) = place[r.head], place[r.tail]
        if head_unit != tail_unit:
            detail = f"{r.head} in {unit} {head_unit + 1}, {r.tail} in {unit} {tail_unit + 1}"
            report.skip(_entry(doc, "relation", f"cross-{unit}", r.id, detail, r.type))
            continue
        unit_relations[head_unit].append(Relation(r.type, head, tail, r.score))
        report.count_imported("relation", type=r.type)
    s_list, e_list = starts.tolist(), ends.tolist()
    return [
        Sentence(
            tokens=[text[a:b] for a, b in zip(s_list[lo:hi], e_list[lo:hi])],
            entities=unit_entities[u],
            relations=unit_relations[u],
            doc_id=doc.id,
            offsets=list(zip(s_list[lo:hi], e_list[lo:hi])),
        )
        for u, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def _flag_entities(
    doc: CharDocument,
    kept: Sequence[_Kept],
    crossing: np.ndarray,
    max_span_size: int,
    report: ImportReport,
) -> None:
    """Flag entities across a unit boundary, longer than ``max_span_size``, or overlapping."""
    for k, crosses in zip(kept, crossing.tolist()):
        e = k.entity
        if crosses:
            report.flag(_entry(doc, "entity", "units merged around it", e.id, type=e.type))
        if k.end - k.start > max_span_size:
            detail = f"{k.end - k.start} words > max_span_size {max_span_size}"
            report.flag(_entry(doc, "entity", "longer than max_span_size", e.id, detail, e.type))
    # Sorted by start, an entity overlaps another iff it starts before the furthest end so far
    # or the next one starts before its end.
    order = sorted(range(len(kept)), key=lambda i: (kept[i].start, kept[i].end))
    furthest_end, furthest_id = -1, ""
    for rank, i in enumerate(order):
        k = kept[i]
        partner = ""
        if k.start < furthest_end:
            partner = furthest_id
        elif rank + 1 < len(order) and kept[order[rank + 1]].start < k.end:
            partner = kept[order[rank + 1]].entity.id
        if partner:
            detail = f"with {partner}"
            report.flag(_entry(doc, "entity", "overlapping", k.entity.id, detail, k.entity.type))
        if k.end > furthest_end:
            furthest_end, furthest_id = k.end, k.entity.id


# -- back to documents -------------------------------------------------------------------------


def sentences_to_documents(
    sentences: Sequence[Sentence],
    texts: Mapping[str, str] | None = None,
    types: Types | None = None,
) -> list[CharDocument]:
    """Documents of SpERT sentences: the inverse of :func:`documents_to_sentences`.

    Sentences are grouped by ``doc_id`` (in order of first appearance; a sentence without one
    is a document of its own, ``sentence-000001`` ...). A document's text is ``texts[doc_id]``
    when given (its sentences' offsets must fit it); else, when every sentence has offsets,
    the words are put back at their offsets with spaces between (a line break between
    sentences); else the words are joined by spaces, one sentence per line (import such text
    with ``words="whitespace"`` to get the same sentences back). Entity ids are ``T1``, ...,
    relation ids ``R1``, ... per document; relations of a type that ``types`` marks symmetric
    are symmetric.
    """
    texts = texts or {}
    symmetric = types.symmetric if types is not None else frozenset()
    groups: dict[str, list[Sentence]] = {}
    for index, sentence in enumerate(sentences):
        key = str(sentence.doc_id) if sentence.doc_id is not None else f"sentence-{index + 1:06d}"
        if sentence.doc_id is None and key in groups:
            key = f"{key}-{index}"
        groups.setdefault(key, []).append(sentence)
    documents = []
    for doc_id, group in groups.items():
        text, offsets = _document_text(doc_id, group, texts.get(doc_id))
        doc = CharDocument(doc_id, text)
        for sentence, words in zip(group, offsets):
            first_id = len(doc.entities)
            for e in sentence.entities:
                doc.entities.append(
                    CharEntity(
                        f"T{len(doc.entities) + 1}",
                        e.type,
                        words[e.start][0],
                        words[e.end - 1][1],
                        e.score,
                    )
                )
            for r in sentence.relations:
                doc.relations.append(
                    CharRelation(
                        f"R{len(doc.relations) + 1}",
                        r.type,
                        f"T{first_id + r.head + 1}",
                        f"T{first_id + r.tail + 1}",
                        r.type in symmetric,
                        r.score,
                    )
                )
        documents.append(doc)
    return documents


def _document_text(
    doc_id: str, sentences: list[Sentence], text: str | None
) -> tuple[str, list[list[tuple[int, int]]]]:
    """The text of one document and each sentence's word offsets in it."""
    if text is not None or all(s.offsets is not None for s in sentences):
        offsets = [list(s.offsets or []) for s in sentences]
        for s, words in zip(sentences, offsets):
            if len(words) != len(s.tokens) or any(
                b - a != len(t) for t, (a, b) in zip(s.tokens, words)
            ):
                raise DataError(
                    f"document {doc_id!r}: offsets do not match the tokens {s.tokens[:5]!r}..."
                )
        if text is None:
            chars = [" "] * max((b for words in offsets for _, b in words), default=0)
            for k, (s, words) in enumerate(zip(sentences, offsets)):
                for token, (a, b) in zip(s.tokens, words):
                    chars[a:b] = token
                if k > 0 and words and words[0][0] > offsets[k - 1][-1][1]:
                    chars[offsets[k - 1][-1][1]] = "\n"
            text = "".join(chars)
        for s, words in zip(sentences, offsets):
            for token, (a, b) in zip(s.tokens, words):
                if text[a:b] != token:
                    raise DataError(
                        f"document {doc_id!r}: token {token!r} is not the text at {a}..{b} "
                        f"({text[a:b]!r})"
                    )
        return text, offsets
    pieces: list[str] = []
    offsets = []
    position = 0
    for s in sentences:
        words = []
        for token in s.tokens:
            words.append((position, position + len(token)))
            position += len(token) + 1
        offsets.append(words)
        pieces.append(" ".join(s.tokens))
    return "\n".join(pieces), offsets
