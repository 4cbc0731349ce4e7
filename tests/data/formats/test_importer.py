"""``spert import`` / ``spert export``: splits by document, the dataset folder, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED

from spert.cli import main
from spert.data import read_dataset, read_types
from spert.data.formats.document import CharDocument
from spert.data.formats.importer import (
    ImportOptions,
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
