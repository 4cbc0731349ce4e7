"""Label Studio: read its full JSON export, write tasks it imports (with predictions to review).

**Reading** the JSON export (a list of tasks; also JSON Lines or a single task): each task is
one document. Its text is the ``data`` field the regions point to: the field named by the
regions' ``to_name`` when there is one, else ``data["text"]``, else the only text field, else
the one whose slices match the regions' ``value.text``.

- One annotation per task becomes the document (``annotation=``): ``"first"`` (the default:
  the first one in the export that is not cancelled), ``"last"``, ``"annotator:<email or id>"``
  (the first by that annotator: ``completed_by`` as user id or email), or ``"prediction"``
  (the first of the task's ``predictions``: what the model proposed, e.g. to read back
  ``spert extract --format label-studio``). Cancelled annotations (``was_cancelled``) are never
  chosen. The others are counted as "annotation" (or "prediction") not imported, with the
  reason; a task with none to choose is a "task" not imported ("no annotation"): it is not
  annotated, so it would be a wrong negative example.
- ``labels`` results are entities: ``value.start``/``value.end`` (code points; the UTF-16
  offsets of older Label Studio versions are recognized by ``value.text`` and converted) and
  one entity per label in ``value.labels`` (the first keeps the region id, more get
  ``<id>:<label>``: the shared path keeps one type per span). A region without label is not
  imported ("no label").
- ``relation`` results are relations from ``from_id`` to ``to_id``; ``direction`` ``right``
  (the default) keeps that order, ``left`` reverses it, ``bi`` makes a symmetric relation. One
  relation per label in ``labels``; a relation drawn without label gets the type
  :data:`UNLABELED_RELATION`, so that it is kept and shows in ``types.json``.
- Other results (choices, text areas, ratings, ...) are counted under their ``type``, not
  imported ("not modelled"). ``score`` of a region or relation is read back as its score.

**Writing**: one task per document, ``data`` = ``{"text": ..., "doc_id": ...}``; with a
``model_version`` the regions and relations are ``predictions`` (with that model version, a
``score`` per region and relation, their mean as the prediction's score), otherwise
``annotations``. The labeling config to paste into the project (Settings > Labeling
Interface > Code) is written beside the tasks (:func:`label_config_path`).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from spert.data.dataset import RelationType, Types
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.report import FormatError, ImportReport, ReportEntry
from spert.data.formats.tools import JsonValue, label_color, optional_score, read_json_documents
from spert.utils import AtomicFile, atomic_write_text

#: The relation type of a relation drawn in Label Studio without a label.
UNLABELED_RELATION = "related"
#: ``data`` field that holds the document id in the tasks written here.
DOC_ID_FIELD = "doc_id"
#: Names of the labeling config's tags the written regions refer to.
LABELS_NAME = "label"
TEXT_NAME = "text"
DIRECTIONS = ("right", "left", "bi")
#: Why a task's predictions (or annotations) are numbers, and what to export instead.
IDS_ONLY = (
    "the export holds {kind} ids, not the {kind}s: Label Studio's standard JSON export writes "
    "prediction ids only; export a snapshot with the predictions in full (API: POST "
    '/api/projects/ID/exports with serialization_options {{"predictions": {{"only_id": '
    "false}}}}, then GET /api/projects/ID/exports/EXPORT_ID/download) and import that file"
)
#: File suffixes read from a folder given as input.
SUFFIXES = (".json", ".jsonl")


def read_label_config(path: str | os.PathLike[str]) -> Types:
    """The types a labeling config declares: ``<Label value>`` of its ``<Labels>`` (entity
    types) and ``<Relation value>`` of its ``<Relations>`` (relation types, directed)."""
    try:
        root = ET.fromstring(Path(path).read_bytes())
    except (OSError, ET.ParseError) as e:
        raise FormatError(f"{path}: not a labeling config ({e})") from None
    entities: list[str] = []
    relations: list[RelationType] = []
    for labels in root.iter("Labels"):
        for label in labels.iter("Label"):
            name = label.get("value")
            if name and name not in entities:
                entities.append(name)
    for group in root.iter("Relations"):
        for relation in group.iter("Relation"):
            name = relation.get("value")
            if name and name not in {r.name for r in relations}:
                relations.append(RelationType(name))
    if not entities:
        raise FormatError(f"{path}: the labeling config declares no <Labels> with a <Label>")
    return Types(tuple(entities), tuple(relations))


def check_annotation_choice(annotation: str) -> str:
    """``annotation`` if it is a valid choice (see the module docstring), else a FormatError."""
    if annotation in ("first", "last", "prediction"):
        return annotation
    if annotation.startswith("annotator:") and annotation.removeprefix("annotator:"):
        return annotation
    raise FormatError(
        f"--annotation {annotation!r}: use first, last, prediction or annotator:<email or id>"
    )


def read_label_studio(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    report: ImportReport,
    annotation: str = "first",
) -> list[CharDocument]:
    """Documents of Label Studio JSON exports (files, folders or globs); see the module
    docstring for ``annotation`` and what is counted."""
    check_annotation_choice(annotation)
    return read_json_documents(
        paths,
        SUFFIXES,
        report,
        "task",
        lambda item, path: _TaskReader(item, path, report).read(annotation),
    )


class _TaskReader:
    """Reads one task; every report entry names the file, the task and the annotation id."""

    def __init__(self, item: JsonValue, path: Path, report: ImportReport) -> None:
        self.task = item.value
        self.item = item
        self.source = str(path)
        self.stem = path.stem
        self.report = report
        self.where = item.where

    def entry(
        self, kind: str, reason: str, annotation_id: Any = "", detail: str = "", type: str = ""
    ) -> ReportEntry:
        return ReportEntry(kind, reason, self.source, self.where, str(annotation_id), detail, type)

    def error(self, kind: str, reason: str, annotation_id: Any = "", detail: str = "") -> None:
        self.report.error(self.entry(kind, reason, annotation_id, detail))

    def read(self, annotation: str) -> CharDocument | None:
        task = self.task
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            self.error("task", "not a task", detail="a task must be an object with 'data'")
            return None
        if "id" in task:
            self.where = f"{self.item.where}, task {task['id']}"
        chosen = self.choose(task, annotation)
        if chosen is None:
            return None
        results = chosen.get("result", [])
        if not isinstance(results, list):
            self.error("task", "bad result", chosen.get("id", ""), "'result' must be a list")
            return None
        data = task["data"]
        raw_id = data.get(DOC_ID_FIELD, task.get("id"))
        doc_id = (
            str(raw_id) if isinstance(raw_id, (str, int)) else f"{self.stem}:{self.item.record}"
        )
        regions = [r for r in results if isinstance(r, dict) and r.get("type") == "labels"]
        key = self.text_field(data, regions[0].get("to_name") if regions else None, regions)
        if key is None:
            return None
        return self.document(doc_id, data, key, results)

    def choose(self, task: dict[str, Any], annotation: str) -> dict[str, Any] | None:
        """The annotation (or prediction) that becomes the document; the others reported."""
        kind = "prediction" if annotation == "prediction" else "annotation"
        if kind == "prediction":
            candidates = task.get("predictions")
        else:  # Label Studio before 1.0 called annotations "completions"
            candidates = task.get("annotations", task.get("completions"))
        if candidates is None:
            candidates = []
        if not isinstance(candidates, list):
            self.error("task", f"bad {kind}s", detail=f"'{kind}s' must be a list")
            return None
        eligible: list[dict[str, Any]] = []
        for candidate in candidates:
            self.report.count_read(kind)
            if _is_int(candidate) or isinstance(candidate, str):
                self.error(kind, "ids only", candidate, IDS_ONLY.format(kind=kind))
            elif not isinstance(candidate, dict):
                self.error(kind, "not an object", detail=f"an {kind} must be a JSON object")
            elif candidate.get("was_cancelled") is True:
                self.report.skip(self.entry(kind, "cancelled", candidate.get("id", "")))
            elif annotation.startswith("annotator:") and not _by(candidate, annotation[10:]):
                who = _annotator(candidate)
                entry = self.entry(kind, "other annotator", candidate.get("id", ""), f"by {who}")
                self.report.skip(entry)
            else:
                eligible.append(candidate)
        if not eligible:
            self.report.skip(self.entry("task", f"no {kind}", detail=f"--annotation {annotation}"))
            return None
        chosen = eligible[-1] if annotation == "last" else eligible[0]
        self.report.count_imported(kind)
        for other in eligible:
            if other is not chosen:
                detail = f"--annotation {annotation} chose {chosen.get('id', 'another')}"
                self.report.skip(self.entry(kind, "not chosen", other.get("id", ""), detail))
        return chosen

    def text_field(
        self, data: dict[str, Any], to_name: Any, regions: list[dict[str, Any]]
    ) -> str | None:
        """The ``data`` field holding the text (see the module docstring)."""
        if isinstance(to_name, str) and isinstance(data.get(to_name), str):
            return to_name
        fields = [k for k, v in data.items() if isinstance(v, str) and k != DOC_ID_FIELD]
        if "text" in fields:
            return "text"
        if len(fields) == 1:
            return fields[0]
        for key in fields:  # several text fields: the one the regions' texts come from
            values = [r.get("value") for r in regions if isinstance(r.get("value"), dict)]
            if values and all(_slice_matches(data[key], v) for v in values):
                return key
        self.error(
            "task", "no text", detail=f"cannot tell which 'data' field is the text: {fields}"
        )
        return None

    def document(
        self, doc_id: str, data: dict[str, Any], key: str, results: list[Any]
    ) -> CharDocument:
        text: str = data[key]
        entities: list[CharEntity] = []
        region_entity: dict[str, str | None] = {}  # region id -> its first entity id (or None)
        region_span: dict[str, Any] = {}  # region id -> its offsets (two results, one region)
        ambiguous: set[str] = set()  # ids of two regions with different offsets
        taken: set[str] = set()
        relations_raw: list[tuple[int, dict[str, Any]]] = []
        for index, result in enumerate(results):
            kind = result.get("type") if isinstance(result, dict) else None
            if kind == "labels":
                region_id = str(result.get("id", f"result{index}"))
                value = result.get("value")
                span = (value.get("start"), value.get("end")) if isinstance(value, dict) else None
                if region_span.setdefault(region_id, span) != span:
                    self.duplicate_region(result, region_id, region_span[region_id])
                    ambiguous.add(region_id)
                    continue
                new = self.entities(result, region_id, text, key, taken)
                entities.extend(new)
                if region_id not in region_entity or region_entity[region_id] is None:
                    region_entity[region_id] = new[0].id if new else None
            elif kind == "relation":
                relations_raw.append((index, result))
            else:
                name = kind if isinstance(kind, str) and kind else "result"
                self.report.count_read(name)
                region_id = result.get("id", index) if isinstance(result, dict) else index
                self.report.skip(self.entry(name, "not modelled", region_id))
        relations: list[CharRelation] = []
        relation_ids: set[str] = set()
        for index, result in relations_raw:
            relations.extend(self.relations(result, index, region_entity, relation_ids, ambiguous))
        return CharDocument(doc_id, text, entities, relations, self.source)

    def duplicate_region(self, result: dict[str, Any], region_id: str, first: Any) -> None:
        """A second region with the id of another one, at other offsets: not imported (an
        error); relations naming the id are not imported either (which region is meant?)."""
        labels = result["value"].get("labels") if isinstance(result["value"], dict) else None
        n = len(labels) if isinstance(labels, list) and labels else 1
        self.report.count_read("entity", n)
        detail = f"another region with id {region_id} has offsets {first}"
        for _ in range(n):
            self.error("entity", "duplicate region id", region_id, detail)

    def entities(
        self, result: dict[str, Any], region_id: str, text: str, key: str, taken: set[str]
    ) -> list[CharEntity]:
        value = result.get("value")
        labels = value.get("labels") if isinstance(value, dict) else None
        if not isinstance(labels, list) or not labels:
            self.report.count_read("entity")
            if not isinstance(value, dict) or labels is not None and not isinstance(labels, list):
                self.error("entity", "bad value", region_id, "'value.labels' must be a list")
            else:
                self.report.skip(self.entry("entity", "no label", region_id))
            return []
        self.report.count_read("entity", len(labels))
        to_name = result.get("to_name")
        if (
            isinstance(to_name, str)
            and to_name != key
            and isinstance(self.task["data"].get(to_name), str)
        ):
            for label in labels:
                entry = self.entry("entity", "other text field", region_id, to_name, str(label))
                self.report.skip(entry)
            return []
        span = self.span(value, region_id, text)
        if span is None:
            for _ in labels[1:]:  # the error counted one of them
                self.report.skip(self.entry("entity", "error", region_id, "bad offsets"))
            return []
        score = optional_score(result.get("score"))
        entities = []
        for label in labels:
            if not isinstance(label, str) or not label:
                self.error("entity", "bad label", region_id, f"label {label!r} is not a name")
                continue
            entity_id = _unique(
                region_id if region_id not in taken else f"{region_id}:{label}", taken
            )
            entities.append(CharEntity(entity_id, label, span[0], span[1], score))
        return entities

    def span(self, value: dict[str, Any], region_id: str, text: str) -> tuple[int, int] | None:
        """The region's code point offsets, checked against the text (and ``value.text``)."""
        start, end = value.get("start"), value.get("end")
        if not (_is_int(start) and _is_int(end)):
            self.error(
                "entity", "bad offsets", region_id, f"start/end {start!r}-{end!r} are not numbers"
            )
            return None
        surface = value.get("text")
        if isinstance(surface, str) and text[start:end] != surface:
            converted = _from_utf16(text, start, end)
            if converted is not None and text[converted[0] : converted[1]] == surface:
                return converted
            self.error(
                "entity",
                "text mismatch",
                region_id,
                f"text[{start}:{end}] is {text[start:end]!r}, the region says {surface!r}",
            )
            return None
        if not 0 <= start < end <= len(text):
            self.error(
                "entity",
                "bad offsets",
                region_id,
                f"offsets {start}-{end} are not a span of the text ({len(text)} characters)",
            )
            return None
        if surface is None and _outside_bmp(text):
            detail = (
                "the text has characters outside the BMP (emoji, ...) and the region no "
                "'value.text' to check its offsets against: offsets in UTF-16 units, as older "
                "Label Studio versions wrote them, would shift this span"
            )
            self.report.flag(self.entry("entity", "offsets unchecked", region_id, detail))
        return start, end

    def relations(
        self,
        result: dict[str, Any],
        index: int,
        region_entity: dict[str, str | None],
        taken: set[str],
        ambiguous: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> list[CharRelation]:
        labels = result.get("labels") or [UNLABELED_RELATION]
        base = str(result.get("id", f"{result.get('from_id')}>{result.get('to_id')}"))
        if not isinstance(labels, list):
            self.report.count_read("relation")
            self.error("relation", "bad labels", base, "'labels' must be a list")
            return []
        self.report.count_read("relation", len(labels))
        direction = result.get("direction", "right")
        ends = [result.get("from_id"), result.get("to_id")]
        problem: tuple[str, str] | None = None
        if direction not in DIRECTIONS:
            problem = ("bad direction", f"direction {direction!r} is not one of {DIRECTIONS}")
        elif not all(isinstance(e, str) for e in ends):
            problem = ("no entity ids", "fields 'from_id' and 'to_id' are needed")
        else:
            unknown = [e for e in ends if e not in region_entity]
            if unknown:
                problem = ("missing entity", f"no region with id {unknown[0]}")
        if problem is not None:
            for _ in labels:
                self.error("relation", problem[0], base, problem[1])
            return []
        if any(e in ambiguous for e in ends):
            detail = f"two regions have the id {next(e for e in ends if e in ambiguous)}"
            for label in labels:
                entry = self.entry("relation", "ambiguous region id", base, detail, str(label))
                self.report.skip(entry)
            return []
        head, tail = (region_entity[e] for e in ends)
        if head is None or tail is None:
            for label in labels:
                entry = self.entry("relation", "entity not imported", base, type=str(label))
                self.report.skip(entry)
            return []
        if direction == "left":
            head, tail = tail, head
        score = optional_score(result.get("score"))
        relations = []
        for label in labels:
            if not isinstance(label, str) or not label:
                self.error("relation", "bad label", base, f"label {label!r} is not a name")
                continue
            relation_id = _unique(base if len(labels) == 1 else f"{base}:{label}", taken)
            relations.append(CharRelation(relation_id, label, head, tail, direction == "bi", score))
        return relations


def _annotator(annotation: dict[str, Any]) -> str:
    """Who made ``annotation``, as ``--annotation annotator:`` takes it (email, else id)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("id"))
    return str(who)


def _by(annotation: dict[str, Any], annotator: str) -> bool:
    """Whether ``annotation`` was made by ``annotator`` (user id or email)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return annotator in (str(who.get("id")), who.get("email"))
    return who is not None and str(who) == annotator


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}#{n}"
    taken.add(candidate)
    return candidate


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _slice_matches(text: str, value: dict[str, Any]) -> bool:
    start, end, surface = value.get("start"), value.get("end"), value.get("text")
    return _is_int(start) and _is_int(end) and (surface is None or text[start:end] == surface)


def _outside_bmp(text: str) -> bool:
    return any(ord(c) >= 0x10000 for c in text)


def _from_utf16(text: str, start: int, end: int) -> tuple[int, int] | None:
    """UTF-16 code unit offsets (JavaScript string indices) as code point offsets, when the
    text has characters outside the Basic Multilingual Plane and the offsets fall between
    characters; else None."""
    if not _outside_bmp(text):
        return None
    to_code_point: dict[int, int] = {}
    units = 0
    for i, c in enumerate(text):
        to_code_point[units] = i
        units += 2 if ord(c) >= 0x10000 else 1
    to_code_point[units] = len(text)
    if start in to_code_point and end in to_code_point and start < end:
        return to_code_point[start], to_code_point[end]
    return None


# -- writing -------------------------------------------------------------------------------
def label_studio_results(
    document: CharDocument, labels_name: str = LABELS_NAME, text_name: str = TEXT_NAME
) -> list[dict[str, Any]]:
    """The regions (``labels``) and relations of ``document`` as Label Studio results, for the
    ``<Labels name=labels_name toName=text_name>`` tag of a labeling config."""
    text = document.text
    result: list[dict[str, Any]] = []
    for entity in document.entities:
        region: dict[str, Any] = {
            "id": entity.id,
            "from_name": labels_name,
            "to_name": text_name,
            "type": "labels",
            "value": {
                "start": entity.start,
                "end": entity.end,
                "text": text[entity.start : entity.end],
                "labels": [entity.type],
            },
        }
        if entity.score is not None:
            region["score"] = entity.score
        result.append(region)
    for relation in document.relations:
        item: dict[str, Any] = {
            "id": relation.id,
            "from_id": relation.head,
            "to_id": relation.tail,
            "type": "relation",
            "direction": "bi" if relation.symmetric else "right",
            "labels": [relation.type],
        }
        if relation.score is not None:
            item["score"] = relation.score
        result.append(item)
    return result


def label_studio_task(document: CharDocument, model_version: str | None = None) -> dict[str, Any]:
    """One document as a Label Studio task: predictions with ``model_version``, else
    annotations (see the module docstring)."""
    result = label_studio_results(document)
    task: dict[str, Any] = {"data": {TEXT_NAME: document.text, DOC_ID_FIELD: document.id}}
    if model_version is None:
        task["annotations"] = [{"result": result}]
    else:
        prediction: dict[str, Any] = {"model_version": model_version, "result": result}
        scores = [r["score"] for r in result if "score" in r]
        if scores:
            prediction["score"] = sum(scores) / len(scores)
        task["predictions"] = [prediction]
    return task


def label_studio_task_json(document: CharDocument, model_version: str | None = None) -> str:
    """:func:`label_studio_task` as one line of JSON."""
    return json.dumps(label_studio_task(document, model_version), ensure_ascii=False)


def label_config(types: Types) -> str:
    """The labeling config (XML) for the tasks written here: the entity types as ``Labels``,
    the relation types as ``Relations``, over the ``text`` field."""
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(label_color(i))}/>"
        for i, name in enumerate(types.entities)
    )
    relations = "\n".join(
        f"    <Relation value={quoteattr(name)}/>" for name in types.relation_names
    )
    return (
        "<View>\n"
        f"  <Relations>\n{relations}\n  </Relations>\n"
        f'  <Labels name="{LABELS_NAME}" toName="{TEXT_NAME}">\n{labels}\n  </Labels>\n'
        f'  <Text name="{TEXT_NAME}" value="${TEXT_NAME}"/>\n'
        "</View>\n"
    )


def label_config_path(path: str | os.PathLike[str]) -> Path:
    """Where the labeling config of the tasks file ``path`` goes: ``<stem>.label_config.xml``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.label_config.xml")


def types_of(documents: Iterable[CharDocument]) -> Types:
    """The entity and relation types used in ``documents`` (symmetric if any is), sorted."""
    entity_types: set[str] = set()
    relation_types: dict[str, bool] = {}
    for document in documents:
        entity_types.update(e.type for e in document.entities)
        for r in document.relations:
            relation_types[r.type] = relation_types.get(r.type, False) or r.symmetric
    return Types(
        tuple(sorted(entity_types)),
        tuple(RelationType(name, relation_types[name]) for name in sorted(relation_types)),
    )


def write_label_studio(
    documents: Iterable[CharDocument],
    path: str | os.PathLike[str],
    types: Types | None = None,
    model_version: str | None = None,
) -> Path:
    """Write ``documents`` as Label Studio tasks (a JSON list, atomically) and their labeling
    config beside them; ``types`` gives the labels (default: those the documents use)."""
    documents = list(documents) if types is None else documents
    out = AtomicFile(path)
    try:
        separator = "["
        for document in documents:
            out.file.write(f"{separator}\n{label_studio_task_json(document, model_version)}")
            separator = ","
        out.file.write("[]\n" if separator == "[" else "\n]\n")
        out.commit()
    except BaseException:
        out.discard()
        raise
    config_types = types if types is not None else types_of(documents)  # type: ignore[arg-type]
    atomic_write_text(label_config_path(path), label_config(config_types))
    return Path(path)
