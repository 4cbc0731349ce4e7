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

import json
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spert.config import ModelConfig, SpertConfig
from spert.data.dataset import DataError, RelationType, Sentence, Types, read_dataset, write_dataset
from spert.data.formats.brat import Discontinuous, read_brat, write_brat
from spert.data.formats.doccano import read_doccano, write_doccano
from spert.data.formats.document import CharDocument
from spert.data.formats.label_studio import read_label_studio, write_label_studio
from spert.data.formats.report import ImportReport, ReportEntry
from spert.data.formats.segment import Unit, Words, documents_to_sentences, sentences_to_documents
from spert.utils import atomic_write_text

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


#: A reader: (inputs, report, options) -> documents and the types the files declare (or None).
Reader = Callable[
    [Sequence[str], ImportReport, ImportOptions], tuple[list[CharDocument], Types | None]
]
#: A writer: (documents, output path, types) -> None.
Writer = Callable[[list[CharDocument], Path, Types], Any]

READERS: dict[str, Reader] = {
    "brat": lambda inputs, report, o: read_brat(inputs, report, o.discontinuous),
    "label-studio": lambda inputs, report, o: (
        read_label_studio(inputs, report, o.annotation),
        None,
    ),
    "doccano": lambda inputs, report, o: (read_doccano(inputs, report), None),
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
    declared: Types | None, documents: Iterable[CharDocument], report: ImportReport
) -> Types:
    """The declared types, then the types used in ``documents`` that are not declared (in
    order of first use; flagged when others are declared). An undeclared relation type is
    symmetric if every relation of it is."""
    entity_types = list(declared.entities) if declared else []
    relation_types = {r.name: r for r in declared.relations} if declared else {}
    undeclared: dict[str, bool] = {}
    for doc in documents:
        for e in doc.entities:
            if e.type not in entity_types:
                entity_types.append(e.type)
                if declared:
                    report.flag(_undeclared(doc, "entity", e.id, e.type))
        for r in doc.relations:
            if r.type not in relation_types:
                if r.type not in undeclared and declared:
                    report.flag(_undeclared(doc, "relation", r.id, r.type))
                undeclared[r.type] = undeclared.get(r.type, True) and r.symmetric
    relations = list(relation_types.values())
    relations += [RelationType(name, symmetric) for name, symmetric in undeclared.items()]
    if not entity_types:
        raise DataError("no entity type: neither declared nor used by any entity read")
    return Types(tuple(entity_types), tuple(relations))


def _undeclared(doc: CharDocument, kind: str, ident: str, name: str) -> ReportEntry:
    where = f"document {doc.id}"
    return ReportEntry(kind, "type not declared", doc.source, where, ident, name, name)


def _unique_ids(documents: list[CharDocument], report: ImportReport) -> None:
    """Give documents that share an id a suffix (sentences of a document are found by id)."""
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            new_id, n = doc.id, 1
            while new_id in seen:
                n += 1
                new_id = f"{doc.id}-{n}"
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
        _unique_ids([d for name in SPLITS for d in documents[name]], report)
    else:
        if not inputs:
            raise DataError("no input: give INPUT files, folders or globs")
        docs, declared = read(list(inputs), report, options)
        _unique_ids(docs, report)
        documents = split_documents(docs, options.split, options.seed)
    all_documents = [d for name in SPLITS for d in documents[name]]
    types = collect_types(declared, all_documents, report)
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
    _write(result, Path(out_dir), fmt, options)
    return result


def merge_types(a: Types | None, b: Types | None) -> Types | None:
    """The types of ``a``, then those of ``b`` that ``a`` lacks (by name)."""
    if a is None or b is None:
        return a or b
    entities = list(a.entities) + [e for e in b.entities if e not in a.entities]
    relations = list(a.relations) + [r for r in b.relations if r.name not in a.relation_names]
    return Types(tuple(entities), tuple(relations))


def _write(result: ImportResult, out: Path, fmt: str, options: ImportOptions) -> None:
    out.mkdir(parents=True, exist_ok=True)
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
) -> list[CharDocument]:
    """Write the sentences of the dataset files ``data`` as documents in a tool's format
    (brat: a folder; Label Studio, doccano: a file). Returns the documents written."""
    if fmt not in WRITERS:
        raise DataError(f"unknown format {fmt!r}; one of {', '.join(WRITERS)}")
    sentences: list[Sentence] = []
    for path in data:
        sentences.extend(read_dataset(path, types))
    documents = sentences_to_documents(sentences, texts, types)
    WRITERS[fmt](documents, Path(out), types)
    return documents
