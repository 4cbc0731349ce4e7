"""Convert other dataset formats to SpERT JSON (``spert convert``).

``dygie``: the document-level JSON Lines format of DyGIE and PURE (SciERC's
``documents/*.json``), one document a line::

    {"doc_key": "X96-1059", "sentences": [[tokens], ...],
     "ner": [[[start, end, type], ...] per sentence],
     "relations": [[[head_start, head_end, tail_start, tail_end, type], ...] per sentence]}

Token offsets count across the whole document and ends are inclusive. Each sentence becomes one
SpERT record: entities in the order of ``ner``, relations in the order of ``relations`` (an
argument is the first entity of its sentence with that span), PTB bracket tokens (``-LRB-``
...) written as brackets, ``orig_id`` ``"{doc_key}_{sentence index}"``. With a types file,
type labels are spelled as the types file spells them (matched case-insensitively:
``USED-FOR`` becomes ``Used-for``); without one they are kept as they are. With ``doc_ids``
(``--doc-ids``) each record also gets ``doc_id`` = the ``doc_key``, so that a model with
``context_words`` can encode it with the words of its document around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spert.data.dataset import DataError, Entity, Relation, Sentence, Types, write_dataset

#: Penn Treebank escapes of brackets, as the SciERC documents write them.
PTB_BRACKETS = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
}


class _TypeNames:
    """Spell type labels as a types file does (case-insensitively), or keep them."""

    def __init__(self, names: tuple[str, ...] | None, kind: str, source: str) -> None:
        self.kind = kind
        self.source = source
        self.by_lower = None if names is None else {n.lower(): n for n in names}

    def __call__(self, label: Any, where: str) -> str:
        if not isinstance(label, str) or not label:
            raise DataError(f"{where}: {self.kind} type must be a non-empty string, got {label!r}")
        if self.by_lower is None:
            return label
        name = self.by_lower.get(label.lower())
        if name is None:
            raise DataError(
                f"{where}: {self.kind} type {label!r} is not in the types file {self.source} "
                f"({', '.join(self.by_lower.values())})"
            )
        return name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _local_span(
    start: Any, end: Any, offset: int, length: int, where: str, field: str
) -> tuple[int, int]:
    """Document [start, end] (inclusive) -> [start, end) (exclusive) in the sentence of
    ``length`` tokens that starts at document token ``offset``."""
    if not (_is_int(start) and _is_int(end) and offset <= start <= end < offset + length):
        raise DataError(
            f"{where}, field '{field}': span [{start!r}, {end!r}] is not within the "
            f"sentence's tokens {offset}..{offset + length - 1} (inclusive ends)"
        )
    return start - offset, end - offset + 1


def _document_sentences(
    doc: Any, where: str, entity_type: _TypeNames, relation_type: _TypeNames, doc_ids: bool
) -> list[Sentence]:
    """The SpERT sentences of one DyGIE document; ``where`` names its file and line."""
    if not isinstance(doc, dict):
        raise DataError(f"{where}: a document must be a JSON object")
    doc_key = doc.get("doc_key")
    if doc_key is not None:
        where = f"{where} (doc_key {doc_key!r})"
    if doc_ids and not (isinstance(doc_key, str) and doc_key):
        raise DataError(
            f"{where}, field 'doc_key': must be a non-empty string for doc ids, got {doc_key!r}"
        )
    sentences = doc.get("sentences")
    if not isinstance(sentences, list):
        raise DataError(f"{where}, field 'sentences': must be a list of token lists")
    n = len(sentences)
    ner = doc.get("ner", [[] for _ in range(n)])
    relations = doc.get("relations", [[] for _ in range(n)])
    for name, value in (("ner", ner), ("relations", relations)):
        if not isinstance(value, list) or len(value) != n:
            raise DataError(f"{where}, field '{name}': must be a list with one entry per sentence")

    out = []
    offset = 0  # document offset of the sentence's first token
    for k, tokens in enumerate(sentences):
        field = f"sentences[{k}]"
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"{where}, field '{field}': must be a non-empty list of tokens")
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise DataError(
                    f"{where}, field '{field}[{i}]': must be a non-empty string, got {token!r}"
                )
        length = len(tokens)

        entities: list[Entity] = []
        first_of_span: dict[tuple[int, int], int] = {}
        if not isinstance(ner[k], list):
            raise DataError(f"{where}, field 'ner[{k}]': must be a list of [start, end, type]")
        for i, item in enumerate(ner[k]):
            field = f"ner[{k}][{i}]"
            if not isinstance(item, list) or len(item) != 3:
                raise DataError(f"{where}, field '{field}': must be [start, end, type]")
            start, end = _local_span(item[0], item[1], offset, length, where, field)
            first_of_span.setdefault((start, end), len(entities))
            entities.append(Entity(entity_type(item[2], f"{where}, field '{field}'"), start, end))

        rels: list[Relation] = []
        if not isinstance(relations[k], list):
            raise DataError(
                f"{where}, field 'relations[{k}]': must be a list of "
                "[head_start, head_end, tail_start, tail_end, type]"
            )
        for i, item in enumerate(relations[k]):
            field = f"relations[{k}][{i}]"
            if not isinstance(item, list) or len(item) != 5:
                raise DataError(
                    f"{where}, field '{field}': must be "
                    "[head_start, head_end, tail_start, tail_end, type]"
                )
            arguments = []
            for role, (start, end) in (("head", item[0:2]), ("tail", item[2:4])):
                span = _local_span(start, end, offset, length, where, field)
                if span not in first_of_span:
                    raise DataError(
                        f"{where}, field '{field}': the {role} [{start}, {end}] is no entity "
                        f"of sentence {k} (field 'ner[{k}]')"
                    )
                arguments.append(first_of_span[span])
            if arguments[0] == arguments[1]:
                raise DataError(f"{where}, field '{field}': head and tail are the same entity")
            rtype = relation_type(item[4], f"{where}, field '{field}'")
            rels.append(Relation(rtype, arguments[0], arguments[1]))

        words = [PTB_BRACKETS.get(t, t) for t in tokens]
        doc_id = doc_key if doc_ids else None
        out.append(Sentence(words, entities, rels, f"{doc_key}_{k}", doc_id))
        offset += length
    return out


def read_dygie(
    path: str | Path, types: Types | None = None, doc_ids: bool = False
) -> Iterator[Sentence]:
    """The sentences of a DyGIE/PURE document-level JSON Lines file, in order; with
    ``doc_ids``, each with its document's ``doc_key`` as ``doc_id``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    source = str(path)
    entity_type = _TypeNames(types.entities if types else None, "entity", source)
    relation_type = _TypeNames(types.relation_names if types else None, "relation", source)
    first_line: dict[str, int] = {}  # doc_key -> line it was first seen on
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: invalid JSON at column {e.colno}: {e.msg} "
                    "(expected one document per line)"
                ) from None
            where = f"{path}, line {lineno}"
            sentences = _document_sentences(doc, where, entity_type, relation_type, doc_ids)
            if doc_ids:
                # One doc_id per document: a repeated key would join two documents' contexts.
                doc_key = doc["doc_key"]
                if doc_key in first_line:
                    raise DataError(
                        f"{where}, field 'doc_key': {doc_key!r} is also the key of line "
                        f"{first_line[doc_key]}; doc ids must be unique"
                    )
                first_line[doc_key] = lineno
            yield from sentences


def convert_dygie(
    input_path: str | Path,
    out_path: str | Path,
    types: Types | None = None,
    doc_ids: bool = False,
) -> list[Sentence]:
    """Convert a DyGIE/PURE file to SpERT JSON (JSON Lines for ``.jsonl``), atomically."""
    sentences = list(read_dygie(input_path, types, doc_ids))
    write_dataset(out_path, sentences)
    return sentences
