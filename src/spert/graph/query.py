"""Query results as text: an aligned table, JSON or CSV.

Values the database returns as structures (lists, nodes and relationships as dicts) are
written as JSON in table and CSV cells; a node or relationship keeps its properties and
drops the database's internal ids.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from spert.graph.store import GraphError, QueryResult

QUERY_FORMATS = ("table", "json", "csv")
#: Cells longer than this are cut in the table format (JSON and CSV keep them whole).
TABLE_CELL_WIDTH = 60


def plain_value(value: Any) -> Any:
    """A query value as plain JSON data (internal ids of nodes and relationships dropped)."""
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items() if k not in ("_ID", "_SRC", "_DST")}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _cell(value: Any) -> str:
    value = plain_value(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_result(result: QueryResult, fmt: str = "table") -> str:
    """The result as text, ending with a newline."""
    if fmt == "json":
        rows = [dict(zip(result.columns, map(plain_value, row))) for row in result.rows]
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(v) for v in row] for row in result.rows)
        return buffer.getvalue()
    if fmt != "table":
        raise GraphError(f"unknown query output format {fmt!r}; use one of {QUERY_FORMATS}")
    cells = [[_clip(_cell(v)) for v in row] for row in result.rows]
    widths = [
        max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)
    ]

    def line(values: list[str]) -> str:
        return " | ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [line(result.columns), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    n = len(result.rows)
    out.append(f"({n} row{'s' if n != 1 else ''})")
    return "\n".join(out) + "\n"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TABLE_CELL_WIDTH else text[: TABLE_CELL_WIDTH - 1] + "…"
