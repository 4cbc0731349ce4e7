"""JSON values of the tool formats: recovery that never loses a good record, and input that
used to end in a traceback (deep nesting, huge integers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spert.data.formats.doccano import read_doccano
from spert.data.formats.report import FormatError, ImportReport
from spert.data.formats.tools import iter_json_values


def _record(i: int) -> str:
    return json.dumps({"id": i, "text": f"Mary {i} works.", "entities": [], "relations": []})


def test_truncated_json_lines_record_loses_only_itself(tmp_path: Path) -> None:
    lines = [_record(i) for i in range(4)]
    lines[1] = lines[1][: lines[1].index(",") + 1]  # cut after a comma
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ImportReport(lenient=True)
    docs = read_doccano([path], report)
    assert [d.id for d in docs] == ["0", "2", "3"]
    assert report.read["record"] == 4
    assert report.imported["record"] == 3
    assert report.not_imported["record"] == {"error": 1}
    [entry] = report.entries
    assert entry.where.startswith("record 2 (line 2")
    # Strict: the error names the broken record's own line, not the next record's.
    with pytest.raises(FormatError, match=r"record 2 \(line 2"):
        read_doccano([path], ImportReport())


def test_broken_element_of_a_json_list_loses_only_itself(tmp_path: Path) -> None:
    lines = [_record(i) for i in range(4)]
    lines[2] = lines[2][:20]
    path = tmp_path / "docs.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    report = ImportReport(lenient=True)
    docs = read_doccano([path], report)
    assert [d.id for d in docs] == ["0", "1", "3"]
    assert (report.read["record"], report.imported["record"]) == (4, 3)
    assert report.reconciles()


def test_pretty_printed_list_elements_are_recovered(tmp_path: Path) -> None:
    records = [json.loads(_record(i)) for i in range(3)]
    text = json.dumps(records, indent=2)
    broken = text.replace('"text": "Mary 1 works."', '"text": "Mary 1 works.",,', 1)
    path = tmp_path / "docs.json"
    path.write_text(broken, encoding="utf-8")
    report = ImportReport(lenient=True)
    assert [d.id for d in read_doccano([path], report)] == ["0", "2"]
    assert (report.read["record"], report.imported["record"]) == (3, 2)


@pytest.mark.parametrize("lenient", [False, True])
def test_deeply_nested_json_is_an_error_not_a_traceback(tmp_path: Path, lenient: bool) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000, encoding="utf-8")
    report = ImportReport(lenient=lenient)
    if not lenient:
        with pytest.raises(FormatError, match="nested too deeply"):
            list(iter_json_values(path, path.read_text(), report))
        return
    assert list(iter_json_values(path, path.read_text(), report)) == []
    assert report.not_imported["record"] == {"error": 1}
    assert "nested too deeply" in report.entries[0].detail


@pytest.mark.parametrize("lenient", [False, True])
def test_5001_digit_integer_is_an_error_not_a_traceback(tmp_path: Path, lenient: bool) -> None:
    huge = "9" * 5001
    path = tmp_path / "docs.jsonl"
    bad = '{"text": "Mary", "entities": [{"id": 1, "start_offset": ' + huge + "}]}"
    path.write_text(_record(0) + "\n" + bad + "\n" + _record(2) + "\n", encoding="utf-8")
    report = ImportReport(lenient=lenient)
    if not lenient:
        with pytest.raises(FormatError, match=r"record 2 \(line 2.*digits"):
            read_doccano([path], report)
        return
    assert [d.id for d in read_doccano([path], report)] == ["0", "2"]
    assert report.not_imported["record"] == {"error": 1}
