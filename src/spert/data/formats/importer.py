"""``spert import`` and ``spert export``: annotation-tool files to a SpERT dataset folder and back.

An import reads documents with the format's reader (:data:`READERS`), splits them *by document*
(``split`` fractions and ``seed``, or train/dev/test inputs kept as given), turns them into
SpERT sentences on the one shared path (:func:`~spert.data.formats.segment.documents_to_sentences`)
and writes, each file atomically::

    DIR/train.json, DIR/dev.json, DIR/test.json   SpERT JSON, with doc_id and word offsets
    DIR/types.json                                 entity and relation types (symmetry included)
    DIR/documents.jsonl                            id, split, source file and text per document
    DIR/import_report.json, DIR/import_report.md   what was imported, what not and why

An export (:func:`export_dataset`) turns SpERT sentences back into documents
(:func:`~spert.data.formats.segment.sentences_to_documents`, with the texts of
``documents.jsonl`` when it lies beside the data) and writes them with the format's writer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spert.config import ModelConfig, SpertConfig
from spert.data.dataset import DataError, RelationType, Sentence, Types, read_dataset, write_dataset
from spert.data.formats.brat import Discontinuous, check_output_folder, read_brat, write_brat
from spert.data.formats.doccano import read_doccano, read_doccano_labels, write_doccano
from spert.data.formats.document import CharDocument
from spert.data.formats.label_studio import (
    read_label_config,
    read_label_studio,
    write_label_studio,
)
from spert.data.formats.report import ImportReport, ReportEntry
from spert.data.formats.segment import Unit, Words, documents_to_sentences, sentences_to_documents
from spert.utils import atomic_replace_dir, atomic_write_text, recover_replaced_dir

SPLITS = ("train", "dev", "test")
DOCUMENTS_FILE = "documents.jsonl"
TYPES_FILE = "types.json"
REPORT_FILE = "import_report"  # .json and .md


@dataclass(frozen=True)
class ImportOptions:
    """How an import reads, splits and segments documents (the CLI's options)."""

    unit: Unit = "sentence"
    """What one training example covers: sentence, paragraph (blank-line separated) or
    document. Relations between entities of different units are not imported."""
    words: Words = "spacy"
    """spacy: sentences and words as ``spert extract`` splits them; whitespace: words are runs
    of non-space characters and sentences are lines (pre-tokenized text)."""
    max_span_size: int = ModelConfig.max_span_size
    """Entities longer than this (in words) are imported and flagged: training never predicts
    them."""
    discontinuous: Discontinuous = "span"
    """brat entities of several fragments: the span covering them (span) or not imported."""
    annotation: str = "first"
    """Label Studio: which annotation of a task is imported (first, last, prediction,
    annotator:NAME)."""
    lenient: bool = False
    """Malformed annotations become report entries instead of errors."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Fractions of the documents in train, dev and test."""
    seed: int = SpertConfig.seed
    """Seed of the document shuffle that draws the split."""
    symmetric: tuple[str, ...] = ()
    """Relation types made symmetric, whatever the tools marked (the report counts, per type,
    the relations marked symmetric; a type is otherwise symmetric when every relation is)."""
    skip_empty: bool = False
    """brat, doccano: documents without any annotation are not imported (else flagged)."""
    label_config: str | None = None
    """Label Studio: the project's labeling config, whose labels and relations are declared
    types (kept in ``types.json`` even when no annotation uses them)."""
    doccano_labels: tuple[str, ...] = ()
    """doccano: its label files (span types, then optionally relation types), declared types
    as ``label_config`` is for Label Studio."""
    overwrite: bool = False
    """Replace an output folder holding files an import did not write."""

    def __post_init__(self) -> None:
        if self.max_span_size < 1:
            raise DataError(f"--max-span-size {self.max_span_size}: must be 1 or more (words)")
        if len(self.doccano_labels) > 2:
            raise DataError("--doccano-labels: the span types file, then the relation types file")


#: A reader: (inputs, report, options) -> documents and the types the files declare (or None).
Reader = Callable[
    [Sequence[str], ImportReport, ImportOptions], tuple[list[CharDocument], Types | None]
]
#: A writer: (documents, output path, types) -> None.
Writer = Callable[[list[CharDocument], Path, Types], Any]

READERS: dict[str, Reader] = {
    "brat": lambda inputs, report, o: read_brat(inputs, report, o.discontinuous, o.skip_empty),
    "label-studio": lambda inputs, report, o: (
        read_label_studio(inputs, report, o.annotation),
        read_label_config(o.label_config) if o.label_config else None,
    ),
    "doccano": lambda inputs, report, o: (
        read_doccano(inputs, report, o.skip_empty),
        read_doccano_labels(*o.doccano_labels) if o.doccano_labels else None,
    ),
}
WRITERS: dict[str, Writer] = {
    "brat": lambda documents, out, types: write_brat(documents, out, types),
    "label-studio": lambda documents, out, types: write_label_studio(documents, out, types),
    "doccano": lambda documents, out, types: write_doccano(documents, out, types),
}


@dataclass
class ImportResult:
    """What an import wrote: the sentences and documents of each split, types and report."""

    sentences: dict[str, list[Sentence]]
    documents: dict[str, list[CharDocument]]
    types: Types
    report: ImportReport
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            name: {
                "documents": len(self.documents[name]),
                "sentences": len(sentences),
                "entities": sum(len(s.entities) for s in sentences),
                "relations": sum(len(s.relations) for s in sentences),
            }
            for name, sentences in self.sentences.items()
        }

    def summary_lines(self) -> list[str]:
        """What ``spert import`` prints: counts per file, the types, what each kind lost or
        flagged, and whether the totals reconcile."""
        lines = [
            f"{self.files[name]}: {counts['documents']} documents, {counts['sentences']} "
            f"sentences, {counts['entities']} entities, {counts['relations']} relations"
            for name, counts in self.summary().items()
        ]
        lines.append(
            f"{self.files['types']}: {len(self.types.entities)} entity types, "
            f"{len(self.types.relations)} relation types"
        )
        for kind, t in self.report.totals().items():
            lost = ", ".join(f"{n} {reason}" for reason, n in t["not_imported"].items())
            flagged = ", ".join(f"{n} {reason}" for reason, n in t["flagged"].items())
            line = f"  {kind}: {t['read']} read, {t['imported']} imported"
            line += f"; not imported: {lost}" if lost else ""
            line += f"; flagged: {flagged}" if flagged else ""
            lines.append(line)
        for name, s in sorted(self.report.symmetry.items()):
            if 0 < s["marked_symmetric"] < s["relations"] or s["symmetric"] != bool(
                s["marked_symmetric"]
            ):
                decided = (
                    "symmetric (--symmetric)"
                    if s["symmetric"]
                    else f"directed (--symmetric {name} to change)"
                )
                lines.append(
                    f"  relation type {name}: {s['marked_symmetric']} of {s['relations']} marked "
                    f"symmetric; {decided}"
                )
        leaks = [f for f in self.report.flags if f.reason == "split leak"]
        if leaks:
            lines.append(
                f"  WARNING: {len(leaks)} document(s) in two splits (split leak), e.g. {leaks[0]}"
            )
        verdict = "reconcile" if self.report.reconciles() else "DO NOT reconcile"
        lines.append(f"totals {verdict}; every entry is in {self.files['report_md']}")
        return lines


def parse_split(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1): three non-negative fractions summing to 1."""
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1.0) > 1e-6:
        raise DataError(f"--split {text!r}: give three fractions that sum to 1, e.g. 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def split_documents(
    documents: Sequence[CharDocument], fractions: Sequence[float], seed: int
) -> dict[str, list[CharDocument]]:
    """Documents drawn into train, dev and test (never a document's sentences apart): a
    shuffle with ``seed`` decides membership; each split keeps the documents' input order."""
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    n = len(documents)
    n_train = round(fractions[0] * n)
    n_dev = round((fractions[0] + fractions[1]) * n) - n_train
    member = {}
    for rank, index in enumerate(order):
        member[index] = 0 if rank < n_train else 1 if rank < n_train + n_dev else 2
    return {
        name: [d for i, d in enumerate(documents) if member[i] == k]
        for k, name in enumerate(SPLITS)
    }


def collect_types(
    declared: Types | None,
    documents: Iterable[CharDocument],
    report: ImportReport,
    symmetric: Sequence[str] = (),
) -> Types:
    """The declared types, then the types used in ``documents`` that are not declared (in
    order of first use; flagged when others are declared). An undeclared relation type is
    symmetric if every relation of it is, a type in ``symmetric`` in any case (its relations
    are then marked symmetric); ``report.symmetry`` counts, per type with a relation marked
    symmetric, how many were."""
    documents = list(documents)
    entity_types = list(declared.entities) if declared else []
    relation_types = {r.name: r for r in declared.relations} if declared else {}
    read: Counter[str] = Counter()
    marked: Counter[str] = Counter()
    for doc in documents:
        for e in doc.entities:
            if e.type not in entity_types:
                entity_types.append(e.type)
                if declared:
                    report.flag(_undeclared(doc, "entity", e.id, e.type))
        for r in doc.relations:
            if r.type not in relation_types and r.type not in read and declared:
                report.flag(_undeclared(doc, "relation", r.id, r.type))
            read[r.type] += 1
            marked[r.type] += r.symmetric
    for name in read:
        if name not in relation_types:
            relation_types[name] = RelationType(name, marked[name] == read[name])
    for name in symmetric:
        if name not in relation_types:
            raise DataError(f"--symmetric {name}: no relation type {name} was read or declared")
        relation_types[name] = dataclasses.replace(relation_types[name], symmetric=True)
    for doc in documents:
        doc.relations = [
            dataclasses.replace(r, symmetric=True) if r.type in symmetric else r
            for r in doc.relations
        ]
    for name, r in relation_types.items():
        if marked[name] or r.symmetric:
            report.symmetry[name] = {
                "relations": read[name],
                "marked_symmetric": marked[name],
                "symmetric": r.symmetric,
            }
    if not entity_types:
        raise DataError("no entity type: neither declared nor used by any entity read")
    return Types(tuple(entity_types), tuple(relation_types.values()))


def _undeclared(doc: CharDocument, kind: str, ident: str, name: str) -> ReportEntry:
    where = f"document {doc.id}"
    return ReportEntry(kind, "type not declared", doc.source, where, ident, name, name)


def _unique_ids(
    documents: list[CharDocument], report: ImportReport, split_of: Mapping[int, str] | None = None
) -> None:
    """Give documents that share an id a suffix (sentences of a document are found by id).
    With ``split_of`` (document ``id()`` -> split), the same document (its text) in two splits
    is flagged as a "split leak": it would be trained and evaluated on."""
    seen: set[str] = set()
    first_split: dict[str, str] = {}  # text -> split of its first document
    for doc in documents:
        split = split_of.get(id(doc)) if split_of else None
        leak = split is not None and first_split.setdefault(doc.text, split) != split
        new_id = doc.id
        if doc.id in seen:
            n = 1
            while new_id in seen:
                n += 1
                new_id = f"{doc.id}-{n}"
        if leak:
            detail = f"the same text is in {first_split[doc.text]} and {split}" + (
                f"; id renamed {new_id}" if new_id != doc.id else ""
            )
            report.flag(ReportEntry("document", "split leak", doc.source, split, doc.id, detail))
        elif new_id != doc.id:
            report.flag(
                ReportEntry("document", "id renamed", doc.source, "document", doc.id, new_id)
            )
        doc.id = new_id
        seen.add(doc.id)


def import_documents(
    fmt: str,
    out_dir: str | os.PathLike[str],
    inputs: Sequence[str] = (),
    split_inputs: Mapping[str, Sequence[str]] | None = None,
    options: ImportOptions = ImportOptions(),
    progress: bool = False,
) -> ImportResult:
    """Import annotation-tool files into the dataset folder ``out_dir`` (see the module
    docstring). Either ``inputs`` (split by ``options.split``/``seed``) or ``split_inputs``
    (``{"train": [...], "dev": [...], "test": [...]}``, kept as given) names the files."""
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r}; one of {', '.join(READERS)}")
    if options.label_config and fmt != "label-studio":
        raise DataError(f"--label-config is a Label Studio labeling config, not for {fmt}")
    if options.doccano_labels and fmt != "doccano":
        raise DataError(f"--doccano-labels are doccano's label files, not for {fmt}")
    out = Path(out_dir)
    check_output_folder(out)
    _check_dataset_folder(out, options.overwrite)
    read = READERS[fmt]
    report = ImportReport(lenient=options.lenient)
    declared: Types | None = None
    if split_inputs:
        if inputs:
            raise DataError("give INPUT files or --train/--dev/--test files, not both")
        documents = {}
        for name in SPLITS:
            paths = split_inputs.get(name) or ()
            docs, found = read(list(paths), report, options) if paths else ([], None)
            documents[name] = docs
            declared = merge_types(declared, found)
        split_of = {id(d): name for name in SPLITS for d in documents[name]}
        _unique_ids([d for name in SPLITS for d in documents[name]], report, split_of)
    else:
        if not inputs:
            raise DataError("no input: give INPUT files, folders or globs")
        docs, declared = read(list(inputs), report, options)
        _unique_ids(docs, report)
        documents = split_documents(docs, options.split, options.seed)
    all_documents = [d for name in SPLITS for d in documents[name]]
    if not any(d.entities for d in all_documents) and not (declared and all_documents):
        _nothing_imported(report, out, fmt, options, inputs or split_inputs)
    types = collect_types(declared, all_documents, report, options.symmetric)
    sentences = {
        name: documents_to_sentences(
            documents[name],
            report,
            options.unit,
            options.max_span_size,
            options.words,
            progress=progress,
        )
        for name in SPLITS
    }
    result = ImportResult(sentences, documents, types, report)
    atomic_replace_dir(out, lambda tmp: _write(result, tmp, fmt, options))
    result.files = {name: out / path.name for name, path in result.files.items()}
    return result


#: The files an import writes into its folder (another file there is not replaced silently).
DATASET_FILES = (
    *(f"{name}.json" for name in SPLITS),
    TYPES_FILE,
    DOCUMENTS_FILE,
    f"{REPORT_FILE}.json",
    f"{REPORT_FILE}.md",
)


def _check_dataset_folder(out: Path, overwrite: bool) -> None:
    """A :class:`DataError` when ``out`` holds files an import did not write (the import
    replaces the whole folder), unless ``overwrite``."""
    recover_replaced_dir(out)
    if overwrite or not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in DATASET_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise DataError(
            f"{out}: holds files an import did not write ({shown}); the import replaces the "
            "whole folder: give another --out, or --overwrite to replace it with them"
        )


def failed_report_path(out: Path) -> Path:
    """Where the report of an import that imported nothing goes: beside the folder, which is
    left as it was (``OUT.import_report.md``, and ``.json``)."""
    return out.with_name(f"{out.name}.{REPORT_FILE}.md")


def _nothing_imported(
    report: ImportReport, out: Path, fmt: str, options: ImportOptions, inputs: Any
) -> None:
    """Raise the error of an import without any entity: what was read, from which files, why
    nothing was imported; the report is written beside ``out``."""
    files = sorted({e.source for e in report.entries + report.flags if e.source})
    named = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if not named:
        named = ", ".join(
            str(i) for i in (inputs.values() if isinstance(inputs, Mapping) else inputs)
        )
    counts = []
    for kind, t in report.totals().items():
        lost = ", ".join(f"{n} {reason}" for reason, n in t["not_imported"].items())
        counts.append(
            f"{kind}: {t['read']} read, {t['imported']} imported" + (f" ({lost})" if lost else "")
        )
    first = report.entries[0] if report.entries else None
    why = f"; first: {first}" if first is not None else ""
    path = failed_report_path(out)
    record = {"format": fmt, "options": asdict(options), "imported": None, **report.to_dict()}
    atomic_write_text(
        path.with_suffix(".json"), json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    )
    atomic_write_text(path, report.to_markdown("Import report: nothing imported"))
    raise DataError(
        f"nothing imported from {named}: no entity in what was read "
        f"({'; '.join(counts) or 'nothing read'})"
        f"{why}; nothing written to {out}; the report: {path}"
    )


def merge_types(a: Types | None, b: Types | None) -> Types | None:
    """The types of ``a``, then those of ``b`` that ``a`` lacks (by name)."""
    if a is None or b is None:
        return a or b
    entities = list(a.entities) + [e for e in b.entities if e not in a.entities]
    relations = list(a.relations) + [r for r in b.relations if r.name not in a.relation_names]
    return Types(tuple(entities), tuple(relations))


def _write(result: ImportResult, out: Path, fmt: str, options: ImportOptions) -> None:
    """Write the dataset files into the (new, empty) folder ``out``."""
    for name in SPLITS:
        result.files[name] = out / f"{name}.json"
        write_dataset(result.files[name], result.sentences[name])
    result.files["types"] = atomic_write_text(
        out / TYPES_FILE, json.dumps(result.types.to_dict(), indent=2, ensure_ascii=False) + "\n"
    )
    lines = [
        json.dumps(
            {"id": d.id, "split": name, "source": d.source, "text": d.text}, ensure_ascii=False
        )
        + "\n"
        for name in SPLITS
        for d in result.documents[name]
    ]
    result.files["documents"] = atomic_write_text(out / DOCUMENTS_FILE, "".join(lines))
    record: dict[str, Any] = {
        "format": fmt,
        "options": asdict(options),
        "splits": result.summary(),
        **result.report.to_dict(),
    }
    result.files["report_json"] = atomic_write_text(
        out / f"{REPORT_FILE}.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    )
    result.files["report_md"] = atomic_write_text(
        out / f"{REPORT_FILE}.md", _markdown(result, fmt, options)
    )


def _markdown(result: ImportResult, fmt: str, options: ImportOptions) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in asdict(options).items())
    lines = [f"Format: {fmt}; options: {settings}", "", "## Splits", ""]
    lines += ["| split | documents | sentences | entities | relations |", "|---|---|---|---|---|"]
    for name, counts in result.summary().items():
        lines.append(f"| {name} | " + " | ".join(str(v) for v in counts.values()) + " |")
    body = result.report.to_markdown(f"Import report ({options.unit} units)")
    title, _, rest = body.partition("\n")
    return "\n".join([title, "", *lines, rest])


# -- export ------------------------------------------------------------------------------------


def read_document_texts(path: str | os.PathLike[str]) -> dict[str, str]:
    """Document id -> text, from a ``documents.jsonl`` written by an import."""
    texts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                texts[str(record["id"])] = record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}, line {number}: not a document record ({e})") from None
    return texts


def export_dataset(
    fmt: str,
    data: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    types: Types,
    texts: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> list[CharDocument]:
    """Write the sentences of the dataset files ``data`` as documents in a tool's format
    (brat: a folder, swapped in whole; Label Studio, doccano: a file, renamed in). A brat
    folder holding other documents is refused unless ``overwrite``. Returns the documents
    written."""
    if fmt not in WRITERS:
        raise DataError(f"unknown format {fmt!r}; one of {', '.join(WRITERS)}")
    out = Path(out)
    if fmt == "brat":
        check_output_folder(out)
    else:
        _check_output_file(out)
    sentences: list[Sentence] = []
    for path in data:
        sentences.extend(read_dataset(path, types))
    documents = sentences_to_documents(sentences, texts, types)
    if fmt == "brat":
        write_brat(documents, out, types, overwrite)
    else:
        WRITERS[fmt](documents, out, types)
    return documents


def _check_output_file(path: Path) -> None:
    """A :class:`DataError` when ``path`` cannot be written as a file."""
    if path.is_dir():
        raise DataError(f"{path}: a folder; give a file name")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{path}: not a folder above it ({parent} is a file)")
