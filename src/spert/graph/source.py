"""The input of a graph build: what ``spert extract`` writes, read lazily.

``spert extract --format jsonl`` writes one Document a line; ``spert extract --ray`` writes a
folder of such files (one per input shard). A path may be a file, a folder (its ``*.jsonl``
files, sorted) or a glob. Every record is checked: a line that is not a Document (bad JSON, a
truncated last line, missing or mistyped fields, offsets outside the text) stops the build
with an error naming the file and line.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spert.data import DataError
from spert.data.formats.tools import JSON_ERRORS, json_error_detail
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence


@dataclass(frozen=True)
class SourceDocument:
    """A document to add to the graph, its id in the graph, and where it came from."""

    id: str
    document: Document
    where: str  # "file, line N", for errors


def extraction_files(paths: Sequence[str]) -> list[Path]:
    """The JSONL files named by ``paths`` (files, folders of shards, globs), each once."""
    found: dict[Path, None] = {}
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.glob("*.jsonl") if not f.name.startswith("."))
            if not files:
                raise DataError(f"{path}: folder without .jsonl files (spert extract output)")
        elif p.is_file():
            files = [p]
        else:
            files = [Path(f) for f in sorted(glob.glob(path)) if Path(f).is_file()]
            if not files:
                raise DataError(f"{path}: no such file")
        found.update((f, None) for f in files)
    return list(found)


def read_extractions(paths: Sequence[str]) -> Iterator[SourceDocument]:
    """The documents of ``spert extract`` JSONL files, lazily, in file and line order. A
    document without id gets ``"<file name>:<line>"``."""
    for path in extraction_files(paths):
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                where = f"{path}, line {lineno}"
                line = _decode_line(raw, lineno == 1, where)
                if not line.strip():
                    continue
                doc = parse_document(line, where)
                doc_id = str(doc.id) if doc.id is not None else f"{path.name}:{lineno}"
                yield SourceDocument(doc_id, doc, where)


def _decode_line(raw: bytes, first: bool, where: str) -> str:
    """One line of UTF-8 text (a byte order mark at the start of the file dropped)."""
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start + 1})") from None


def parse_document(line: str, where: str) -> Document:
    """One ``spert extract`` JSONL record, checked; a DataError names ``where`` and the field."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{where}: invalid JSON at column {e.colno}: {e.msg} (a truncated line?)"
        ) from None
    except JSON_ERRORS as e:  # nesting too deep, an integer of too many digits
        raise DataError(f"{where}: invalid JSON: {json_error_detail(e)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise DataError(f"{where}: not a spert extract record (a JSON object with 'text')")
    if not isinstance(raw.get("sentences"), list):
        raise DataError(f"{where}, field 'sentences': missing (not spert extract output?)")
    try:
        doc = _document(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: not a spert extract record ({type(e).__name__}: {e})") from None
    _check_document(doc, where)
    return doc


def _document(raw: dict[str, Any]) -> Document:
    """Like ``Document.from_dict``, keeping the token offsets as the JSON lists they are (the
    graph does not read them; converting them is a fifth of the reading time)."""
    sentences = [
        ExtractedSentence(
            text=s["text"],
            start=s["start"],
            end=s["end"],
            tokens=s["tokens"],
            token_offsets=s["token_offsets"],
            entities=[ExtractedEntity(**e) for e in s.get("entities", [])],
            relations=[ExtractedRelation(**r) for r in s.get("relations", [])],
        )
        for s in raw["sentences"]
    ]
    return Document(raw["text"], sentences, raw.get("id"))


def _check_document(doc: Document, where: str) -> None:
    n = len(doc.text)
    for s, sentence in enumerate(doc.sentences):
        for i, e in enumerate(sentence.entities):
            field = f"{where}, field 'sentences[{s}].entities[{i}]'"
            if not (isinstance(e.type, str) and isinstance(e.text, str)):
                raise DataError(f"{field}: 'type' and 'text' must be strings")
            if not (_is_int(e.start) and _is_int(e.end) and 0 <= e.start <= e.end <= n):
                raise DataError(f"{field}: start/end outside the document text")
            if not _is_probability(e.score):
                raise DataError(f"{field}: 'score' must be a number in [0, 1]")
        for i, r in enumerate(sentence.relations):
            field = f"{where}, field 'sentences[{s}].relations[{i}]'"
            k = len(sentence.entities)
            if not (_is_int(r.head) and _is_int(r.tail) and 0 <= r.head < k and 0 <= r.tail < k):
                raise DataError(f"{field}: head/tail must index the sentence's {k} entities")
            if not isinstance(r.type, str):
                raise DataError(f"{field}: 'type' must be a string")
            if not _is_probability(r.score):
                raise DataError(f"{field}: 'score' must be a number in [0, 1]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def documents_with_ids(
    documents: Iterable[Document], prefix: str = "doc"
) -> Iterator[SourceDocument]:
    """Documents from Python (e.g. ``SpERT.extract_stream``): their own id, else
    ``"<prefix>:<n>"`` by position from 1."""
    for n, doc in enumerate(documents, 1):
        doc_id = str(doc.id) if doc.id is not None else f"{prefix}:{n}"
        yield SourceDocument(doc_id, doc, f"document {doc_id}")
