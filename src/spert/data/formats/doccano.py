"""doccano's relation extraction format: read its imports and exports, write what it imports.

A record is a JSON object with ``text``, ``entities`` (``id``, ``start_offset``, ``end_offset``,
``label``; offsets are code points into the text) and ``relations`` (``from_id``, ``to_id``,
``type``, and an ``id`` that doccano's export adds). A file holds JSON Lines (what doccano
imports), one or more pretty-printed objects one after the other (doccano's export example),
or a JSON list of records. doccano's sequence labeling records (``label``: a list of
``[start, end, label]``) are read as entities without relations.

What doccano has no field for is written in extra fields that doccano ignores on import:
``score`` (of an entity or relation the model predicted) and ``symmetric: true`` (a relation
whose direction carries no meaning); the reader reads them back. The document id is the
record's ``id`` (as text), else ``<file stem>:<record number>``. Relations without ``id`` get
their position in the record (``"0"``, ``"1"``, ...), which is what doccano's export numbers them.

Counting in the report: every record is a "record" (read, imported when it gives a document,
or an error), every entity an "entity" and every relation a "relation" read; a relation to an
entity that was not imported (an error in lenient mode) is not imported, reason "entity not
imported". A record without entities and relations (never annotated?) is flagged "no
annotation", or not imported with ``skip_empty`` (``--skip-empty``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spert.data.dataset import RelationType, Types
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import FormatError, ImportReport, ReportEntry
from spert.data.formats.tools import JsonValue, label_color, optional_score, read_json_documents
from spert.utils import AtomicFile, atomic_write_text

#: File suffixes read from a folder given as input.
SUFFIXES = (".jsonl", ".json")


def read_doccano(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    report: ImportReport,
    skip_empty: bool = False,
) -> list[CharDocument]:
    """Documents of doccano relation extraction files (files, folders or globs). A record
    without any entity or relation is flagged ("no annotation": doccano exports the records
    nobody annotated that way), or with ``skip_empty`` not imported."""
    return read_json_documents(
        paths,
        SUFFIXES,
        report,
        "record",
        lambda item, path: _read_record(item, path, report, skip_empty),
    )


def _read_record(
    item: JsonValue, path: Path, report: ImportReport, skip_empty: bool = False
) -> CharDocument | None:
    source, where, record = str(path), item.where, item.value

    def error(kind: str, reason: str, annotation_id: str = "", detail: str = "") -> None:
        report.error(ReportEntry(kind, reason, source, where, annotation_id, detail))

    if not isinstance(record, dict):
        error("record", "not an object", detail="a record must be a JSON object with 'text'")
        return None
    text = record.get("text")
    if not isinstance(text, str):
        error("record", "no text", detail="field 'text' must be a string")
        return None
    raw_id = record.get("id")
    doc_id = str(raw_id) if isinstance(raw_id, (str, int)) else f"{path.stem}:{item.record}"
    raw_entities = record.get("entities")
    if raw_entities is None and isinstance(record.get("label"), list):
        raw_entities = [  # sequence labeling: [start, end, label] triples
            {"id": i, "start_offset": t[0], "end_offset": t[1], "label": t[2]}
            if isinstance(t, list) and len(t) == 3
            else t
            for i, t in enumerate(record["label"])
        ]
    for name, value in (("entities", raw_entities), ("relations", record.get("relations"))):
        if value is not None and not isinstance(value, list):
            error("record", f"bad {name}", detail=f"field {name!r} must be a list")
            return None
    if not raw_entities and not record.get("relations"):
        entry = ReportEntry("record", "no annotation", source, where, doc_id)
        if skip_empty:
            report.skip(dataclasses.replace(entry, reason="no annotation (--skip-empty)"))
            return None
        report.flag(entry)
    entities: list[CharEntity] = []
    known: set[str] = set()  # ids read, also of entities not imported
    for index, raw in enumerate(raw_entities or []):
        report.count_read("entity")
        entity = _entity(raw, index, text, known, error)
        if isinstance(raw, dict) and raw.get("id") is not None:
            known.add(str(raw["id"]))
        if entity is not None:
            entities.append(entity)
    imported = {e.id for e in entities}
    relations: list[CharRelation] = []
    relation_ids: set[str] = set()
    for index, raw in enumerate(record.get("relations") or []):
        report.count_read("relation")
        relation = _relation(raw, index, relation_ids, error)
        if relation is None:
            continue
        relation_ids.add(relation.id)
        missing = [end for end in (relation.head, relation.tail) if end not in imported]
        unknown = [end for end in missing if end not in known]
        if unknown:
            error("relation", "missing entity", relation.id, f"no entity with id {unknown[0]}")
        elif missing:
            report.skip(
                ReportEntry(
                    "relation",
                    "entity not imported",
                    source,
                    where,
                    relation.id,
                    f"entity {missing[0]} was not imported",
                    relation.type,
                )
            )
        else:
            relations.append(relation)
    return CharDocument(doc_id, text, entities, relations, source)


def _entity(raw: Any, index: int, text: str, known: set[str], error: Any) -> CharEntity | None:
    if not isinstance(raw, dict):
        error("entity", "not an object", str(index), f"entity {index} must be a JSON object")
        return None
    entity_id = str(raw["id"]) if isinstance(raw.get("id"), (str, int)) else ""
    if not entity_id:
        error("entity", "no id", str(index), f"entity {index}: field 'id' is missing")
        return None
    if entity_id in known:
        error("entity", "duplicate id", entity_id, f"a second entity with id {entity_id}")
        return None
    start, end, label = raw.get("start_offset"), raw.get("end_offset"), raw.get("label")
    if not isinstance(label, str) or not label:
        error("entity", "no label", entity_id, "field 'label' must be a non-empty string")
        return None
    if not (_is_int(start) and _is_int(end) and 0 <= start < end <= len(text)):
        error(
            "entity",
            "bad offsets",
            entity_id,
            f"offsets {start!r}-{end!r} are not a span of the text ({len(text)} characters)",
        )
        return None
    return CharEntity(entity_id, label, start, end, optional_score(raw.get("score")))


def _relation(raw: Any, index: int, taken: set[str], error: Any) -> CharRelation | None:
    if not isinstance(raw, dict):
        error("relation", "not an object", str(index), f"relation {index} must be a JSON object")
        return None
    relation_id = str(raw["id"]) if isinstance(raw.get("id"), (str, int)) else str(index)
    if relation_id in taken:
        error("relation", "duplicate id", relation_id, f"a second relation with id {relation_id}")
        return None
    head, tail, kind = raw.get("from_id"), raw.get("to_id"), raw.get("type")
    if not isinstance(kind, str) or not kind:
        error("relation", "no type", relation_id, "field 'type' must be a non-empty string")
        return None
    if not isinstance(head, (str, int)) or not isinstance(tail, (str, int)):
        error("relation", "no entity ids", relation_id, "fields 'from_id' and 'to_id' are needed")
        return None
    symmetric = raw.get("symmetric", False) is True
    score = optional_score(raw.get("score"))
    return CharRelation(relation_id, kind, str(head), str(tail), symmetric, score)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- writing -------------------------------------------------------------------------------
def doccano_record(document: CharDocument) -> dict[str, Any]:
    """One document as a doccano relation extraction record.

    doccano needs integer entity ids: ids that are all non-negative integers (as text) are
    kept, others are numbered 0, 1, ... in order (relations follow). Relation ids likewise.
    """
    entity_numbers = _integer_ids([e.id for e in document.entities])
    entity_ids = {e.id: n for e, n in zip(document.entities, entity_numbers)}
    entities = []
    for entity, new_id in zip(document.entities, entity_numbers):
        item: dict[str, Any] = {
            "id": new_id,
            "start_offset": entity.start,
            "end_offset": entity.end,
            "label": entity.type,
        }
        if entity.score is not None:
            item["score"] = entity.score
        entities.append(item)
    relations = []
    relation_numbers = _integer_ids([r.id for r in document.relations])
    for relation, new_id in zip(document.relations, relation_numbers):
        if relation.head not in entity_ids or relation.tail not in entity_ids:
            raise FormatError(
                f"document {document.id!r}, relation {relation.id!r}: head {relation.head!r} or "
                f"tail {relation.tail!r} is not an entity of the document"
            )
        item = {
            "id": new_id,
            "from_id": entity_ids[relation.head],
            "to_id": entity_ids[relation.tail],
            "type": relation.type,
        }
        if relation.symmetric:
            item["symmetric"] = True
        if relation.score is not None:
            item["score"] = relation.score
        relations.append(item)
    return {
        "id": document.id,
        "text": document.text,
        "entities": entities,
        "relations": relations,
    }


def _integer_ids(ids: list[str]) -> list[int]:
    """The doccano id of each id: the ids themselves when all are distinct non-negative
    integers (as text), else 0, 1, ... in order."""
    canonical = all(i.isascii() and i.isdigit() and i == str(int(i)) for i in ids)
    if canonical and len(set(ids)) == len(ids):
        return [int(i) for i in ids]
    return list(range(len(ids)))


def doccano_line(document: CharDocument) -> str:
    """One document as a JSON Lines record (no line end)."""
    return json.dumps(doccano_record(document), ensure_ascii=False)


def write_doccano(
    documents: Iterable[CharDocument], path: str | os.PathLike[str], types: Types | None = None
) -> Path:
    """Write ``documents`` as doccano JSON Lines (atomically); with ``types``, also the label
    files doccano's label page imports (see :func:`write_doccano_labels`)."""
    out = AtomicFile(path)
    try:
        for document in documents:
            out.file.write(doccano_line(document) + "\n")
        out.commit()
    except BaseException:
        out.discard()
        raise
    if types is not None:
        write_doccano_labels(path, types)
    return Path(path)


def read_doccano_labels(
    spans_path: str | os.PathLike[str], relations_path: str | os.PathLike[str] | None = None
) -> Types:
    """The types declared by doccano label files (what its label page exports, and what
    :func:`write_doccano_labels` writes): a JSON list of labels, each an object whose ``text``
    is the type's name; span types, then (optionally) relation types (directed)."""
    entities = _label_names(Path(spans_path))
    if not entities:
        raise FormatError(f"{spans_path}: declares no span type")
    relations = _label_names(Path(relations_path)) if relations_path else []
    return Types(tuple(entities), tuple(RelationType(name) for name in relations))


def _label_names(path: Path) -> list[str]:
    try:
        labels = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not a doccano label file ({e})") from None
    if not isinstance(labels, list):
        raise FormatError(f"{path}: not a doccano label file (a JSON list of labels expected)")
    names: list[str] = []
    for i, label in enumerate(labels):
        name = label.get("text") if isinstance(label, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise FormatError(f"{path}: label {i}: field 'text' must be a non-empty string")
        if name not in names:
            names.append(name)
    return names


def doccano_label_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Where the span and relation label files of the JSON Lines file ``path`` go."""
    path = Path(path)
    return (
        path.with_name(f"{path.stem}.span_types.json"),
        path.with_name(f"{path.stem}.relation_types.json"),
    )


def write_doccano_labels(path: str | os.PathLike[str], types: Types) -> tuple[Path, Path]:
    """The model's entity and relation types as the two files doccano's label page imports
    (Labels > Actions > Import Labels: span types, then relation types), beside ``path``."""
    spans_path, relations_path = doccano_label_paths(path)
    for target, names in ((spans_path, types.entities), (relations_path, types.relation_names)):
        labels = [
            {
                "text": name,
                "prefix_key": None,
                "suffix_key": None,
                "background_color": label_color(i),
                "text_color": "#ffffff",
            }
            for i, name in enumerate(names)
        ]
        atomic_write_text(target, json.dumps(labels, indent=2, ensure_ascii=False) + "\n")
    return spans_path, relations_path
