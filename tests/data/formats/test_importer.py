"""``spert import`` / ``spert export``: splits by document, the dataset folder, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED

from spert.cli import main
from spert.data import (
    DataError,
    Entity,
    Sentence,
    Types,
    read_dataset,
    read_types,
    write_dataset,
)
from spert.data.formats import brat, importer
from spert.data.formats.document import CharDocument
from spert.data.formats.importer import (
    ImportOptions,
    export_dataset,
    import_documents,
    parse_split,
    split_documents,
)
from spert.data.formats.report import FormatError

BRAT = SHARED / "annotations" / "brat"
CONLL04 = SHARED / "datasets" / "conll04"


def test_split_is_by_document_and_seeded() -> None:
    docs = [CharDocument(f"d{i}", "x") for i in range(20)]
    a = split_documents(docs, (0.8, 0.1, 0.1), seed=1)
    assert [len(a[k]) for k in ("train", "dev", "test")] == [16, 2, 2]
    assert sorted(d.id for part in a.values() for d in part) == sorted(d.id for d in docs)
    assert a == split_documents(docs, (0.8, 0.1, 0.1), seed=1)
    assert a != split_documents(docs, (0.8, 0.1, 0.1), seed=2)
    # Each split keeps the input order.
    assert [d.id for d in a["train"]] == sorted(
        (d.id for d in a["train"]), key=lambda i: int(i[1:])
    )


@pytest.mark.parametrize("text", ["0.8,0.2", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"])
def test_bad_split_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="three fractions"):
        parse_split(text)


def _ann_pair(folder: Path, name: str, text: str, ann: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text(text)
    (folder / f"{name}.ann").write_text(ann)


def test_import_writes_the_dataset_folder(tmp_path: Path) -> None:
    for i in range(5):
        _ann_pair(
            tmp_path / "in",
            f"doc{i}",
            "Mary works for Acme. Acme is in Boston.",
            "T1\tPerson 0 4\tMary\nT2\tOrg 15 19\tAcme\nT3\tLoc 32 38\tBoston\n"
            "R1\tWorksFor Arg1:T1 Arg2:T2\nR2\tIn Arg1:T1 Arg2:T3\n",
        )
    out = tmp_path / "out"
    result = import_documents(
        "brat",
        out,
        [str(tmp_path / "in" / "*.ann")],
        options=ImportOptions(seed=3, split=(0.6, 0.2, 0.2)),
    )
    assert {p.name for p in out.iterdir()} == {
        "train.json", "dev.json", "test.json", "types.json", "documents.jsonl",
        "import_report.json", "import_report.md",
    }  # fmt: skip
    types = read_types(out / "types.json")
    assert types.entities == ("Person", "Org", "Loc")
    doc_ids = {}
    for name in ("train", "dev", "test"):
        sentences = read_dataset(out / f"{name}.json", types)
        assert all(s.offsets is not None and s.doc_id is not None for s in sentences)
        doc_ids[name] = {s.doc_id for s in sentences}
    assert [len(doc_ids[n]) for n in ("train", "dev", "test")] == [3, 1, 1]
    assert not doc_ids["train"] & (doc_ids["dev"] | doc_ids["test"])
    record = json.loads((out / "import_report.json").read_text())
    assert record["reconciles"] is True
    assert record["totals"]["relation"] == {
        "read": 10, "imported": 5, "not_imported": {"cross-sentence": 5}, "flagged": {},
        "reconciles": True,
    }  # fmt: skip
    assert record["by_type"]["relation"]["In"] == {"cross-sentence": 5}
    markdown = (out / "import_report.md").read_text()
    assert "| relation | 10 | 5 | 5 |" in markdown and "R2: relation cross-sentence" in markdown
    assert result.summary()["train"]["documents"] == 3


def test_split_inputs_are_kept_as_given(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _ann_pair(tmp_path / name, name, "Mary .", "T1\tPerson 0 4\tMary\n")
    result = import_documents(
        "brat",
        tmp_path / "out",
        split_inputs={
            "train": [str(tmp_path / "a"), str(tmp_path / "b")],
            "test": [str(tmp_path / "c")],
        },
    )
    assert {k: [d.id for d in v] for k, v in result.documents.items()} == {
        "train": ["a", "b"], "dev": [], "test": ["c"],
    }  # fmt: skip


def test_cli_import_errors_and_lenient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _ann_pair(tmp_path / "in", "bad", "Mary .", "T1\tPerson 0 4\tMary\nR1\tX Arg1:T1 Arg2:T7\n")
    with pytest.raises(SystemExit, match=r"bad.ann, line 2, annotation R1: .*'T7'"):
        main(["import", "brat", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"])
    with pytest.raises(FormatError):  # the same error through the API
        import_documents("brat", tmp_path / "out", [str(tmp_path / "in")])
    main(
        [
            "import",
            "brat",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "o"),
            "--lenient",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert "relation: 1 read, 0 imported; not imported: 1 error" in printed
    assert "totals reconcile" in printed


@pytest.mark.skipif(not BRAT.is_dir(), reason=f"shared brat samples absent ({BRAT})")
def test_bionlp_import_export_import_is_exact(tmp_path: Path) -> None:
    corpus = BRAT / "bionlp-st-2011-rel"
    main(["import", "brat", str(corpus), "--out", str(tmp_path / "a"), "--seed", "1", "--quiet"])
    data = [str(tmp_path / "a" / f"{n}.json") for n in ("train", "dev", "test")]
    main(["export", "brat", *data, "--out", str(tmp_path / "brat")])
    for txt in corpus.glob("*.txt"):  # the exact characters of every document come back
        assert (tmp_path / "brat" / txt.name).read_bytes() == txt.read_bytes()
    main(
        [
            "import",
            "brat",
            str(tmp_path / "brat"),
            "--out",
            str(tmp_path / "b"),
            "--split",
            "1,0,0",
            "--quiet",
        ]
    )
    types = read_types(tmp_path / "a" / "types.json")
    assert read_types(tmp_path / "b" / "types.json") == types
    first = [s for path in data for s in read_dataset(path, types)]
    again = read_dataset(tmp_path / "b" / "train.json", types)

    def by_doc(sentences: list) -> dict:
        out: dict = {}
        for s in sentences:
            out.setdefault(s.doc_id, []).append(s.to_dict())
        return out

    assert by_doc(again) == by_doc(first)


@pytest.mark.skipif(
    not (CONLL04 / "conll04_test.json").is_file(), reason=f"shared CoNLL04 absent ({CONLL04})"
)
def test_conll04_test_exported_as_brat_comes_back_the_same(tmp_path: Path) -> None:
    data, types_file = CONLL04 / "conll04_test.json", CONLL04 / "conll04_types.json"
    main(["export", "brat", str(data), "--types", str(types_file), "--out", str(tmp_path / "brat")])
    main(
        ["import", "brat", str(tmp_path / "brat"), "--out", str(tmp_path / "back"),
         "--words", "whitespace", "--split", "1,0,0", "--quiet"]
    )  # fmt: skip
    types = read_types(types_file)
    original = read_dataset(data, types)
    back = read_dataset(tmp_path / "back" / "train.json", types)
    record = json.loads((tmp_path / "back" / "import_report.json").read_text())
    assert record["not_imported"] == [] and record["reconciles"]
    # One document per sentence, named by position: sentence-000001, ... (read in that order).
    assert [s.doc_id for s in back] == [f"sentence-{i + 1:06d}" for i in range(len(original))]
    assert [(s.tokens, s.entities, s.relations) for s in back] == [
        (s.tokens, s.entities, s.relations) for s in original
    ]
    assert read_types(tmp_path / "back" / "types.json").symmetric == types.symmetric


# -- issue 23: atomic folders, exact errors, nothing lost ------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def _three_docs(folder: Path, name: str = "doc") -> Path:
    for i in range(3):
        _ann_pair(folder, f"{name}{i}", f"Mary {i} works for Acme.", "T1\tPerson 0 4\tMary\n")
    return folder


def test_interrupted_import_leaves_the_previous_folder_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    import_documents(
        "brat", out, [str(_three_docs(tmp_path / "in"))], options=ImportOptions(seed=1)
    )
    before = _snapshot(out)
    _ann_pair(tmp_path / "in", "doc9", "Acme hired Bob.", "T1\tOrg 0 4\tAcme\n")
    real = importer.write_dataset
    calls = []

    def interrupted(path: Any, sentences: Any) -> None:
        calls.append(path)
        real(path, sentences)
        if len(calls) == 2:  # right after train.json and dev.json are written
            raise KeyboardInterrupt

    monkeypatch.setattr(importer, "write_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_documents("brat", out, [str(tmp_path / "in")], options=ImportOptions(seed=2))
    assert _snapshot(out) == before
    assert _siblings(out) == ["in", "out"]  # no temporary folder left


def test_import_replaces_the_whole_folder_and_refuses_foreign_files(tmp_path: Path) -> None:
    inputs = [str(_three_docs(tmp_path / "in"))]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"notes.txt.*--overwrite"):
        import_documents("brat", out, inputs)
    assert _snapshot(out) == {"notes.txt": b"mine"}
    import_documents("brat", out, inputs, options=ImportOptions(overwrite=True))
    assert "notes.txt" not in _snapshot(out) and "train.json" in _snapshot(out)
    # A dataset folder an import wrote is replaced without asking; a stale file of it goes.
    (out / "import_report.md").write_text("stale")
    import_documents("brat", out, inputs)
    assert (out / "import_report.md").read_text() != "stale"


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_naming_a_file_is_a_one_line_error(tmp_path: Path, where: str) -> None:
    inputs = str(_three_docs(tmp_path / "in"))
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "data"
    with pytest.raises(SystemExit) as e:
        main(["import", "brat", inputs, "--out", str(out), "--quiet"])
    assert str(out) in str(e.value.code) and "not a folder" in str(e.value.code)
    data = tmp_path / "in.json"
    write_dataset(data, [Sentence(["Mary"], [Entity("Person", 0, 1)])])
    types = tmp_path / "types.json"
    types.write_text('{"entities": {"Person": {}}, "relations": {}}')
    with pytest.raises(SystemExit) as e:
        main(["export", "brat", str(data), "--types", str(types), "--out", str(out)])
    assert str(out) in str(e.value.code) and "not a folder" in str(e.value.code)


def _export_brat(tmp_path: Path, names: list[str], out: Path, *extra: str) -> None:
    data = tmp_path / f"{'-'.join(names)}.json"
    write_dataset(data, [Sentence(["Mary"], [Entity("Person", 0, 1)], doc_id=n) for n in names])
    types = tmp_path / "types.json"
    types.write_text('{"entities": {"Person": {}}, "relations": {}}')
    main(["export", "brat", str(data), "--types", str(types), "--out", str(out), *extra])


def test_brat_export_refuses_a_folder_of_other_documents_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "brat"
    _export_brat(tmp_path, ["a", "b"], out)
    before = _snapshot(out)
    with pytest.raises(SystemExit, match=r"a\.txt.*--overwrite"):
        _export_brat(tmp_path, ["c"], out)
    assert _snapshot(out) == before
    _export_brat(tmp_path, ["a", "b"], out)  # the same documents again: replaced
    _export_brat(tmp_path, ["c"], out, "--overwrite")
    assert sorted(_snapshot(out)) == ["annotation.conf", "c.ann", "c.txt"]


def test_interrupted_brat_export_leaves_the_previous_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "brat"
    _export_brat(tmp_path, ["a", "b"], out)
    before = _snapshot(out)
    real = brat.ann_text

    def interrupted(doc: CharDocument) -> str:
        if doc.id == "b":
            raise KeyboardInterrupt
        return real(doc)

    monkeypatch.setattr(brat, "ann_text", interrupted)
    data = tmp_path / "ab2.json"
    write_dataset(data, [Sentence(["Bob"], [Entity("Person", 0, 1)], doc_id=n) for n in "ab"])
    with pytest.raises(KeyboardInterrupt):
        export_dataset("brat", [data], out, Types(("Person",), ()))
    assert _snapshot(out) == before
    assert _siblings(out) == sorted(["a-b.json", "ab2.json", "brat", "types.json"])


def _ls_task(text: str, **fields: Any) -> dict[str, Any]:
    return {"id": 1, "data": {"text": text}, **fields}


_ENTITY = {"id": "r1", "type": "labels", "to_name": "text", "from_name": "label",
           "value": {"start": 0, "end": 4, "text": "Mary", "labels": ["Peop"]}}  # fmt: skip
NOTHING_IMPORTED = {
    "empty-file": ("label-studio", "", [], "empty"),
    "empty-list": ("label-studio", "[]", [], "empty"),
    "truncated": (
        "label-studio",
        '[{"data": {"text": "Mary"}, "annotations": [',
        [],
        "invalid JSON",
    ),
    "not-a-list": ("label-studio", '"Mary works"', [], "not a task"),
    "not-utf8": ("doccano", b'{"text": "caf\xe9", "entities": []}', [], "not UTF-8"),
    "classification": (
        "label-studio",
        json.dumps(
            [
                _ls_task(
                    "Mary",
                    annotations=[
                        {
                            "id": 5,
                            "result": [
                                {"id": "c", "type": "choices", "value": {"choices": ["pos"]}}
                            ],
                        }
                    ],
                )
            ]
        ),  # fmt: skip
        [],
        "choices",
    ),
    "annotator-nobody": (
        "label-studio",
        json.dumps(
            [_ls_task("Mary", annotations=[{"id": 5, "completed_by": 3, "result": [_ENTITY]}])]
        ),
        ["--annotation", "annotator:someone@example.com"],
        "other annotator",
    ),
    "no-prediction": (
        "label-studio",
        json.dumps([_ls_task("Mary", annotations=[{"id": 5, "result": [_ENTITY]}])]),
        ["--annotation", "prediction"],
        "no prediction",
    ),
}


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("case", list(NOTHING_IMPORTED))
def test_nothing_imported_says_what_was_read_and_why(
    tmp_path: Path, case: str, lenient: bool
) -> None:
    fmt, content, extra, reason = NOTHING_IMPORTED[case]
    path = tmp_path / "export.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    out = tmp_path / "out"
    args = ["import", fmt, str(path), "--out", str(out), "--quiet", *extra]
    with pytest.raises(SystemExit) as e:
        main(args + (["--lenient"] if lenient else []))
    message = str(e.value.code)
    assert str(path) in message and reason in message, message
    assert "\n" not in message
    assert not out.exists()
    if lenient or "error" not in message:  # a strict error stops before any report
        report = tmp_path / "out.import_report.md"
        assert report.is_file() and reason in report.read_text("utf-8"), message


def test_mixed_symmetry_is_reported_and_symmetric_decides(tmp_path: Path) -> None:
    records = [
        {"id": i, "text": "Mary met John.", "relations": [{"id": 0, "from_id": 1, "to_id": 2,
         "type": "Meets", **({"symmetric": True} if i else {})}], "entities": [
            {"id": 1, "start_offset": 0, "end_offset": 4, "label": "Peop"},
            {"id": 2, "start_offset": 9, "end_offset": 13, "label": "Peop"}]}
        for i in range(3)
    ]  # fmt: skip
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    directed = import_documents("doccano", tmp_path / "a", [str(path)])
    assert directed.types.symmetric == frozenset()
    symmetry = directed.report.to_dict()["symmetry"]
    assert symmetry == {"Meets": {"relations": 3, "marked_symmetric": 2, "symmetric": False}}
    assert "2 of 3" in (tmp_path / "a" / "import_report.md").read_text()
    options = ImportOptions(symmetric=("Meets",))
    both = import_documents("doccano", tmp_path / "b", [str(path)], options=options)
    assert both.types.symmetric == {"Meets"}
    assert both.report.to_dict()["symmetry"]["Meets"]["symmetric"] is True
    with pytest.raises(DataError, match="--symmetric Nope"):
        import_documents(
            "doccano", tmp_path / "c", [str(path)], options=ImportOptions(symmetric=("Nope",))
        )


def test_same_document_in_two_splits_is_a_split_leak(tmp_path: Path) -> None:
    folder = _three_docs(tmp_path / "in")
    one = str(folder / "doc0.ann")
    result = import_documents("brat", tmp_path / "out", split_inputs={"train": [one], "dev": [one]})
    leaks = [f for f in result.report.flags if f.reason == "split leak"]
    assert len(leaks) == 1 and "train" in leaks[0].detail


def test_negative_max_span_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--max-span-size"):
        main(["import", "brat", str(_three_docs(tmp_path / "in")), "--out", str(tmp_path / "o"),
              "--max-span-size", "-1", "--quiet"])  # fmt: skip


def test_export_says_when_texts_were_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write_dataset(folder / "train.json", [Sentence(["Mary"], [Entity("Person", 0, 1)], doc_id="x")])
    (folder / "types.json").write_text('{"entities": {"Person": {}}, "relations": {}}')
    (folder / "documents.jsonl").write_text('{"id": "other", "text": "Bob"}\n')
    main(["export", "doccano", str(folder / "train.json"), "--out", str(tmp_path / "d.jsonl")])
    printed = capsys.readouterr().out
    assert "texts from" not in printed, printed
    assert "texts rebuilt from the tokens: no document id is in" in printed, printed


def test_declared_label_studio_types_are_kept(tmp_path: Path) -> None:
    config = SHARED / "annotations" / "label-studio" / "news.label_config.xml"
    path = tmp_path / "export.json"
    path.write_text(json.dumps([_ls_task("Mary", annotations=[{"id": 5, "result": [_ENTITY]}])]))
    options = ImportOptions(label_config=str(config))
    result = import_documents("label-studio", tmp_path / "out", [str(path)], options=options)
    assert result.types.entities == ("Loc", "Org", "Peop", "Other")  # the config's order
    assert len(result.types.relations) == 5


LS_EXPORTS = SHARED / "annotations" / "label-studio"


@pytest.mark.skipif(not LS_EXPORTS.is_dir(), reason=f"shared exports absent ({LS_EXPORTS})")
def test_prediction_ids_only_export_says_how_to_export_them(tmp_path: Path) -> None:
    ids_only = str(LS_EXPORTS / "news_export_json.json")
    options = ImportOptions(annotation="prediction")
    with pytest.raises(FormatError, match=r"task 21, .*prediction ids.*snapshot"):
        import_documents("label-studio", tmp_path / "a", [ids_only], options=options)
    lenient = ImportOptions(annotation="prediction", lenient=True)
    with pytest.raises(DataError, match=r"8 .*prediction ids.*snapshot") as e:
        import_documents("label-studio", tmp_path / "b", [ids_only], options=lenient)
    assert "no entity type" not in str(e.value)
    snapshot = str(LS_EXPORTS / "news_export_snapshot_with_predictions.json")
    result = import_documents("label-studio", tmp_path / "c", [snapshot], options=options)
    assert len([d for docs in result.documents.values() for d in docs]) == 8
