"""Read, validate and write datasets and types files in the SpERT JSON format.

A dataset is a JSON list of sentences (or JSONL, one sentence a line)::

    {"tokens": [...], "entities": [{"type", "start", "end"}],
     "relations": [{"type", "head", "tail"}], "orig_id": ..., "doc_id": ...,
     "offsets": [[start, end], ...]}

``doc_id`` (optional, a string or an integer) says which document a sentence belongs to; the
sentences of one document follow one another, in order (see :func:`document_contexts`).
``offsets`` (optional, written by ``spert import``) holds each token's character offsets in its
document's text, so that what was imported can be written back to the exact characters.

Every problem is reported with the file, the record index (and ``orig_id``) and the field;
nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spert.utils import UserError, atomic_write_text


class DataError(UserError, ValueError):
    """A dataset or types file that cannot be used as it is."""


@dataclass(frozen=True)
class Problem:
    """One validation problem, located by file, record and field."""

    source: str
    record: int | None
    field: str
    message: str
    orig_id: Any = None

    def __str__(self) -> str:
        where = self.source
        if self.record is not None:
            where += f", record {self.record}"
            if self.orig_id is not None:
                where += f" (orig_id {self.orig_id!r})"
        return f"{where}, field '{self.field}': {self.message}"


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # first word
    end: int  # one past the last word
    score: float | None = None

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.end


@dataclass(frozen=True)
class Relation:
    type: str
    head: int  # index into the sentence's entities
    tail: int
    score: float | None = None


@dataclass
class Sentence:
    tokens: list[str]
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    orig_id: Any = None
    doc_id: str | int | None = None  # the document it belongs to (see document_contexts)
    offsets: list[tuple[int, int]] | None = None  # each token's [start, end) in its document

    def to_dict(self) -> dict[str, Any]:
        def strip(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if v is not None}

        out: dict[str, Any] = {
            "tokens": list(self.tokens),
            "entities": [
                strip({"type": e.type, "start": e.start, "end": e.end, "score": e.score})
                for e in self.entities
            ],
            "relations": [
                strip({"type": r.type, "head": r.head, "tail": r.tail, "score": r.score})
                for r in self.relations
            ],
        }
        if self.orig_id is not None:
            out["orig_id"] = self.orig_id
        if self.doc_id is not None:
            out["doc_id"] = self.doc_id
        if self.offsets is not None:
            out["offsets"] = [[start, end] for start, end in self.offsets]
        return out


@dataclass(frozen=True)
class RelationType:
    name: str
    symmetric: bool = False
    verbose: str | None = None


@dataclass(frozen=True)
class Types:
    """Entity and relation types, in the order of the types file."""

    entities: tuple[str, ...]
    relations: tuple[RelationType, ...]

    @property
    def relation_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.relations)

    @property
    def symmetric(self) -> frozenset[str]:
        return frozenset(r.name for r in self.relations if r.symmetric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": {name: {"short": name, "verbose": name} for name in self.entities},
            "relations": {
                r.name: {"short": r.name, "verbose": r.verbose or r.name, "symmetric": r.symmetric}
                for r in self.relations
            },
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<types>") -> Types:
        if not isinstance(raw, dict):
            raise DataError(
                f"{source}: a types file must be a JSON object with 'entities' and 'relations'"
            )
        entities = raw.get("entities")
        relations = raw.get("relations", {})
        if not isinstance(entities, dict) or not entities:
            raise DataError(
                f"{source}, field 'entities': must be a non-empty object of entity types"
            )
        if not isinstance(relations, dict):
            raise DataError(f"{source}, field 'relations': must be an object of relation types")
        rel_types = []
        for name, spec in relations.items():
            spec = spec if isinstance(spec, dict) else {}
            symmetric = spec.get("symmetric", False)
            if not isinstance(symmetric, bool):
                raise DataError(
                    f"{source}, field 'relations.{name}.symmetric': must be true or false"
                )
            rel_types.append(RelationType(name, symmetric, spec.get("verbose")))
        return cls(tuple(entities), tuple(rel_types))


def read_types(path: str | os.PathLike[str]) -> Types:
    return Types.from_dict(_load_json(Path(path)), str(path))


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return _parse_json(text, path)
    except RecursionError:
        raise DataError(f"{path}: invalid JSON: nested too deeply to read") from None


def _parse_json(text: str, path: Path) -> Any:
    """One JSON document, else JSON Lines; an error names the line (and column)."""
    try:
        return json.loads(text)
    except ValueError as first_error:  # JSONDecodeError, or an integer of too many digits
        # Not one JSON document: try JSON Lines before reporting the first error.
        if path.suffix == ".jsonl" or text.lstrip().startswith("{"):
            records = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    if path.suffix != ".jsonl" and not records:
                        break  # not JSON Lines (a pretty-printed object): use the first error
                    raise DataError(
                        f"{path}: invalid JSON at line {lineno}{_where(e, line=False)}"
                    ) from None
            else:
                return records
        raise DataError(f"{path}: invalid JSON{_where(first_error)}") from None


def _where(error: ValueError, line: bool = True) -> str:
    """Where and why ``json.loads`` failed: `` at line 2, column 3: Expecting value``."""
    if isinstance(error, json.JSONDecodeError):
        where = f" at line {error.lineno}" if line else ""
        return f"{where}, column {error.colno}: {error.msg}"
    return f": {str(error).split(';')[0]}"  # int(): more digits than Python converts


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_record(
    raw: Any, index: int, source: str, types: Types | None, annotated: bool = True
) -> tuple[Sentence | None, list[Problem]]:
    """Turn one raw record into a Sentence, collecting every problem found in it."""
    if not isinstance(raw, dict):
        return None, [Problem(source, index, "<record>", "must be a JSON object")]
    orig_id = raw.get("orig_id")
    problems: list[Problem] = []

    def problem(field_name: str, message: str) -> None:
        problems.append(Problem(source, index, field_name, message, orig_id))

    tokens = raw.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        problem("tokens", "must be a non-empty list of strings")
        return None, problems
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            problem(f"tokens[{i}]", f"must be a non-empty string, got {token!r}")
    doc_id = raw.get("doc_id")
    if doc_id is not None and not (isinstance(doc_id, str) or _is_index(doc_id)):
        problem("doc_id", f"must be a string or an integer, got {doc_id!r}")
    offsets = _check_offsets(raw.get("offsets"), len(tokens), problem)
    raw_entities = _list_field(raw, "entities", annotated, problem)
    entities = _check_entities(raw_entities, len(tokens), types, problem)
    raw_relations = _list_field(raw, "relations", annotated, problem)
    relations = _check_relations(raw_relations, len(raw_entities), types, problem)
    if problems:
        return None, problems
    return Sentence(list(tokens), entities, relations, orig_id, doc_id, offsets), problems


_Report = Callable[[str, str], None]  # (field, message): one problem of the record


def _check_offsets(raw: Any, n_words: int, problem: _Report) -> list[tuple[int, int]] | None:
    """The optional ``offsets`` field: one [start, end) pair per token, in text order."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != n_words:
        problem("offsets", f"must be a list of {n_words} [start, end] pairs, one per token")
        return None
    offsets: list[tuple[int, int]] = []
    previous_end = 0
    for i, pair in enumerate(raw):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(_is_index(v) for v in pair)
            or not previous_end <= pair[0] < pair[1]
        ):
            problem(
                f"offsets[{i}]",
                f"must be [start, end] with {previous_end} <= start < end, got {pair!r}",
            )
            return None
        offsets.append((pair[0], pair[1]))
        previous_end = pair[1]
    return offsets


def _list_field(raw: dict[str, Any], name: str, annotated: bool, problem: _Report) -> list[Any]:
    """The record's list ``name`` (none for unannotated input)."""
    value = raw.get(name, []) if annotated else []
    if not isinstance(value, list):
        problem(name, "must be a list")
        return []
    return value


def _check_entities(
    raw_entities: list[Any], n_words: int, types: Types | None, problem: _Report
) -> list[Entity]:
    entities: list[Entity] = []
    for i, ent in enumerate(raw_entities):
        name = f"entities[{i}]"
        if not isinstance(ent, dict):
            problem(name, "must be an object with type, start and end")
            continue
        ok = True
        etype, start, end = ent.get("type"), ent.get("start"), ent.get("end")
        if types is not None and etype not in types.entities:
            problem(f"{name}.type", f"unknown entity type {etype!r}")
            ok = False
        elif not isinstance(etype, str):
            problem(f"{name}.type", f"must be a string, got {etype!r}")
            ok = False
        if not _is_index(start) or not 0 <= start < n_words:
            problem(f"{name}.start", f"{start!r} out of range for {n_words} tokens")
            ok = False
        if not _is_index(end) or not 0 < end <= n_words:
            problem(f"{name}.end", f"{end!r} out of range for {n_words} tokens")
            ok = False
        elif _is_index(start) and end <= start:
            problem(f"{name}.end", f"end {end} must be greater than start {start} (empty span)")
            ok = False
        score = ent.get("score")
        if ok:
            entities.append(Entity(etype, start, end, score if isinstance(score, float) else None))
    return entities


def _check_relations(
    raw_relations: list[Any], n_entities: int, types: Types | None, problem: _Report
) -> list[Relation]:
    relations: list[Relation] = []
    # A tuple, not a set: a malformed type may be unhashable (a list) and must be reported.
    relation_names = types.relation_names if types is not None else None
    for i, rel in enumerate(raw_relations):
        name = f"relations[{i}]"
        if not isinstance(rel, dict):
            problem(name, "must be an object with type, head and tail")
            continue
        ok = True
        rtype, head, tail = rel.get("type"), rel.get("head"), rel.get("tail")
        if relation_names is not None and rtype not in relation_names:
            problem(f"{name}.type", f"unknown relation type {rtype!r}")
            ok = False
        elif not isinstance(rtype, str):
            problem(f"{name}.type", f"must be a string, got {rtype!r}")
            ok = False
        for key, value in (("head", head), ("tail", tail)):
            if not _is_index(value) or not 0 <= value < n_entities:
                problem(f"{name}.{key}", f"{value!r} is not an entity index (0..{n_entities - 1})")
                ok = False
        if ok and head == tail:
            problem(name, f"head and tail are the same entity ({head})")
            ok = False
        score = rel.get("score")
        if ok:
            relations.append(
                Relation(rtype, head, tail, score if isinstance(score, float) else None)
            )
    return relations


def check_dataset(
    path: str | os.PathLike[str], types: Types | None, annotated: bool = True
) -> tuple[list[Sentence], list[Problem]]:
    """All sentences of a file and every problem in it (``spert validate``)."""
    source = str(path)
    raw = _load_json(Path(path))
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise DataError(f"{source}: a dataset must be a JSON list of sentences or JSON Lines")
    sentences, problems = [], []
    for index, record in enumerate(raw):
        sentence, found = check_record(record, index, source, types, annotated)
        problems.extend(found)
        if sentence is not None:
            sentences.append(sentence)
    return sentences, problems


def read_dataset(
    path: str | os.PathLike[str], types: Types | None = None, annotated: bool = True
) -> list[Sentence]:
    """Read a dataset; any problem raises a DataError naming file, record and field."""
    sentences, problems = check_dataset(path, types, annotated)
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{len(problems)} problem(s) in {path}:\n  {shown}{more}")
    return sentences


def parse_sentences(
    records: Iterable[Any], types: Types | None = None, source: str = "<input>"
) -> list[Sentence]:
    """Validate in-memory records (dicts, Sentences or token lists) into Sentences."""
    out = []
    for index, record in enumerate(records):
        if isinstance(record, Sentence):
            out.append(record)
            continue
        if isinstance(record, (list, tuple)):
            record = {"tokens": list(record)}
        sentence, problems = check_record(record, index, source, types)
        if problems:
            raise DataError(str(problems[0]))
        assert sentence is not None
        out.append(sentence)
    return out


#: Words before and after one sentence: its document context (see document_contexts).
Context = tuple[list[str], list[str]]


def document_contexts(sentences: Sequence[Sentence], words: int) -> list[Context]:
    """For each sentence, up to ``words`` words immediately before it and up to ``words``
    after it from the other sentences of its document: the consecutive sentences with the same
    ``doc_id``. A sentence without a ``doc_id`` (or ``words == 0``) gets none.

    Raises a DataError if a ``doc_id`` comes back after another document's sentences (the
    sentences of a document must be consecutive, else its context would be wrong).
    """
    out: list[Context] = [([], []) for _ in sentences]
    if words <= 0:
        return out
    first_seen: dict[str | int, int] = {}
    start = 0
    while start < len(sentences):
        doc_id = sentences[start].doc_id
        end = start + 1
        while end < len(sentences) and sentences[end].doc_id == doc_id and doc_id is not None:
            end += 1
        if doc_id is not None:
            if doc_id in first_seen:
                raise DataError(
                    f"doc_id {doc_id!r} of sentence {start} (orig_id "
                    f"{sentences[start].orig_id!r}) was already used by sentence "
                    f"{first_seen[doc_id]}, with other documents in between: the sentences of "
                    "a document must be consecutive"
                )
            first_seen[doc_id] = start
            # One word list per document; each sentence's context is a slice of it.
            doc_words = [w for s in sentences[start:end] for w in s.tokens]
            offset = 0
            for i in range(start, end):
                n = len(sentences[i].tokens)
                before = doc_words[max(0, offset - words) : offset]
                out[i] = (before, doc_words[offset + n : offset + n + words])
                offset += n
        start = end
    return out


def write_dataset(path: str | os.PathLike[str], sentences: Sequence[Sentence]) -> None:
    """Write sentences atomically, as JSON Lines for ``.jsonl`` files, else as a JSON list."""
    records = [s.to_dict() for s in sentences]
    if str(path).endswith(".jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=False)
    atomic_write_text(Path(path), text)
