"""What the JSON tool formats (Label Studio, doccano) share: their input files, JSON values with
the place they were read from, and label colors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spert.data.formats.document import CharDocument
from spert.data.formats.inputs import expand_inputs
from spert.data.formats.report import ImportReport, ReportEntry

#: Background colors given to labels in order (the tools need one; these are easy to tell apart).
LABEL_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def label_color(index: int) -> str:
    """The background color of the ``index``-th label (the palette repeats)."""
    return LABEL_COLORS[index % len(LABEL_COLORS)]


def input_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], suffixes: tuple[str, ...]
) -> list[Path]:
    """The files named by ``paths`` (one or several files, folders or globs; see
    :func:`spert.data.formats.inputs.expand_inputs`)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return expand_inputs(paths, suffixes)


@dataclass(frozen=True)
class JsonValue:
    """One top-level JSON value of a file (or one element of a top-level list)."""

    value: Any
    record: int  # from 1, in file order
    line: int  # where the value (or its list) starts, from 1

    @property
    def where(self) -> str:
        return f"record {self.record} (line {self.line})"


def read_text(path: Path, report: ImportReport) -> str | None:
    """The file's UTF-8 text (a BOM dropped), counted as a "file" read; None, reported as a
    "file" error, if it is not UTF-8 (lenient mode; otherwise the error raises)."""
    report.count_read("file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        report.error(
            ReportEntry("file", "not UTF-8", str(path), f"byte {e.start}", "", "not UTF-8 text")
        )
        return None


def read_json_documents(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    suffixes: tuple[str, ...],
    report: ImportReport,
    kind: str,
    read_one: Callable[[JsonValue, Path], CharDocument | None],
) -> list[CharDocument]:
    """The documents of JSON files (see :func:`input_files`): every JSON value is a ``kind``
    read (a Label Studio "task", a doccano "record"), imported when ``read_one`` makes it a
    document. A file is a "file" imported when it holds a value, else not imported
    ("empty")."""
    documents: list[CharDocument] = []
    for path in input_files(paths, suffixes):
        text = read_text(path, report)
        if text is None:
            continue
        read_before = report.read[kind]
        for item in iter_json_values(path, text, report, kind):
            report.count_read(kind)
            document = read_one(item, path)
            if document is not None:
                report.count_imported(kind)
                documents.append(document)
        if report.read[kind] > read_before:
            report.count_imported("file")  # it held something (perhaps only invalid JSON)
        else:
            what = "an empty list" if text.strip() == "[]" else "no JSON value"
            report.skip(ReportEntry("file", "empty", str(path), "file", "", f"{what}, no {kind}"))
    return documents


def iter_json_values(
    path: Path, text: str, report: ImportReport, kind: str = "record"
) -> Iterator[JsonValue]:
    """The JSON values of ``text``: a JSON list (its elements), one object, JSON Lines, or
    several pretty-printed objects one after the other, in order.

    Invalid JSON is an error of ``kind`` (one more of them read) naming the line where the
    broken value starts; in lenient mode it is reported and reading resumes at the next line
    that starts a value (``{`` or ``[``) at the broken value's indentation or less, so that one
    bad record (a JSON Lines line, an element of a list written one per line or
    pretty-printed) loses only itself, never the record after it. A list that is not valid as
    a whole is read element by element. Nesting too deep for the parser, and integers too long
    to convert, are invalid JSON too. Invalid text between records (a stray comma or
    bracket, an unclosed list) is a "stray text" error: nothing of a record is lost there.
    """
    state = _JsonScan(path, text, report, kind)
    yield from state.values()


class _JsonScan:
    """The state of :func:`iter_json_values`: position, record number, list recovery."""

    def __init__(self, path: Path, text: str, report: ImportReport, kind: str) -> None:
        self.path, self.text, self.report, self.kind = path, text, report, kind
        self.decoder = json.JSONDecoder()
        self.record = 0

    def skip_space(self, pos: int, separators: str = "") -> int:
        text = self.text
        while pos < len(text) and (text[pos].isspace() or text[pos] in separators):
            pos += 1
        return pos

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def values(self) -> Iterator[JsonValue]:
        text = self.text
        pos = self.skip_space(0)
        in_list = False  # reading the elements of a list that failed as a whole
        while pos < len(text):
            if in_list and text[pos] == "]":
                in_list = False
                pos = self.skip_space(pos + 1)
                continue
            line = self.line_of(pos)
            try:
                value, end = self.decoder.raw_decode(text, pos)
            except JSON_ERRORS as e:
                if not in_list and text[pos] == "[" and self._elements_follow(pos):
                    in_list = True
                    pos = self.skip_space(pos + 1)
                    continue
                resume = self._next_value_start(pos)
                if text[pos] in "{[":
                    self.record += 1
                    self.report.count_read(self.kind)
                    where, detail = self._describe(e, pos, resume, line)
                    self.report.error(
                        ReportEntry(self.kind, "invalid JSON", str(self.path), where, "", detail)
                    )
                else:
                    self.stray(pos, f"{text[pos : pos + 12]!r} where a {self.kind} should start")
                pos = resume
                continue
            for element in value if isinstance(value, list) else [value]:
                self.record += 1
                yield JsonValue(element, self.record, line)
            pos = self.skip_space(end)
            if in_list and pos < len(text):
                if text[pos] == ",":
                    pos = self.skip_space(pos + 1)
                    if pos < len(text) and text[pos] == "]":
                        self.stray(pos, "a comma before the end of the list")
                elif text[pos] != "]":
                    self.stray(pos, "no comma between two elements of the list")
        if in_list:
            self.stray(len(text), "the list is not closed: the file ends inside it")

    def stray(self, pos: int, detail: str) -> None:
        """Invalid JSON between records (a separator missing or too many): a "stray text"
        read and reported, so that strict mode fails on it and lenient mode lists it."""
        self.report.count_read("stray text")
        where = f"line {self.line_of(min(pos, len(self.text)))}"
        self.report.error(
            ReportEntry("stray text", "invalid JSON", str(self.path), where, "", detail)
        )

    def _elements_follow(self, pos: int) -> bool:
        """Whether the list at ``pos`` starts with an object or list (records to recover)."""
        first = self.skip_space(pos + 1)
        return first < len(self.text) and self.text[first] in "{["

    def _indent(self, pos: int) -> int | None:
        """The indentation of the line of ``pos`` when only whitespace precedes ``pos`` on it."""
        line_start = self.text.rfind("\n", 0, pos) + 1
        before = self.text[line_start:pos]
        return len(before) if not before.strip() else None

    def _next_value_start(self, pos: int) -> int:
        """Where the value after the broken one at ``pos`` starts: the first later line that
        starts with ``{`` or ``[`` indented no deeper than the broken value."""
        indent = self._indent(pos)
        limit = "" if indent is None else f"{{0,{indent}}}"
        pattern = re.compile(rf"^[ \t]{limit or '*'}[\[{{]", re.MULTILINE)
        line_end = self.text.find("\n", pos)
        if line_end < 0:
            return len(self.text)
        match = pattern.search(self.text, line_end + 1)
        return match.end() - 1 if match else len(self.text)

    def _describe(self, error: Exception, pos: int, resume: int, line: int) -> tuple[str, str]:
        """Where the broken record is (the error's line and column when it lies in the record,
        else the line where the record starts) and what is wrong."""
        record = f"record {self.record}"
        if not isinstance(error, json.JSONDecodeError):
            return f"{record} (line {line})", f"invalid JSON: {json_error_detail(error)}"
        if error.pos >= resume > pos:
            return f"{record} (line {line})", (
                f"invalid JSON: the record is incomplete ({error.msg} at line {error.lineno}, "
                "where the next record starts)"
            )
        where = f"{record} (line {error.lineno}, column {error.colno})"
        return where, f"invalid JSON: {error.msg}"


#: What ``json.loads`` raises on text it cannot read: invalid JSON (``JSONDecodeError``, a
#: ``ValueError``), an integer of more digits than Python converts (``ValueError``), nesting
#: deeper than the parser's recursion allows (``RecursionError``).
JSON_ERRORS = (ValueError, RecursionError)


def json_error_detail(error: BaseException) -> str:
    """What one of :data:`JSON_ERRORS` says, in one line without the parser's advice."""
    if isinstance(error, RecursionError):
        return "nested too deeply to read"
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    return str(error).split(";")[0]  # int(): "Exceeds the limit (4300 digits) ...; use ..."


def optional_score(raw: Any) -> float | None:
    """A prediction's score as written by the writers (a number), else None."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    return None
