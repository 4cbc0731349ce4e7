"""The import report: every annotation read is imported or counted under a reason, by name.

For every annotation kind (``entity``, ``relation``, ``event``, ...) the totals reconcile:
``read == imported + sum(not_imported.values())``. Annotations that are imported but deserve a
look (an entity longer than ``max_span_size`` words, overlapping entities) are *flagged*:
listed, but not subtracted. Malformed input raises :class:`FormatError` naming file,
line or record, and annotation id; with ``lenient=True`` it becomes a report entry instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from spert.data.dataset import DataError


class FormatError(DataError):
    """Malformed annotation-tool input, located by file, line or record, and annotation id."""


@dataclass(frozen=True)
class ReportEntry:
    """One annotation not imported (or imported and flagged), and where it came from."""

    kind: str  # "entity", "relation", "event", "attribute", "note", ...
    reason: str  # short key, e.g. "cross-unit", "discontinuous", "duplicate", "error"
    source: str  # file
    where: str  # "line 12" or "record 3"
    annotation_id: str
    detail: str = ""
    type: str = ""  # the annotation's type, where known (per-type counts of the report)

    def __str__(self) -> str:
        ident = f", annotation {self.annotation_id}" if self.annotation_id else ""
        text = f"{self.source}, {self.where}{ident}: {self.kind} {self.reason}"
        return f"{text} ({self.detail})" if self.detail else text


class ImportReport:
    """Counts and entries of one import (see the module docstring)."""

    def __init__(self, lenient: bool = False) -> None:
        self.lenient = lenient
        self.read: Counter[str] = Counter()
        self.imported: Counter[str] = Counter()
        self.imported_by_type: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.not_imported: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.flagged: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.entries: list[ReportEntry] = []
        self.flags: list[ReportEntry] = []
        #: Per relation type: relations read, how many marked symmetric, and whether the type is
        #: symmetric in the types written (see ``spert import --symmetric``).
        self.symmetry: dict[str, dict[str, Any]] = {}

    def count_read(self, kind: str, n: int = 1) -> None:
        self.read[kind] += n

    def count_imported(self, kind: str, n: int = 1, type: str = "") -> None:
        self.imported[kind] += n
        if type:
            self.imported_by_type[kind][type] += n

    def skip(self, entry: ReportEntry) -> None:
        """An annotation that was read and is not imported, with its reason."""
        self.not_imported[entry.kind][entry.reason] += 1
        self.entries.append(entry)

    def flag(self, entry: ReportEntry) -> None:
        """An imported annotation worth a look (not subtracted from the totals)."""
        self.flagged[entry.kind][entry.reason] += 1
        self.flags.append(entry)

    def error(self, entry: ReportEntry) -> None:
        """Malformed input: raise, or (lenient) skip it under the reason "error"."""
        if not self.lenient:
            raise FormatError(str(entry))
        self.skip(
            ReportEntry(
                entry.kind,
                "error",
                entry.source,
                entry.where,
                entry.annotation_id,
                f"{entry.reason}: {entry.detail}" if entry.detail else entry.reason,
                entry.type,
            )
        )

    def totals(self) -> dict[str, dict[str, Any]]:
        kinds = sorted(set(self.read) | set(self.imported) | set(self.not_imported))
        return {
            kind: {
                "read": self.read[kind],
                "imported": self.imported[kind],
                "not_imported": dict(sorted(self.not_imported[kind].items())),
                "flagged": dict(sorted(self.flagged[kind].items())),
                "reconciles": self.read[kind]
                == self.imported[kind] + sum(self.not_imported[kind].values()),
            }
            for kind in kinds
        }

    def reconciles(self) -> bool:
        return all(t["reconciles"] for t in self.totals().values())

    def by_type(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per kind and type: imported, and not imported by reason (entries that name a type;
        e.g. the relations of each type lost across units)."""
        table: defaultdict[str, defaultdict[str, Counter[str]]] = defaultdict(
            lambda: defaultdict(Counter)
        )
        for kind, counts in self.imported_by_type.items():
            for name, n in counts.items():
                table[kind][name]["imported"] += n
        for entry in self.entries:
            if entry.type:
                table[entry.kind][entry.type][entry.reason] += 1
        return {
            kind: {name: dict(sorted(c.items())) for name, c in sorted(types.items())}
            for kind, types in sorted(table.items())
        }

    def merge(self, other: ImportReport) -> None:
        """Add ``other``'s counts and entries to this report."""
        self.read.update(other.read)
        self.imported.update(other.imported)
        for kind, counts in other.imported_by_type.items():
            self.imported_by_type[kind].update(counts)
        for kind, counts in other.not_imported.items():
            self.not_imported[kind].update(counts)
        for kind, counts in other.flagged.items():
            self.flagged[kind].update(counts)
        self.entries.extend(other.entries)
        self.flags.extend(other.flags)
        self.symmetry.update(other.symmetry)

    def to_markdown(self, title: str = "Import report") -> str:
        """The report for people: totals per kind, per type, then every entry."""
        totals = self.totals()
        reasons = sorted({r for t in totals.values() for r in t["not_imported"]})
        flag_reasons = sorted({r for t in totals.values() for r in t["flagged"]})
        verdict = "yes" if self.reconciles() else "**no**"
        lines = [f"# {title}", "", f"Totals reconcile (read = imported + not imported): {verdict}"]
        lines += ["", "## Totals", ""]
        header = ["kind", "read", "imported", *(f"not imported: {r}" for r in reasons)]
        header += [f"flagged: {r}" for r in flag_reasons]
        lines += [_row(header), _row(["---"] * len(header))]
        for kind, t in totals.items():
            cells = [
                kind,
                t["read"],
                t["imported"],
                *(t["not_imported"].get(r, 0) for r in reasons),
            ]
            cells += [t["flagged"].get(r, 0) for r in flag_reasons]
            lines.append(_row(cells))
        for kind, types in self.by_type().items():
            columns = sorted({c for counts in types.values() for c in counts} - {"imported"})
            lines += ["", f"## {kind.capitalize()} types", ""]
            header = ["type", "imported", *(f"not imported: {c}" for c in columns)]
            lines += [_row(header), _row(["---"] * len(header))]
            for name, counts in types.items():
                lines.append(
                    _row([name, counts.get("imported", 0), *(counts.get(c, 0) for c in columns)])
                )
        if self.symmetry:
            lines += ["", "## Relation symmetry", ""]
            lines += [_row(["type", "marked symmetric", "symmetric in types.json"])]
            lines += [_row(["---"] * 3)]
            for name, s in sorted(self.symmetry.items()):
                marked = f"{s['marked_symmetric']} of {s['relations']}"
                lines.append(_row([name, marked, "yes" if s["symmetric"] else "no"]))
        for heading, entries in (("Not imported", self.entries), ("Flagged", self.flags)):
            lines += ["", f"## {heading} ({len(entries)})", ""]
            lines += [f"- {entry}" for entry in entries] or ["(none)"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "totals": self.totals(),
            "reconciles": self.reconciles(),
            "by_type": self.by_type(),
            "not_imported": [asdict(e) for e in self.entries],
            "flagged": [asdict(e) for e in self.flags],
            "symmetry": dict(sorted(self.symmetry.items())),
        }


def _row(cells: list[Any]) -> str:
    """One Markdown table row (``|`` in a cell escaped)."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
