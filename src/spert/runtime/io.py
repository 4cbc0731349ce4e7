"""Documents in and out for ``spert extract``: raw-text readers and streaming writers.

Input is plain text (``lines``: one document per non-empty line; ``text``: the whole input is
one document) or JSON Lines records with a "text" field (or a "tokens" list) and an optional
"id", from a file or stdin. Output is written as documents are processed: JSON Lines (one
Document a line), a JSON list, TSV (one row per entity and per relation), an HTML page, or
what an annotation tool imports to review the predictions: ``brat`` (a folder of ``.txt`` +
``.ann`` per document and an ``annotation.conf``), ``label-studio`` (a JSON list of tasks with
predictions, and ``<stem>.label_config.xml`` beside it) or ``doccano`` (JSON Lines, and the
label files ``<stem>.span_types.json`` / ``<stem>.relation_types.json`` beside it); see
:mod:`spert.data.formats`.

Memory does not grow with the input (except for HTML and brat, which write all documents at
the end).
The output goes to a temporary file beside the target, renamed over it when the run ends,
also when it is interrupted (Ctrl-C or SIGTERM): the file then holds, in valid form, what was
processed, and the command exits with code 130.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from spert.data import DataError, Types
from spert.data.formats.brat import check_new_output_folder, write_brat
from spert.data.formats.doccano import doccano_line, write_doccano_labels
from spert.data.formats.document import CharDocument, document_from_extraction
from spert.data.formats.label_studio import (
    label_config,
    label_config_path,
    label_studio_task_json,
)
from spert.render.pages import render_documents
from spert.results import Document
from spert.utils import AtomicFile, atomic_write_text, signals_held

FORMATS = ("jsonl", "json", "tsv", "html", "brat", "label-studio", "doccano")
#: The formats of annotation tools, written for review (they need the model's types).
TOOL_FORMATS = ("brat", "label-studio", "doccano")
INPUT_FORMATS = ("text", "lines", "jsonl")
TSV_COLUMNS = (
    "doc",
    "sentence",
    "kind",
    "index",
    "type",
    "start",
    "end",
    "text",
    "score",
    "head",
    "tail",
)
#: Exit status of an interrupted run (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT_CODE = 130


# -- input ---------------------------------------------------------------------------------
def guess_input_format(path: str) -> str:
    """``jsonl`` for ``*.jsonl`` files, else ``lines``."""
    return "jsonl" if path.lower().endswith(".jsonl") else "lines"


def guess_output_format(path: str) -> str:
    """From the output file's suffix (``.json``, ``.tsv``, ``.html``); ``jsonl`` otherwise."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    return {".json": "json", ".tsv": "tsv", ".html": "html", ".htm": "html"}.get(suffix, "jsonl")


def read_inputs(stream: TextIO, input_format: str, source: str = "<input>") -> Iterator[Any]:
    """Documents of ``stream``, lazily, as ``(id, text)`` or ``(id, tokens)`` tuples.

    ``lines``: the id is the line number (from 1); ``jsonl``: the record's "id", else the line
    number; ``text``: one document, without id.
    """
    if input_format not in INPUT_FORMATS:
        raise DataError(f"unknown input format {input_format!r}; use one of {INPUT_FORMATS}")
    try:
        if input_format == "text":
            yield None, stream.read()
            return
        for lineno, line in enumerate(stream, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if input_format == "lines":
                yield lineno, line
            else:
                yield _json_record(line, lineno, source)
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _json_record(line: str, lineno: int, source: str) -> tuple[Any, str | list[str]]:
    where = f"{source}, line {lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON at column {e.colno}: {e.msg}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object with a 'text' field")
    doc_id = record.get("id", lineno)
    if isinstance(record.get("text"), str):
        content: Any = record["text"]
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}, field 'text': contains unpaired surrogates") from None
    elif "text" not in record and isinstance(record.get("tokens"), list):
        content = record["tokens"]
    else:
        raise DataError(f"{where}, field 'text': must be a string (or give a 'tokens' list)")
    return doc_id, content


@contextlib.contextmanager
def open_input(path: str) -> Iterator[TextIO]:
    """The input file, or stdin for ``-``, as UTF-8 text with line ends kept as they are."""
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a replaced sys.stdin (tests, notebooks)
            yield sys.stdin
            return
        wrapper = io.TextIOWrapper(buffer, encoding="utf-8-sig", newline="")
        try:
            yield wrapper
        finally:
            wrapper.detach()  # leave sys.stdin open
        return
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8-sig", newline="") as f:
        yield f


# -- output --------------------------------------------------------------------------------
class DocumentWriter:
    """Writes Documents as they come in one format to a file or stdout (``-``).

    A file is written as a temporary file beside it and renamed over it by :meth:`close`,
    which also ends the format (closes the JSON list, renders the HTML page, writes the brat
    folder and the tools' label files). Use it as a context manager: the output is closed,
    and so valid, however the block ends.

    The annotation tool formats (:data:`TOOL_FORMATS`) need ``types``, the model's entity and
    relation types: they become the tool's labels. ``model_version`` names the model in Label
    Studio's predictions. ``overwrite``: a brat folder's documents are replaced (else a
    folder that holds documents already is refused at once).
    """

    def __init__(
        self,
        out: str,
        fmt: str,
        title: str = "spert extract",
        types: Types | None = None,
        model_version: str = "spert",
        overwrite: bool = False,
    ) -> None:
        if fmt not in FORMATS:
            raise DataError(f"unknown output format {fmt!r}; use one of {FORMATS}")
        if fmt in TOOL_FORMATS and types is None:
            raise DataError(f"--format {fmt} needs the model's types")
        if fmt == "brat" and out == "-":
            raise DataError("--format brat writes a folder (.txt + .ann per document): give --out")
        if fmt == "brat" and not overwrite:  # before any work, not after it
            check_new_output_folder(Path(out))
        self.overwrite = overwrite
        self.out = out
        self.format = fmt
        self.title = title
        self.types = types
        self.model_version = model_version
        self.documents = 0
        self.entities = 0
        self.relations = 0
        self._kept: list[Document] = []  # html only
        self._kept_char: list[CharDocument] = []  # brat only
        self._closed = False
        self._atomic: AtomicFile | None = None
        if fmt == "brat":
            self._file: TextIO = io.StringIO()  # nothing goes to it: brat writes at close
        elif out == "-":
            self._file: TextIO = sys.stdout
            encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
            if encoding.replace("-", "") != "utf8" and hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(encoding="utf-8")
        else:
            self._atomic = AtomicFile(out)
            self._file = self._atomic.file
        if fmt in ("json", "label-studio"):
            self._file.write("[")
        elif fmt == "tsv":
            self._file.write("\t".join(TSV_COLUMNS) + "\n")

    def write(self, doc: Document) -> None:
        """Add one document (each is written with a single ``write`` call)."""
        if self.format == "jsonl":
            self._file.write(document_line(doc) + "\n")
        elif self.format == "json":
            sep = "\n" if self.documents == 0 else ",\n"
            self._file.write(sep + document_line(doc))
        elif self.format == "tsv":
            self._file.write(tsv_rows(doc, doc.id if doc.id is not None else self.documents))
        elif self.format == "html":
            self._kept.append(doc)
        else:
            symmetric = self.types.symmetric if self.types is not None else frozenset()
            char_doc = document_from_extraction(doc, self.documents, symmetric)
            if self.format == "brat":
                self._kept_char.append(char_doc)
            elif self.format == "doccano":
                self._file.write(doccano_line(char_doc) + "\n")
            else:
                sep = "\n" if self.documents == 0 else ",\n"
                self._file.write(sep + label_studio_task_json(char_doc, self.model_version))
        self.documents += 1
        for sentence in doc.sentences:
            self.entities += len(sentence.entities)
            self.relations += len(sentence.relations)

    def close(self) -> None:
        """End the format, flush, and move the temporary file over the target (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with signals_held():
            try:
                if self.format in ("json", "label-studio"):
                    self._file.write("\n]\n" if self.documents else "]\n")
                elif self.format == "html":
                    self._file.write(render_documents(self._kept, self.title))
                self._file.flush()
                if self._atomic is not None:
                    self._atomic.commit()
                    self._atomic = None
                self._write_tool_files()
            finally:
                if self._atomic is not None:  # finishing failed: leave no stray temporary file
                    self._atomic.discard()

    def _write_tool_files(self) -> None:
        """The brat folder, or the label files that go beside a tool's output file."""
        if self.types is None or self.out == "-":
            return
        if self.format == "brat":
            write_brat(self._kept_char, self.out, self.types, overwrite=self.overwrite)
        elif self.format == "label-studio":
            atomic_write_text(label_config_path(self.out), label_config(self.types))
        elif self.format == "doccano":
            write_doccano_labels(self.out, self.types)

    def __enter__(self) -> DocumentWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def document_line(doc: Document) -> str:
    """A Document as one JSON record without line end, as ``--format jsonl`` writes it."""
    return json.dumps(doc.to_dict(), ensure_ascii=False)


def tsv_rows(doc: Document, doc_id: Any) -> str:
    """TSV rows (columns TSV_COLUMNS) of one document: one per entity, one per relation.

    Entity rows: index in the sentence, type, character span, text, score. Relation rows:
    index in the sentence, type, the character span covering both arguments and its text,
    score, and head and tail as entity indices in the sentence.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    for s_index, sentence in enumerate(doc.sentences):
        for i, e in enumerate(sentence.entities):
            writer.writerow(
                [doc_id, s_index, "entity", i, e.type, e.start, e.end, e.text, f"{e.score:.6g}"]
                + ["", ""]
            )
        for i, r in enumerate(sentence.relations):
            head, tail = sentence.entities[r.head], sentence.entities[r.tail]
            start, end = min(head.start, tail.start), max(head.end, tail.end)
            writer.writerow(
                [doc_id, s_index, "relation", i, r.type, start, end, doc.text[start:end]]
                + [f"{r.score:.6g}", r.head, r.tail]
            )
    return buffer.getvalue()


# -- command -------------------------------------------------------------------------------
def run_extract(
    model: Any,
    inputs: Any,
    writer: DocumentWriter,
    batch_size: int | None = None,
    progress: bool = True,
) -> None:
    """Stream documents from ``inputs`` through ``model.extract_stream`` into ``writer``."""
    from tqdm.auto import tqdm

    documents = model.extract_stream(inputs, batch_size=batch_size)
    with tqdm(documents, unit="doc", desc="extract", file=sys.stderr, disable=not progress) as bar:
        for doc in bar:
            writer.write(doc)
