"""brat standoff: ``.txt`` + ``.ann`` per document, types in ``annotation.conf``.

Reading (:func:`read_brat`):

* ``T`` lines are entities; a ``T`` line with several fragments (``400 436;437 453``) is a
  discontinuous entity, imported as the span covering its fragments (flagged) or, with
  ``discontinuous="drop"``, not imported. A ``T`` line that is an event trigger (the trigger of
  an ``E`` line, or of a type listed under ``[events]``) is not an entity: counted, not imported.
* ``R`` lines are relations (first argument = head, second = tail); a relation type marked
  ``<REL-TYPE>:symmetric`` (or ``symmetric-transitive``) in ``annotation.conf`` is symmetric.
* ``*`` lines (equivalence groups of two or more members) become one symmetric relation between
  every pair of members, counted as relations of the line.
* Events (``E``), attributes (``A``, ``M``), notes (``#``) and normalizations (``N``) are not
  modelled: counted, not imported. A note ``score=0.93`` on a ``T`` or ``R`` line (what
  :func:`write_brat` writes for predictions) is read back as that annotation's score instead.
* Malformed input is a :class:`~spert.data.formats.report.FormatError` naming file, line and
  annotation id: an offset beyond the text, surface text different from the ``.txt`` slice, an
  argument id that is not in the file, an ``.ann`` without its ``.txt``, an id used twice.
  A ``.txt`` without ``.ann`` (a README) is not a document: reported as a "file" not imported.

Offsets are code points into the ``.txt`` file as it is on disk (line ends are not translated).
Types come from the ``annotation.conf`` in each document's folder when there is one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Literal

from spert.data.dataset import DataError, RelationType, Types
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.inputs import expand_inputs
from spert.data.formats.report import FormatError, ImportReport, ReportEntry
from spert.utils import atomic_replace_dir, recover_replaced_dir

#: What a discontinuous entity becomes: the span covering its fragments, or nothing.
Discontinuous = Literal["span", "drop"]

CONF_NAME = "annotation.conf"
#: The files of a brat document (NAME.txt + NAME.ann).
DOCUMENT_SUFFIXES = (".txt", ".ann")
BOM = "\ufeff"
_SCORE_NOTE = re.compile(r"^score=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")
_SAFE_NAME = re.compile(r"[^\w.-]+")  # letters and digits of any script are kept
_BRAT_TYPE = re.compile(r"^[^\s:;,|<>=!#]+$")
#: Relation names in annotation.conf that configure brat, not relation types.
_CONF_PSEUDO_RELATIONS = frozenset({"ENTITY-NESTING", "<OVERLAP>"})
#: Line ends of an ``.ann`` file (brat reads it in universal newline mode: not ``str.splitlines``,
#: which also ends lines at form feeds or U+2028 a surface text may hold).
_ANN_LINE_END = re.compile(r"\r\n|\r|\n")
_NOT_MODELLED = {"E": "event", "A": "attribute", "M": "attribute", "N": "normalization"}


@dataclass
class BratConf:
    """The parts of ``annotation.conf`` the importer uses."""

    entities: list[str] = field(default_factory=list)
    relations: list[RelationType] = field(default_factory=list)
    events: set[str] = field(default_factory=set)

    def merge(self, other: BratConf) -> None:
        for name in other.entities:
            if name not in self.entities:
                self.entities.append(name)
        known = {r.name for r in self.relations}
        self.relations.extend(r for r in other.relations if r.name not in known)
        self.events |= other.events

    def types(self) -> Types | None:
        """The declared types, or None when no entity type is declared."""
        return Types(tuple(self.entities), tuple(self.relations)) if self.entities else None


def read_conf(path: Path) -> BratConf:
    """Entity, relation (with symmetry) and event types of one ``annotation.conf``."""
    conf = BratConf()
    section = ""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}, byte {e.start}: not UTF-8 text") from None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        name = line.split(None, 1)[0]
        if "=" in name and name.startswith("<"):  # macro definition, e.g. <POG>=Person|GPE
            continue
        abstract = name.startswith("!")  # hierarchy only, cannot be annotated
        name = name.lstrip("!")
        if section == "entities" and not abstract and name not in conf.entities:
            conf.entities.append(name)
        elif section == "relations" and name not in _CONF_PSEUDO_RELATIONS:
            if name not in {r.name for r in conf.relations}:
                rest = line.split(None, 1)[1:]  # the argument spec, after spaces or a tab
                specs = [s.strip() for s in rest[0].split(",")] if rest else []
                symmetric = any(
                    s.startswith("<REL-TYPE>:") and "symmetric" in s.split(":", 1)[1] for s in specs
                )
                conf.relations.append(RelationType(name, symmetric))
        elif section == "events":
            conf.events.add(name)
    return conf


#: Reports a malformed line: (annotation kind, line, reason).
_LineError = Callable[[str, "_Line", str], None]


@dataclass
class _Line:
    """One parsed ``.ann`` line."""

    number: int
    ident: str
    fields: list[str]  # the tab-separated fields after the id


def _documents_of(paths: Sequence[Path]) -> list[tuple[Path, Path | None, Path | None]]:
    """(path without suffix, txt, ann) per document, in order of first appearance; a file
    named alone (e.g. by a glob ``*.ann``) is paired with its partner beside it."""
    pairs: dict[Path, list[Path | None]] = {}
    for path in paths:
        if path.suffix not in (".txt", ".ann"):
            continue
        pair = pairs.setdefault(path.with_suffix(""), [None, None])
        pair[0 if path.suffix == ".txt" else 1] = path
    for stem, pair in pairs.items():
        for i, suffix in enumerate((".txt", ".ann")):
            partner = stem.parent / (stem.name + suffix)  # names may hold dots
            if pair[i] is None and partner.is_file():
                pair[i] = partner
    return [(stem, txt, ann) for stem, (txt, ann) in pairs.items()]


def _document_ids(stems: list[Path]) -> list[str]:
    """File names without suffix; relative paths where two folders hold the same name."""
    names = [s.name for s in stems]
    if len(set(names)) == len(names):
        return names
    root = Path(os.path.commonpath([str(s.parent.resolve()) for s in stems]))
    return [s.resolve().relative_to(root).as_posix() for s in stems]


def read_brat(
    inputs: Iterable[str | os.PathLike[str]],
    report: ImportReport,
    discontinuous: Discontinuous = "span",
    skip_empty: bool = False,
) -> tuple[list[CharDocument], Types | None]:
    """The documents of brat ``.txt`` + ``.ann`` files (files, folders or globs) and the types
    declared in their ``annotation.conf`` files (None when there is none); see the module
    docstring for what is read and what is counted. A document whose ``.ann`` holds no
    annotation is flagged ("no annotation": never annotated, or nothing to annotate?), or with
    ``skip_empty`` not imported."""
    if discontinuous not in ("span", "drop"):
        raise ValueError(f"discontinuous must be 'span' or 'drop', got {discontinuous!r}")
    paths = expand_inputs(inputs, (".txt", ".ann"))
    pairs = _documents_of(paths)
    conf = BratConf()
    conf_dirs: set[Path] = set()
    for stem, _, _ in pairs:
        folder = stem.parent
        if folder.resolve() not in conf_dirs:
            conf_dirs.add(folder.resolve())
            if (folder / CONF_NAME).is_file():
                conf.merge(read_conf(folder / CONF_NAME))
    symmetric = {r.name for r in conf.relations if r.symmetric}
    ids = _document_ids([stem for stem, _, _ in pairs])
    documents = []
    for (_, txt, ann), doc_id in zip(pairs, ids):
        if ann is None:  # a README.txt, say: no annotation of it to lose
            report.count_read("file")
            detail = "a .txt without annotations is not read as a document"
            report.skip(ReportEntry("file", "no .ann beside it", str(txt), "file", "", detail))
            continue
        report.count_read("document")
        if txt is None:
            report.error(ReportEntry("document", "no .txt file beside it", str(ann), "file", ""))
            continue
        text = _read_text(txt, doc_id, report)
        ann_content = _read_text(ann, doc_id, report) if text is not None else None
        if text is None or ann_content is None:
            continue
        if text.startswith(BOM):  # brat counts it as a character: keep the offsets, not the BOM
            text = " " + text[1:]
            detail = "the .txt starts with a byte order mark, read as a space"
            report.flag(
                ReportEntry("document", "byte order mark", str(txt), "file", doc_id, detail)
            )
        if not ann_content.lstrip(BOM).strip():
            entry = ReportEntry("document", "no annotation", str(ann), "file", doc_id)
            if skip_empty:
                report.skip(dataclasses.replace(entry, reason="no annotation (--skip-empty)"))
                continue
            report.flag(entry)
        document = _read_ann(
            ann, ann_content, doc_id, text, report, discontinuous, symmetric, conf.events
        )
        documents.append(document)
        report.count_imported("document")  # its annotations are counted one by one
    return documents, conf.types()


def _read_text(path: Path, doc_id: str, report: ImportReport) -> str | None:
    """The file's text, line ends as they are (offsets count "\\r\\n" as two characters); None,
    reported as a "document" error, if it is not UTF-8 (lenient; else the error raises)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        where = f"byte {e.start}"
        report.error(ReportEntry("document", "not UTF-8 text", str(path), where, doc_id))
        return None


def _read_ann(
    path: Path,
    ann: str,
    doc_id: str,
    text: str,
    report: ImportReport,
    discontinuous: Discontinuous,
    symmetric: set[str],
    event_types: set[str],
) -> CharDocument:
    source = str(path)
    lines: list[_Line] = []
    for number, raw in enumerate(_ANN_LINE_END.split(ann.removeprefix(BOM)), 1):
        if not raw.strip():
            continue
        ident, *fields = raw.split("\t")
        lines.append(_Line(number, ident.strip(), fields))

    def error(kind: str, line: _Line, reason: str) -> None:
        report.error(ReportEntry(kind, reason, source, f"line {line.number}", line.ident))

    def skip(kind: str, line: _Line, reason: str, detail: str = "") -> None:
        report.skip(ReportEntry(kind, reason, source, f"line {line.number}", line.ident, detail))

    # Event triggers, scores and ids first: R, E and * lines may come before the T they name.
    triggers: set[str] = set()
    scores: dict[str, float] = {}
    known_ids: set[str] = set()
    for line in lines:
        if line.ident.startswith("E") and line.fields and line.fields[0].split():
            triggers.add(line.fields[0].split()[0].partition(":")[2])  # "Type:T3 Theme:T1"
        elif line.ident.startswith("#") and len(line.fields) >= 2:
            match = _SCORE_NOTE.match(line.fields[1].strip())
            target = line.fields[0].split()[-1] if line.fields[0].split() else ""
            if match and target[:1] in ("T", "R"):
                scores[target] = float(match.group(1))
                line.ident = ""  # consumed: not a note
        if line.ident[:1] in ("T", "R", "E", "A", "M", "N", "#"):
            known_ids.add(line.ident)

    entities: dict[str, CharEntity] = {}
    entity_ids: set[str] = set()  # every T id read, imported or not (relations may name it)
    relation_ids: set[str] = set()
    relations: list[CharRelation] = []
    relation_lines: list[_Line] = []
    for line in lines:
        kind = line.ident[:1]
        if not line.ident:
            continue
        if kind == "T":
            report.count_read("entity")
            if line.ident in entity_ids:
                error("entity", line, "id used twice")
                continue
            entity_ids.add(line.ident)
            entity = _parse_entity(line, text, error)
            if entity is None:
                continue
            etype, fragments = entity
            if line.ident in triggers or etype in event_types:
                skip("entity", line, "event trigger", etype)
                continue
            start, end = fragments[0][0], fragments[-1][1]
            if len(fragments) > 1:
                spans = ";".join(f"{a} {b}" for a, b in fragments)
                if discontinuous == "drop":
                    skip("entity", line, "discontinuous", spans)
                    continue
                start, end = min(a for a, _ in fragments), max(b for _, b in fragments)
                report.flag(
                    ReportEntry(
                        "entity",
                        "discontinuous, imported as covering span",
                        source,
                        f"line {line.number}",
                        line.ident,
                        spans,
                    )
                )
            entities[line.ident] = CharEntity(line.ident, etype, start, end, scores.get(line.ident))
        elif kind in ("R", "*"):
            relation_lines.append(line)
        elif kind in _NOT_MODELLED or kind == "#":
            what = _NOT_MODELLED.get(kind, "note")
            report.count_read(what)
            skip(what, line, "not modelled")
        else:
            report.count_read("line")
            error("line", line, f"unknown annotation kind {line.ident!r}")

    for line in relation_lines:
        if line.ident.startswith("R") and line.ident in relation_ids:
            report.count_read("relation")
            error("relation", line, "id used twice")
        elif line.ident.startswith("R"):
            relation_ids.add(line.ident)
            relations.extend(
                _parse_relation(
                    line, entities, entity_ids, known_ids, symmetric, scores, report, source
                )
            )
        else:
            relations.extend(
                _parse_equivalence(line, entities, entity_ids, known_ids, report, source)
            )
    return CharDocument(doc_id, text, list(entities.values()), relations, source)


def _parse_entity(
    line: _Line, text: str, report_error: _LineError
) -> tuple[str, list[tuple[int, int]]] | None:
    """Type and fragments of a ``T`` line, checked against the text; None after an error."""
    if not line.fields or len(line.fields[0].split(None, 1)) < 2:
        report_error("entity", line, "expected 'T<id>\\t<type> <start> <end>\\t<text>'")
        return None
    etype, spans = line.fields[0].split(None, 1)
    fragments: list[tuple[int, int]] = []
    for piece in spans.split(";"):
        parts = piece.split()
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
            report_error(
                "entity", line, f"offsets {spans!r} are not '<start> <end>[;<start> <end>...]'"
            )
            return None
        # More digits than the text's length has is outside it (and int() refuses 5,000 digits).
        too_long = any(len(p.lstrip("0")) > len(str(len(text))) for p in parts)
        start, end = (len(text) + 1, len(text) + 2) if too_long else (int(parts[0]), int(parts[1]))
        if not start < end <= len(text):
            shown = f"{start} {end}" if not too_long else f"{parts[0][:12]}... {parts[1][:12]}"
            report_error(
                "entity",
                line,
                f"offsets {shown} outside the text ({len(text)} characters) or empty",
            )
            return None
        fragments.append((start, end))
    if len(line.fields) >= 2:
        surface = line.fields[1]
        expected = " ".join(text[a:b] for a, b in fragments)
        if surface != expected and _one_line(surface) != _one_line(expected):
            report_error(
                "entity", line, f"text {surface!r} differs from the .txt slice {expected!r}"
            )
            return None
    return etype, fragments


def _one_line(text: str) -> str:
    """Whitespace as brat writes it on one ``.ann`` line: every whitespace character a space."""
    return re.sub(r"\s", " ", text)


def _arguments(
    names: Sequence[str],
    line: _Line,
    entities: dict[str, CharEntity],
    entity_ids: set[str],
    known_ids: set[str],
    report: ImportReport,
    source: str,
) -> bool:
    """Whether every argument id is an imported entity. Else one entry for the relation, so
    that the totals reconcile: an error for an id that is not in the file (malformed input
    first), or a skip for an argument not imported or not an entity."""
    where = f"line {line.number}"
    for name in names:
        if name not in entity_ids and name not in known_ids:
            reason = f"argument {name!r} is not in the file"
            report.error(ReportEntry("relation", reason, source, where, line.ident))
            return False
    for name in names:
        if name not in entities:
            reason = "argument not imported" if name in entity_ids else "argument is not an entity"
            report.skip(ReportEntry("relation", reason, source, where, line.ident, name))
            return False
    return True


def _parse_relation(
    line: _Line,
    entities: dict[str, CharEntity],
    entity_ids: set[str],
    known_ids: set[str],
    symmetric: set[str],
    scores: dict[str, float],
    report: ImportReport,
    source: str,
) -> list[CharRelation]:
    report.count_read("relation")
    parts = line.fields[0].split() if line.fields else []
    args = [p.partition(":")[2] for p in parts[1:]]
    if len(parts) != 3 or not all(args):
        report.error(
            ReportEntry(
                "relation",
                "expected 'R<id>\\t<type> Arg1:<id> Arg2:<id>'",
                source,
                f"line {line.number}",
                line.ident,
            )
        )
        return []
    if not _arguments(args, line, entities, entity_ids, known_ids, report, source):
        return []
    head, tail = args
    rtype = parts[0]
    return [CharRelation(line.ident, rtype, head, tail, rtype in symmetric, scores.get(line.ident))]


def _parse_equivalence(
    line: _Line,
    entities: dict[str, CharEntity],
    entity_ids: set[str],
    known_ids: set[str],
    report: ImportReport,
    source: str,
) -> list[CharRelation]:
    """A ``*`` line: a symmetric relation between every pair of its members."""
    parts = line.fields[0].split() if line.fields else []
    members = parts[1:]
    pairs = list(combinations(members, 2))
    ident = f"*{line.number}"
    report.count_read("relation", max(len(pairs), 1))
    if len(members) < 2:
        report.error(
            ReportEntry(
                "relation",
                "an equivalence needs a type and two or more members",
                source,
                f"line {line.number}",
                ident,
            )
        )
        return []
    out = []
    for a, b in pairs:
        pair_line = _Line(line.number, f"{ident}:{a}-{b}", line.fields)
        if _arguments((a, b), pair_line, entities, entity_ids, known_ids, report, source):
            out.append(CharRelation(pair_line.ident, parts[0], a, b, True))
    return out


# -- writing -----------------------------------------------------------------------------------


def _check_type(name: str, what: str) -> str:
    if not _BRAT_TYPE.match(name):
        raise FormatError(
            f"{what} type {name!r} cannot be written to brat: brat type names cannot contain "
            "whitespace or any of : ; , | < > = ! #"
        )
    return name


def conf_text(types: Types) -> str:
    """An ``annotation.conf`` declaring ``types``: symmetric relations marked, any entity type
    allowed as either argument."""
    entities = [_check_type(e, "entity") for e in types.entities]
    any_entity = "|".join(entities)
    lines = ["# Written by spert: the entity and relation types of a model or dataset.", ""]
    lines += ["[entities]", "", *entities, "", "[relations]", ""]
    for r in types.relations:
        spec = f"Arg1:{any_entity}, Arg2:{any_entity}"
        if r.symmetric:
            spec += ", <REL-TYPE>:symmetric"
        lines.append(f"{_check_type(r.name, 'relation')}\t{spec}")
    lines += ["", "[events]", "", "[attributes]", ""]
    return "\n".join(lines)


def _file_names(documents: Sequence[CharDocument]) -> list[str]:
    """A safe, unique file name (without suffix) per document, from its id."""
    names: list[str] = []
    used: set[str] = set()
    for i, doc in enumerate(documents):
        name = _SAFE_NAME.sub("_", doc.id).strip("._") or f"document-{i:06d}"
        candidate, n = name, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{name}-{n}"
        used.add(candidate.lower())
        names.append(candidate)
    return names


def _renumber(ids: Sequence[str], prefix: str) -> dict[str, str]:
    """Keep ids that are valid and unique brat ids (``T12``), number the others after them."""
    valid = re.compile(rf"^{prefix}[0-9]+$")
    out: dict[str, str] = {}
    taken = {i for i in ids if valid.match(i)}
    if len(taken) == len(ids) == len(set(ids)):
        return {i: i for i in ids}
    used: set[str] = set()
    next_number = 1
    for ident in ids:
        if valid.match(ident) and ident not in used:
            out[ident] = ident
        else:
            while f"{prefix}{next_number}" in taken or f"{prefix}{next_number}" in used:
                next_number += 1
            out[ident] = f"{prefix}{next_number}"
        used.add(out[ident])
    return out


def ann_text(document: CharDocument) -> str:
    """The ``.ann`` content of one document; scores go to ``score=...`` notes."""
    entity_ids = _renumber([e.id for e in document.entities], "T")
    relation_ids = _renumber([r.id for r in document.relations], "R")
    lines: list[str] = []
    notes: list[tuple[str, float]] = []
    for e in document.entities:
        surface = _one_line(document.text[e.start : e.end])
        ident = entity_ids[e.id]
        lines.append(f"{ident}\t{_check_type(e.type, 'entity')} {e.start} {e.end}\t{surface}")
        if e.score is not None:
            notes.append((ident, e.score))
    for r in document.relations:
        if r.head not in entity_ids or r.tail not in entity_ids:
            raise FormatError(
                f"document {document.id!r}, relation {r.id!r}: head {r.head!r} or tail "
                f"{r.tail!r} is not an entity of the document"
            )
        ident = relation_ids[r.id]
        rtype = _check_type(r.type, "relation")
        lines.append(f"{ident}\t{rtype} Arg1:{entity_ids[r.head]} Arg2:{entity_ids[r.tail]}")
        if r.score is not None:
            notes.append((ident, r.score))
    for n, (ident, score) in enumerate(notes, 1):
        lines.append(f"#{n}\tAnnotatorNotes {ident}\tscore={float(score)!r}")
    return "".join(line + "\n" for line in lines)


def write_brat(
    documents: Iterable[CharDocument],
    out_dir: str | os.PathLike[str],
    types: Types,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``NAME.txt`` + ``NAME.ann`` per document (NAME from its id, made safe and unique)
    and an ``annotation.conf`` declaring ``types`` as the folder ``out_dir``, swapped in whole
    at the end (:func:`spert.utils.atomic_replace_dir`: an interrupted or failed write leaves
    the folder as it was). Annotation ids that are valid brat ids are kept; scores become
    ``score=...`` notes. Other files of an existing folder (brat's ``visual.conf``, ...) are
    kept; documents other than these are never mixed in: a :class:`DataError` unless
    ``overwrite`` (then they are removed). Returns the ``.ann`` paths."""
    out = Path(out_dir)
    check_output_folder(out)
    documents = list(documents)
    names = _file_names(documents)
    conf = conf_text(types)
    recover_replaced_dir(out)
    kept: list[Path] = []
    if out.is_dir():
        ours = {f"{n}{suffix}" for n in names for suffix in (".txt", ".ann")} | {CONF_NAME}
        others = sorted(p.name for p in out.iterdir() if p.name not in ours)
        foreign = [n for n in others if n.endswith(DOCUMENT_SUFFIXES)]
        if foreign and not overwrite:
            raise DataError(
                f"{out}: holds other documents ({_listed(foreign)}); they would be mixed with "
                "these: write to another folder, or replace it (spert export --overwrite)"
            )
        kept = [out / n for n in others if n not in foreign]

    def fill(tmp: Path) -> None:
        (tmp / CONF_NAME).write_text(conf, encoding="utf-8", newline="")
        for doc, name in zip(documents, names):
            (tmp / f"{name}.ann").write_text(ann_text(doc), encoding="utf-8", newline="")
            (tmp / f"{name}.txt").write_text(doc.text, encoding="utf-8", newline="")
        for path in kept:
            copy = shutil.copytree if path.is_dir() else shutil.copy2
            copy(path, tmp / path.name)

    atomic_replace_dir(out, fill)
    return [out / f"{name}.ann" for name in names]


def check_new_output_folder(path: Path) -> None:
    """A :class:`DataError` when ``path`` cannot be a folder, or holds brat documents already:
    the check of a writer that knows its documents' names only at the end, made before the
    work that produces them (``--overwrite`` skips the second part)."""
    check_output_folder(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.name.endswith(DOCUMENT_SUFFIXES))
        if found:
            raise DataError(
                f"{path}: holds documents already ({_listed(found)}): write to another folder, "
                "or replace them (--overwrite)"
            )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_output_folder(path: Path) -> None:
    """A :class:`DataError` when ``path`` cannot be a folder: it is a file, or lies below one."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == path else f"lies under the file {part}"
            raise DataError(f"{path}: not a folder ({where})")
