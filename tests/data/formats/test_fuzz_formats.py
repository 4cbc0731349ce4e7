"""Property-based fuzzing of the importers (issue 23), one test per format: valid documents
(unicode outside the BMP, nested spans, a symmetric relation type) written in the tool's
format, corrupted at random (truncated, a line deleted or duplicated, a number changed, another
encoding), imported strictly and with ``lenient``.

Checked: only the project's own errors (:class:`DataError`), never a traceback; the lenient
report reconciles; strict mode fails exactly when lenient mode reports an error; a record left
intact by the corruption is imported, whatever broke around it; uncorrupted documents come
back the same, and ``import(export(x)) == x``. Derandomized: the same examples on every run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from spert.data import DataError, RelationType, Types, read_types
from spert.data.formats.brat import write_brat
from spert.data.formats.doccano import write_doccano
from spert.data.formats.document import CharDocument, CharEntity, CharRelation
from spert.data.formats.importer import (
    DOCUMENTS_FILE,
    SPLITS,
    TYPES_FILE,
    ImportOptions,
    ImportResult,
    export_dataset,
    import_documents,
    read_document_texts,
)
from spert.data.formats.label_studio import write_label_studio

WORDS = ["Mary", "Acme", "Zürich", "東京", "😀", "𝔘nicode", "works", "in", "née", "Ω"]
TYPES = Types(("Per", "Org", "Loc"), (RelationType("Rel"), RelationType("Sym", True)))
#: Every example is imported with each corruption (hypothesis, left to choose one, keeps to
#: the first); small enough for the test suite's time budget.
FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None)
CORRUPTIONS = ["none", "truncate", "delete-line", "duplicate-line", "number", "encoding"]


@st.composite
def documents(draw: st.DrawFn) -> list[CharDocument]:
    docs = []
    for d in range(draw(st.integers(1, 3))):
        words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8))
        breaks = draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
        text, spans = "", []
        for word, line_break in zip(words, breaks):
            if text:
                text += "\n" if line_break else " "
            spans.append((len(text), len(text) + len(word)))
            text += word
        chosen = draw(
            st.lists(
                st.tuples(st.integers(0, len(words) - 1), st.integers(0, 2)),
                min_size=1 if d == 0 else 0,  # a dataset without any entity imports nothing
                max_size=4,
                unique_by=lambda t: (t[0], t[0] + t[1]),
            )
        )
        entities = []
        taken = set()
        for first, extra in chosen:
            last = min(first + extra, len(words) - 1)
            if (first, last) in taken:  # the same span twice: not a distinct entity
                continue
            taken.add((first, last))
            kind = draw(st.sampled_from(TYPES.entities))
            ident = f"T{len(entities) + 1}"
            entities.append(CharEntity(ident, kind, spans[first][0], spans[last][1]))
        pairs = draw(
            st.lists(
                st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from(["Rel", "Sym"])),
                max_size=3,
            )
        )
        relations: list[CharRelation] = []
        seen: set[tuple[str, int, int]] = set()
        for head, tail, kind in pairs:
            if head == tail or max(head, tail) >= len(entities):
                continue
            key = (kind, *sorted((head, tail))) if kind == "Sym" else (kind, head, tail)
            if key in seen:
                continue
            seen.add(key)
            r_id = f"R{len(relations) + 1}"
            ids = entities[head].id, entities[tail].id
            relations.append(CharRelation(r_id, kind, *ids, symmetric=kind == "Sym"))
        docs.append(CharDocument(f"doc{d}", text, entities, relations))
    return docs


def canonical(doc: CharDocument) -> tuple:
    """What a document says, whatever the ids: its text, spans and relations."""
    spans = {e.id: (e.start, e.end) for e in doc.entities}
    relations = set()
    for r in doc.relations:
        ends = (spans[r.head], spans[r.tail])
        relations.add((r.type, *(sorted(ends) if r.symmetric else ends)))
    entities = frozenset((e.start, e.end, e.type) for e in doc.entities)
    return doc.text, entities, frozenset(relations)


def corrupt(data: bytes, how: str, draw: st.DrawFn) -> bytes:
    lines = data.split(b"\n")
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how in ("delete-line", "duplicate-line"):
        i = draw(st.integers(0, len(lines) - 1))
        lines[i : i + 1] = [] if how == "delete-line" else [lines[i], lines[i]]
        return b"\n".join(lines)
    if how == "number":
        digits = [i for i, b in enumerate(data) if chr(b).isdigit()]
        if not digits:
            return data
        i = draw(st.sampled_from(digits))
        return data[:i] + str(draw(st.integers(0, 99))).encode() + data[i + 1 :]
    if how == "encoding":
        text = data.decode("utf-8")
        codec = draw(st.sampled_from(["utf-16", "latin-1", "cp1252"]))
        return text.encode(codec, errors="replace")
    return data


def run(fmt: str, inputs: list[str], lenient: bool, out: Path) -> ImportResult | DataError:
    options = ImportOptions(
        words="whitespace", unit="document", split=(1.0, 0.0, 0.0), lenient=lenient
    )
    try:
        return import_documents(fmt, out, inputs, options=options)
    except DataError as e:  # FormatError included; any other exception fails the test
        return e


def imported(result: ImportResult) -> list[CharDocument]:
    return [d for name in SPLITS for d in result.documents[name]]


def check(
    fmt: str, inputs: list[str], tmp: Path, how: str, intact: list[CharDocument]
) -> ImportResult | DataError:
    """The properties every import of a (perhaps corrupted) input has; returns the strict
    outcome."""
    strict = run(fmt, inputs, False, tmp / "strict")
    lenient = run(fmt, inputs, True, tmp / "lenient")
    if isinstance(lenient, DataError):
        assert str(lenient).startswith("nothing imported"), lenient
        assert isinstance(strict, DataError)
        return strict
    report = lenient.report
    assert report.reconciles(), report.totals()
    errors = [e for e in report.entries if e.reason == "error"]
    # Strict mode fails exactly when something was invalid (what lenient mode reports).
    assert isinstance(strict, DataError) == bool(errors), (strict, errors)
    if not isinstance(strict, DataError):
        assert [canonical(d) for d in imported(strict)] == [canonical(d) for d in imported(lenient)]
    # A record the corruption left intact is imported as it was.
    found = {canonical(d) for d in imported(lenient)}
    for doc in intact:
        assert canonical(doc) in found, (how, doc)
    if how == "none":
        assert not isinstance(strict, DataError), strict
    return strict


def round_trip(fmt: str, docs: list[CharDocument], result: ImportResult, tmp: Path) -> None:
    """import(export(x)) == x: the dataset exported to the tool's format and imported again."""
    folder = tmp / "strict"
    exported = tmp / ("exported" if fmt == "brat" else "exported.json")
    export_dataset(
        fmt,
        [folder / f"{name}.json" for name in SPLITS],
        exported,
        read_types(folder / TYPES_FILE),
        read_document_texts(folder / DOCUMENTS_FILE),
    )
    again = run(fmt, [str(exported)], False, tmp / "again")
    assert not isinstance(again, DataError), again
    assert [canonical(d) for d in imported(again)] == [canonical(d) for d in docs]
    assert {r.name: r.symmetric for r in again.types.relations}.get("Sym") in (None, True)


def certainly_invalid(fmt: str, original: bytes, corrupted: bytes) -> bool:
    """Whether the corruption made the file invalid, judged from the bytes alone (not from
    what the importer reports): no longer UTF-8; Label Studio's JSON list cut short (its
    closing bracket gone); a doccano line cut in the middle of a record."""
    if corrupted.strip() == original.strip():  # only white space lost
        return False
    try:
        corrupted.decode("utf-8")
    except UnicodeDecodeError:
        return True
    if fmt == "label-studio" and original.startswith(corrupted):
        return corrupted.strip() != b""  # an empty file is an error of its own
    if fmt == "doccano" and original.startswith(corrupted):
        last = corrupted.split(b"\n")[-1]
        return last.strip() != b"" and last not in original.split(b"\n")
    return False


def intact_lines(original: bytes, corrupted: bytes, records: dict[bytes, CharDocument]) -> list:
    """The documents whose record line is still whole in a UTF-8 ``corrupted`` file."""
    try:
        corrupted.decode("utf-8")
    except UnicodeDecodeError:
        return []
    lines = {line.rstrip(b",") for line in corrupted.split(b"\n")}
    return [doc for line, doc in records.items() if line in lines]


def fuzz_json_file(
    fmt: str, docs: list[CharDocument], how: str, data: st.DataObject, name: str
) -> None:
    """Write ``docs`` as one file of a JSON format (a record a line), corrupt it, check."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        path = tmp / name
        if fmt == "doccano":
            write_doccano(docs, path)
        else:
            write_label_studio(docs, path, TYPES)
        original = path.read_bytes()
        path.write_bytes(corrupt(original, how, data.draw))
        # One record a line: doccano's JSON Lines, and the list the Label Studio writer writes
        # ("[", then a task a line, each but the last followed by a comma, then "]").
        lines = [line.rstrip(b",") for line in original.split(b"\n") if line.startswith(b"{")]
        intact = intact_lines(original, path.read_bytes(), dict(zip(lines, docs)))
        strict = check(fmt, [str(path)], tmp, how, intact)
        if certainly_invalid(fmt, original, path.read_bytes()):
            assert isinstance(strict, DataError), (how, path.read_bytes()[-80:])
        if how == "none":
            assert isinstance(strict, ImportResult)
            assert [canonical(d) for d in imported(strict)] == [canonical(d) for d in docs]
            round_trip(fmt, docs, strict, tmp)


@FUZZ
@given(docs=documents(), data=st.data())
def test_fuzz_doccano(docs: list[CharDocument], data: st.DataObject) -> None:
    for how in CORRUPTIONS:
        fuzz_json_file("doccano", docs, how, data, "docs.jsonl")


@FUZZ
@given(docs=documents(), data=st.data())
def test_fuzz_label_studio(docs: list[CharDocument], data: st.DataObject) -> None:
    for how in CORRUPTIONS:
        fuzz_json_file("label-studio", docs, how, data, "tasks.json")


@FUZZ
@given(docs=documents(), data=st.data())
def test_fuzz_brat(docs: list[CharDocument], data: st.DataObject) -> None:
    for how in CORRUPTIONS:
        fuzz_brat(docs, how, data)


def fuzz_brat(docs: list[CharDocument], how: str, data: st.DataObject) -> None:
    """Write ``docs`` as a brat folder, corrupt one of its files, check."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        folder = tmp / "brat"
        anns = write_brat(docs, folder, TYPES)
        victim = anns[data.draw(st.integers(0, len(anns) - 1))]
        if how == "encoding" and data.draw(st.booleans()):
            victim = victim.with_suffix(".txt")
        original = victim.read_bytes()
        victim.write_bytes(corrupt(original, how, data.draw))
        intact = [d for d, ann in zip(docs, anns) if victim.stem != ann.stem]
        if victim.read_bytes() == original:
            intact = list(docs)
        strict = check("brat", [str(folder)], tmp, how, intact)
        lines = [line for line in victim.read_bytes().split(b"\n") if line.strip()]
        if victim.suffix == ".ann" and len(set(lines)) < len(lines):
            assert isinstance(strict, DataError)  # an annotation id used twice is invalid
        if certainly_invalid("brat", original, victim.read_bytes()):
            assert isinstance(strict, DataError), (how, victim.name)
        if not isinstance(strict, DataError):
            assert strict.report.read["document"] == len(anns)
            n_t = sum(
                line.startswith("T") for a in anns for line in a.read_text("utf-8").split("\n")
            )
            assert strict.report.read["entity"] == n_t
        if how == "none":
            assert isinstance(strict, ImportResult)
            assert [canonical(d) for d in imported(strict)] == [canonical(d) for d in docs]
            round_trip("brat", docs, strict, tmp)
