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

_WHITESPACE = re.compile(r"\s*")


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
    """The file's UTF-8 text (a BOM dropped), counted as a "file" read and imported; None,
    reported as a "file" error, if it is not UTF-8 (lenient mode; otherwise the error raises)."""
    report.count_read("file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        report.error(
            ReportEntry("file", "not UTF-8", str(path), f"byte {e.start}", "", "not UTF-8 text")
        )
        return None
    report.count_imported("file")
    return text


def read_json_documents(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    suffixes: tuple[str, ...],
    report: ImportReport,
    kind: str,
    read_one: Callable[[JsonValue, Path], CharDocument | None],
) -> list[CharDocument]:
    """The documents of JSON files (see :func:`input_files`): every JSON value is a ``kind``
    read (a Label Studio "task", a doccano "record"), imported when ``read_one`` makes it a
    document."""
    documents: list[CharDocument] = []
    for path in input_files(paths, suffixes):
        text = read_text(path, report)
        if text is None:
            continue
        for item in iter_json_values(path, text, report, kind):
            report.count_read(kind)
            document = read_one(item, path)
            if document is not None:
                report.count_imported(kind)
                documents.append(document)
    return documents


def iter_json_values(
    path: Path, text: str, report: ImportReport, kind: str = "record"
) -> Iterator[JsonValue]:
    """The JSON values of ``text``: a JSON list (its elements), one object, JSON Lines, or
    several pretty-printed objects one after the other, in order.

    Invalid JSON is an error of ``kind`` (one more of them read) naming line and column; in
    lenient mode it is reported and reading resumes at the next line that starts a value
    (``{`` or ``[`` in the first column), so one bad JSON Lines record loses only itself.
    """
    decoder = json.JSONDecoder()
    record = 0
    pos = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            record += 1
            report.count_read(kind)
            report.error(
                ReportEntry(
                    kind,
                    "invalid JSON",
                    str(path),
                    f"record {record} (line {e.lineno}, column {e.colno})",
                    "",
                    f"invalid JSON: {e.msg}",
                )
            )
            pos = _next_value_start(text, max(e.pos, pos) + 1)
            continue
        if isinstance(value, list):
            for element in value:
                record += 1
                yield JsonValue(element, record, line)
        else:
            record += 1
            yield JsonValue(value, record, line)
        pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]


def _next_value_start(text: str, pos: int) -> int:
    """The first position at or after ``pos`` where a line starts with ``{`` or ``[``."""
    match = re.compile(r"^[\[{]", re.MULTILINE).search(text, pos)
    return match.start() if match else len(text)


def optional_score(raw: Any) -> float | None:
    """A prediction's score as written by the writers (a number), else None."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    return None
