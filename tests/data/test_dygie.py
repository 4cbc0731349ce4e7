"""``spert convert dygie``: SciERC documents to SpERT JSON; SciERC's symmetric types in use."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DATASETS

from spert import SpertConfig
from spert.api import SpERT
from spert.cli.data import register as add_parser
from spert.data import DataError, read_dataset, read_types
from spert.data.dygie import convert_dygie, read_dygie
from spert.evaluation import evaluate
from spert.training import train

SCIERC = DATASETS / "scierc"
needs_scierc = pytest.mark.skipif(not SCIERC.is_dir(), reason="../shared/datasets not present")


def without_orig_id(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "orig_id"}


@needs_scierc
def test_scierc_test_documents_convert_to_scierc_test_json(tmp_path: Path) -> None:
    types = read_types(SCIERC / "scierc_types.json")
    out = tmp_path / "test.json"
    convert_dygie(SCIERC / "documents" / "test.json", out, types)
    converted = json.loads(out.read_text(encoding="utf-8"))
    reference = json.loads((SCIERC / "scierc_test.json").read_text(encoding="utf-8"))
    assert len(converted) == len(reference) == 551
    # Every record equal, field by field, except orig_id: the reference's are random UUIDs
    # (version 4) that appear nowhere in the documents, so no conversion can reproduce them.
    for i, (ours, theirs) in enumerate(zip(converted, reference)):
        assert without_orig_id(ours) == without_orig_id(theirs), f"record {i}"
    assert all(r["orig_id"][14] == "4" for r in reference)
    docs = [json.loads(line) for line in (SCIERC / "documents" / "test.json").open()]
    expected_ids = [f"{d['doc_key']}_{k}" for d in docs for k in range(len(d["sentences"]))]
    assert [r["orig_id"] for r in converted] == expected_ids
    # The types file validates the result; bracket escapes are gone.
    sentences = read_dataset(out, types)
    assert not {t for s in sentences for t in s.tokens} & {"-LRB-", "-RRB-", "-LSB-", "-RSB-"}
    assert {"(", ")", "[", "]"} <= {t for s in sentences for t in s.tokens}


@needs_scierc
def test_scierc_dev_converts_exactly_and_train_but_for_curly_brackets(tmp_path: Path) -> None:
    types = read_types(SCIERC / "scierc_types.json")
    dev = [s.to_dict() for s in read_dygie(SCIERC / "documents" / "dev.json", types)]
    reference = json.loads((SCIERC / "scierc_dev.json").read_text(encoding="utf-8"))
    assert [without_orig_id(r) for r in dev] == [without_orig_id(r) for r in reference]

    # scierc_train.json keeps -LCB- / -RCB- (in one sentence) where the conversion writes
    # { and }: that sentence differs in exactly those two tokens, all others are equal.
    train_set = [s.to_dict() for s in read_dygie(SCIERC / "documents" / "train.json", types)]
    reference = json.loads((SCIERC / "scierc_train.json").read_text(encoding="utf-8"))
    assert len(train_set) == len(reference)
    differing = [
        i
        for i, (a, b) in enumerate(zip(train_set, reference))
        if without_orig_id(a) != without_orig_id(b)
    ]
    assert len(differing) == 1
    ours, theirs = train_set[differing[0]], reference[differing[0]]
    diff = [(a, b) for a, b in zip(ours["tokens"], theirs["tokens"]) if a != b]
    assert diff == [("{", "-LCB-"), ("}", "-RCB-")]
    assert without_orig_id({**ours, "tokens": theirs["tokens"]}) == without_orig_id(theirs)


def write_docs(path: Path, *docs: object) -> Path:
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    return path


GOOD_DOC = {
    "doc_key": "D1",
    "sentences": [["A", "-LRB-", "B", "-RRB-", "."], ["C", "uses", "D", "."]],
    "ner": [[[0, 0, "METHOD"], [2, 2, "Task"]], [[5, 5, "Method"], [7, 7, "Task"]]],
    "relations": [[[0, 0, 2, 2, "USED-FOR"]], [[7, 7, 5, 5, "conjunction"]]],
}


def test_offsets_brackets_and_type_spelling(tmp_path: Path, types_file: Path) -> None:
    types = read_types(types_file)
    sentences = list(read_dygie(write_docs(tmp_path / "d.json", GOOD_DOC), types))
    assert [s.tokens for s in sentences] == [["A", "(", "B", ")", "."], ["C", "uses", "D", "."]]
    assert [(e.type, e.start, e.end) for e in sentences[1].entities] == [
        ("Method", 0, 1),
        ("Task", 2, 3),
    ]
    assert [(r.type, r.head, r.tail) for r in sentences[0].relations] == [("Used-for", 0, 1)]
    assert [(r.type, r.head, r.tail) for r in sentences[1].relations] == [("Conjunction", 1, 0)]
    assert [s.orig_id for s in sentences] == ["D1_0", "D1_1"]
    # Without a types file labels stay as written.
    raw = list(read_dygie(tmp_path / "d.json"))
    assert raw[0].entities[0].type == "METHOD" and raw[1].relations[0].type == "conjunction"


def test_nested_entity_with_same_span_relation_points_at_first(tmp_path: Path) -> None:
    doc = {
        "doc_key": "D2",
        "sentences": [["a", "b", "c"]],
        "ner": [[[0, 1, "X"], [0, 1, "Y"], [1, 1, "Z"], [2, 2, "X"]]],
        "relations": [[[0, 1, 2, 2, "R"], [1, 1, 0, 1, "R"]]],
    }
    (sentence,) = read_dygie(write_docs(tmp_path / "d.json", doc))
    assert [(e.start, e.end) for e in sentence.entities] == [(0, 2), (0, 2), (1, 2), (2, 3)]
    assert [(r.head, r.tail) for r in sentence.relations] == [(0, 3), (2, 0)]


@pytest.fixture()
def types_file(tmp_path: Path) -> Path:
    path = tmp_path / "types.json"
    path.write_text(
        json.dumps(
            {
                "entities": {"Method": {}, "Task": {}},
                "relations": {"Used-for": {}, "Conjunction": {"symmetric": True}},
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sentences": "x"}, "line 2 (doc_key 'D1'), field 'sentences'"),
        ({"ner": [[]]}, "field 'ner': must be a list with one entry per sentence"),
        (
            {"ner": [[[0, 0, "Method"]], [[4, 5, "Task"]]], "relations": [[], []]},
            "field 'ner[1][0]': span [4, 5] is not within the sentence's tokens 5..8",
        ),
        ({"ner": [[[0, 0]], []]}, "field 'ner[0][0]': must be [start, end, type]"),
        ({"ner": [[[0, 0, "Thing"]], []]}, "field 'ner[0][0]': entity type 'Thing' is not in"),
        (
            {"relations": [[[0, 0, 1, 1, "USED-FOR"]], []]},
            "field 'relations[0][0]': the tail [1, 1] is no entity of sentence 0",
        ),
        ({"relations": [[[0, 0, 2, 2, "Likes"]], []]}, "relation type 'Likes' is not in"),
        ({"relations": [[[0, 0, 2]], []]}, "field 'relations[0][0]': must be [head_start"),
        (
            {"sentences": [GOOD_DOC["sentences"][0], []]},
            "field 'sentences[1]': must be a non-empty list",
        ),
    ],
)
def test_bad_documents_name_file_line_and_field(
    tmp_path: Path, types_file: Path, change: dict, needle: str
) -> None:
    path = write_docs(tmp_path / "d.json", GOOD_DOC, {**GOOD_DOC, **change})
    with pytest.raises(DataError) as err:
        list(read_dygie(path, read_types(types_file)))
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_invalid_json_line_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(GOOD_DOC) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.json, line 2: invalid JSON"):
        list(read_dygie(path))
    with pytest.raises(DataError, match="no such file"):
        list(read_dygie(tmp_path / "missing.json"))


def test_cli_parser_converts_and_writes_nothing_on_error(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    source = write_docs(tmp_path / "d.json", GOOD_DOC)
    out = tmp_path / "out.jsonl"
    args = parser.parse_args(["convert", "dygie", "--input", str(source), "--out", str(out)])
    args.func(args)
    assert "2 sentences, 4 entities, 2 relations" in capsys.readouterr().out
    assert [json.loads(line)["orig_id"] for line in out.read_text().splitlines()] == [
        "D1_0",
        "D1_1",
    ]
    bad = write_docs(tmp_path / "bad.json", {**GOOD_DOC, "ner": 3})
    args = parser.parse_args(["convert", "dygie", "--input", str(bad), "--out", str(out) + "2"])
    with pytest.raises(DataError):
        args.func(args)
    assert not Path(str(out) + "2").exists()


@needs_scierc
def test_scierc_symmetric_types_train_save_and_evaluate(bert_dir: Path, tmp_path: Path) -> None:
    """SciERC end to end on a few sentences: its types file marks Compare and Conjunction
    symmetric, and training, saving, loading and evaluating keep them so."""
    types = read_types(SCIERC / "scierc_types.json")
    assert types.symmetric == frozenset({"Compare", "Conjunction"})
    data = read_dataset(SCIERC / "scierc_test.json", types)
    some = [s for s in data if any(r.type in types.symmetric for r in s.relations)][:6]
    # A large learning rate: the model then predicts few entities, which are quick to score.
    config = SpertConfig(encoder=str(bert_dir), epochs=1, neg_entity_count=30, lr=1e-3)
    result = train(config, some, types, tmp_path / "run", progress=False)
    loaded = SpERT.load(tmp_path / "run" / "final")
    assert loaded.types.symmetric == types.symmetric
    # A symmetric relation predicted in reverse counts as correct.
    gold = some[:2]
    flipped = [
        replace(
            s,
            relations=[
                replace(r, head=r.tail, tail=r.head) if r.type in types.symmetric else r
                for r in s.relations
            ],
        )
        for s in gold
    ]
    assert evaluate(gold, flipped, types)["relations_strict"]["micro"]["f1"] == 100.0
    metrics, predictions = result.model.evaluate(some)
    assert len(predictions) == len(some) and "relations_strict" in metrics


def test_doc_ids_written_and_read_back(tmp_path: Path, types_file: Path) -> None:
    second = {**GOOD_DOC, "doc_key": "D2"}
    source = write_docs(tmp_path / "d.json", GOOD_DOC, second)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out.json"
    args = ["convert", "dygie", "--input", str(source), "--out", str(out), "--types"]
    args = parser.parse_args([*args, str(types_file), "--doc-ids"])
    args.func(args)
    records = json.loads(out.read_text(encoding="utf-8"))
    assert [r["doc_id"] for r in records] == ["D1", "D1", "D2", "D2"]
    sentences = read_dataset(out, read_types(types_file))
    assert [s.doc_id for s in sentences] == ["D1", "D1", "D2", "D2"]
    assert [s.orig_id for s in sentences] == ["D1_0", "D1_1", "D2_0", "D2_1"]
    # Everything else as without --doc-ids, which writes no doc_id at all.
    plain = [s.to_dict() for s in read_dygie(source, read_types(types_file))]
    assert "doc_id" not in json.dumps(plain)
    assert [{k: v for k, v in r.items() if k != "doc_id"} for r in records] == plain


@pytest.mark.parametrize(
    ("docs", "needle"),
    [
        (
            [GOOD_DOC, GOOD_DOC],
            "line 2, field 'doc_key': 'D1' is also the key of line 1",
        ),
        ([{**GOOD_DOC, "doc_key": None}], "field 'doc_key': must be a non-empty string"),
        ([{**GOOD_DOC, "doc_key": 5}], "field 'doc_key': must be a non-empty string"),
    ],
)
def test_doc_ids_need_unique_doc_keys(tmp_path: Path, docs: list, needle: str) -> None:
    path = write_docs(tmp_path / "d.json", *docs)
    with pytest.raises(DataError) as err:
        list(read_dygie(path, doc_ids=True))
    assert needle in str(err.value), str(err.value)
    list(read_dygie(path))  # without doc ids the keys are only part of orig_id


@needs_scierc
def test_scierc_documents_with_doc_ids(tmp_path: Path) -> None:
    types = read_types(SCIERC / "scierc_types.json")
    out = tmp_path / "test.json"
    sentences = convert_dygie(SCIERC / "documents" / "test.json", out, types, doc_ids=True)
    docs = [json.loads(line) for line in (SCIERC / "documents" / "test.json").open()]
    assert [s.doc_id for s in sentences] == [d["doc_key"] for d in docs for _ in d["sentences"]]
    assert read_dataset(out, types) == sentences
