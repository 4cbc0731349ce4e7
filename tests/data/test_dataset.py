"""Reading, validating and writing SpERT JSON datasets and types files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DATASETS

from spert.cli import main
from spert.data import (
    DataError,
    Entity,
    Problem,
    Relation,
    RelationType,
    Sentence,
    Types,
    check_dataset,
    check_record,
    document_contexts,
    read_dataset,
    read_types,
    write_dataset,
)

TYPES = Types(
    entities=("Peop", "Org", "Loc"),
    relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
)


def record(**overrides: Any) -> dict[str, Any]:
    """A valid record (6 tokens, 3 entities, 2 relations) with some fields replaced."""
    raw: dict[str, Any] = {
        "tokens": ["Mary", "works", "for", "Acme", "in", "Boston"],
        "entities": [
            {"type": "Peop", "start": 0, "end": 1},
            {"type": "Org", "start": 3, "end": 4},
            {"type": "Loc", "start": 5, "end": 6},
        ],
        "relations": [
            {"type": "Work_For", "head": 0, "tail": 1},
            {"type": "Live_In", "head": 0, "tail": 2},
        ],
        "orig_id": "doc-7",
    }
    raw.update(overrides)
    return raw


def with_entity(index: int, **fields: Any) -> dict[str, Any]:
    raw = record()
    raw["entities"][index] = {**raw["entities"][index], **fields}
    return raw


def with_relation(index: int, **fields: Any) -> dict[str, Any]:
    raw = record()
    raw["relations"][index] = {**raw["relations"][index], **fields}
    return raw


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def problems_of(path: Path, raw: dict[str, Any], index: int = 2) -> list[Problem]:
    """Write ``raw`` as record ``index`` between valid records; its problems, all located."""
    records = [record(orig_id=None) for _ in range(index)] + [raw] + [record(orig_id=None)]
    write_json(path, records)
    sentences, problems = check_dataset(path, TYPES)
    assert len(sentences) == len(records) - 1
    assert problems
    for problem in problems:
        assert problem.source == str(path)
        assert problem.record == index
        text = str(problem)
        assert str(path) in text and f"record {index}" in text and f"'{problem.field}'" in text
        if raw.get("orig_id") is not None:
            assert problem.orig_id == raw["orig_id"]
            assert f"(orig_id {raw['orig_id']!r})" in text
    return problems


def only_problem(path: Path, raw: dict[str, Any], index: int = 2) -> Problem:
    """Write ``raw`` as record ``index`` between valid records; its single problem."""
    problems = problems_of(path, raw, index)
    assert len(problems) == 1, problems
    return problems[0]


# --- validation errors ---------------------------------------------------------------------


def test_valid_record_has_no_problem():
    sentence, problems = check_record(record(), 0, "x.json", TYPES)
    assert problems == []
    assert sentence == Sentence(
        ["Mary", "works", "for", "Acme", "in", "Boston"],
        [Entity("Peop", 0, 1), Entity("Org", 3, 4), Entity("Loc", 5, 6)],
        [Relation("Work_For", 0, 1), Relation("Live_In", 0, 2)],
        "doc-7",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"start": -1}, "entities[1].start"),
        ({"start": 6}, "entities[1].start"),
        ({"end": 7}, "entities[1].end"),
        ({"end": 0}, "entities[1].end"),
        ({"start": 1.0}, "entities[1].start"),
        ({"start": True}, "entities[1].start"),
        ({"end": "4"}, "entities[1].end"),
    ],
)
def test_span_out_of_range(tmp_path: Path, fields: dict[str, Any], field: str):
    problems = problems_of(tmp_path / "d.json", with_entity(1, **fields))
    # A start past the end may also make the span empty: a second problem is fine.
    assert problems[0].field == field
    assert problems[0].orig_id == "doc-7"


@pytest.mark.parametrize(("start", "end"), [(3, 3), (4, 3)])
def test_empty_span(tmp_path: Path, start: int, end: int):
    problem = only_problem(tmp_path / "d.json", with_entity(1, start=start, end=end))
    assert problem.field == "entities[1].end"
    assert "empty span" in problem.message


def test_unknown_entity_type(tmp_path: Path):
    problem = only_problem(tmp_path / "d.json", with_entity(2, type="Location"))
    assert problem.field == "entities[2].type"
    assert "'Location'" in problem.message


def test_unknown_relation_type(tmp_path: Path):
    problem = only_problem(tmp_path / "d.json", with_relation(1, type="Kill"))
    assert problem.field == "relations[1].type"
    assert "'Kill'" in problem.message


@pytest.mark.parametrize("bad_type", [["Work_For"], {"name": "Work_For"}, None, 3])
def test_malformed_relation_type_is_a_problem_not_a_crash(tmp_path: Path, bad_type: Any):
    problem = only_problem(tmp_path / "d.json", with_relation(0, type=bad_type))
    assert problem.field == "relations[0].type"


@pytest.mark.parametrize("bad_type", [["Peop"], None, 3])
def test_malformed_entity_type_is_a_problem(tmp_path: Path, bad_type: Any):
    problem = only_problem(tmp_path / "d.json", with_entity(0, type=bad_type))
    assert problem.field == "entities[0].type"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"head": 3}, "relations[0].head"),
        ({"head": -1}, "relations[0].head"),
        ({"tail": 3}, "relations[0].tail"),
        ({"tail": "1"}, "relations[0].tail"),
        ({"tail": None}, "relations[0].tail"),
    ],
)
def test_head_or_tail_out_of_range(tmp_path: Path, fields: dict[str, Any], field: str):
    problem = only_problem(tmp_path / "d.json", with_relation(0, **fields))
    assert problem.field == field


def test_head_equal_to_tail(tmp_path: Path):
    problem = only_problem(tmp_path / "d.json", with_relation(0, head=1, tail=1))
    assert problem.field == "relations[0]"


@pytest.mark.parametrize("tokens", ["Mary works", [], None, {"0": "Mary"}])
def test_tokens_not_a_list(tmp_path: Path, tokens: Any):
    problem = only_problem(tmp_path / "d.json", record(tokens=tokens))
    assert problem.field == "tokens"


@pytest.mark.parametrize("bad", ["", 7, None, ["x"]])
def test_empty_or_non_string_token(tmp_path: Path, bad: Any):
    tokens = ["Mary", "works", "for", bad, "in", "Boston"]
    problem = only_problem(tmp_path / "d.json", record(tokens=tokens))
    assert problem.field == "tokens[3]"


def test_problem_without_orig_id(tmp_path: Path):
    raw = with_entity(0, end=9)
    del raw["orig_id"]
    problem = only_problem(tmp_path / "d.json", raw, index=0)
    assert problem.orig_id is None
    assert "(orig_id" not in str(problem)
    assert problem.field == "entities[0].end"


def test_record_not_an_object(tmp_path: Path):
    path = write_json(tmp_path / "d.json", [record(), ["Mary", "works"]])
    sentences, problems = check_dataset(path, TYPES)
    assert len(sentences) == 1
    assert [(p.record, p.field) for p in problems] == [(1, "<record>")]


def test_all_problems_of_a_file_at_once(tmp_path: Path):
    records = [
        record(),
        with_entity(0, end=10),  # record 1
        record(orig_id=None),
        with_relation(1, type="Kill", tail=5),  # record 3: two problems
        record(tokens=["a", ""], entities=[], relations=[]),  # record 4
        record(),
    ]
    path = write_json(tmp_path / "d.json", records)
    sentences, problems = check_dataset(path, TYPES)
    assert len(sentences) == 3
    assert [s.orig_id for s in sentences] == ["doc-7", None, "doc-7"]
    assert [(p.record, p.field) for p in problems] == [
        (1, "entities[0].end"),
        (3, "relations[1].type"),
        (3, "relations[1].tail"),
        (4, "tokens[1]"),
    ]
    assert all(p.source == str(path) for p in problems)

    with pytest.raises(DataError) as err:
        read_dataset(path, TYPES)
    message = str(err.value)
    assert message.startswith(f"4 problem(s) in {path}")
    for p in problems:
        assert str(p) in message


def test_read_dataset_caps_the_listed_problems(tmp_path: Path):
    path = write_json(tmp_path / "d.json", [with_entity(0, end=10) for _ in range(13)])
    with pytest.raises(DataError, match=r"(?s)13 problem\(s\).*\.\.\. and 3 more$"):
        read_dataset(path, TYPES)


def test_without_types_any_type_name_is_accepted(tmp_path: Path):
    path = write_json(tmp_path / "d.json", [with_relation(0, type="Kill")])
    assert read_dataset(path)[0].relations[0].type == "Kill"


def test_unannotated_ignores_entities_and_relations(tmp_path: Path):
    path = write_json(tmp_path / "d.json", [with_entity(0, end=10)])
    (sentence,) = read_dataset(path, TYPES, annotated=False)
    assert sentence.entities == [] and sentence.relations == []


# --- file formats ----------------------------------------------------------------------------


def test_invalid_json_reports_line_and_column(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"tokens": ["a"]},\n  {"tokens": ["b"],}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.json: invalid JSON at line 3, column 20"):
        read_dataset(path)


def test_invalid_pretty_printed_object_reports_its_own_line(tmp_path: Path):
    # A multi-line JSON object starts with "{" like JSON Lines; the error must still be
    # located where it is, not on line 1.
    path = tmp_path / "types.json"
    path.write_text(
        '{\n  "entities": {"Peop": {}},\n  "relations": {"Kill": {},}\n}\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"invalid JSON at line 3, column 28"):
        read_types(path)


def test_invalid_jsonl_reports_line_and_column(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(record()), "", json.dumps(record()), '{"tokens": ["a"] "x": 1}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl: invalid JSON at line 4, column 18"):
        read_dataset(path)


def test_jsonl_is_read(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    bare = record(tokens=["x"], entities=[], relations=[], orig_id=None)
    rows = [record(), record(orig_id=3), bare]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    sentences = read_dataset(path, TYPES)
    assert [s.orig_id for s in sentences] == ["doc-7", 3, None]
    assert sentences[2].tokens == ["x"]
    assert sentences[0].relations == [Relation("Work_For", 0, 1), Relation("Live_In", 0, 2)]


def test_json_lines_in_a_json_file_are_read(tmp_path: Path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(record()) + "\n" + json.dumps(record()) + "\n", encoding="utf-8")
    assert len(read_dataset(path, TYPES)) == 2


def test_single_jsonl_line_is_one_sentence(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record()) + "\n", encoding="utf-8")
    assert len(read_dataset(path, TYPES)) == 1


def test_missing_file_and_wrong_top_level(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "missing.json")
    path = write_json(tmp_path / "d.json", "just a string")
    with pytest.raises(DataError, match="JSON list of sentences"):
        read_dataset(path)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_round_trip_with_scores(tmp_path: Path, suffix: str):
    sentences = [
        Sentence(
            ["Mary", "works", "for", "Acme", "in", "Boston", "ünïcode"],
            [Entity("Peop", 0, 1, 0.9), Entity("Org", 3, 4, 1.0), Entity("Loc", 5, 7)],
            [Relation("Work_For", 0, 1, 0.75), Relation("Live_In", 0, 2)],
            orig_id="doc-7",
        ),
        Sentence(["Nothing", "here"], orig_id=12),
        Sentence(["No", "id"]),
    ]
    path = tmp_path / "out" / f"pred{suffix}"
    write_dataset(path, sentences)
    assert read_dataset(path, TYPES) == sentences
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        assert len(text.splitlines()) == 3
    else:
        assert isinstance(json.loads(text), list)
    assert "ünïcode" in text
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("bad", [1.5, True, ["D1"], {"id": 1}])
def test_bad_doc_id(tmp_path: Path, bad: Any):
    problem = only_problem(tmp_path / "d.json", record(doc_id=bad))
    assert problem.field == "doc_id" and "must be a string or an integer" in problem.message


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_doc_ids_round_trip(tmp_path: Path, suffix: str):
    sentences = [
        Sentence(["A", "b"], orig_id="x", doc_id="D1"),
        Sentence(["C"], doc_id="D1"),
        Sentence(["E"], doc_id=7),
        Sentence(["F"]),
    ]
    path = tmp_path / f"d{suffix}"
    write_dataset(path, sentences)
    assert read_dataset(path, TYPES) == sentences
    text = path.read_text(encoding="utf-8")
    assert text.count('"doc_id"') == 3  # written only where set
    # Records without doc_id read as before: None.
    assert read_dataset(write_json(tmp_path / "plain.json", [record()]))[0].doc_id is None


def doc(doc_id: Any, *sentences: str) -> list[Sentence]:
    return [Sentence(s.split(), doc_id=doc_id) for s in sentences]


def test_document_contexts_stay_inside_their_document():
    sentences = [
        *doc("A", "a1 a2 a3", "a4", "a5 a6 a7"),
        *doc("B", "b1 b2"),
        *doc(None, "n1 n2"),
        *doc(None, "m1"),
        *doc(3, "c1 c2", "c3"),
    ]
    assert document_contexts(sentences, 2) == [
        ([], ["a4", "a5"]),
        (["a2", "a3"], ["a5", "a6"]),
        (["a3", "a4"], []),
        ([], []),  # a document of one sentence
        ([], []),  # no doc_id: no context, not even from the neighbouring None sentence
        ([], []),
        ([], ["c3"]),
        (["c1", "c2"], []),
    ]
    # Enough words for the whole document: every other sentence of it, in order.
    assert document_contexts(sentences, 100)[1] == (["a1", "a2", "a3"], ["a5", "a6", "a7"])
    assert document_contexts(sentences, 0) == [([], [])] * len(sentences)


def test_document_split_by_another_is_refused():
    sentences = [*doc("A", "a1"), *doc("B", "b1"), *doc("A", "a2")]
    sentences[2].orig_id = "a-2"
    with pytest.raises(DataError, match=r"doc_id 'A' of sentence 2 \(orig_id 'a-2'\).*consecutive"):
        document_contexts(sentences, 5)
    assert document_contexts(sentences, 0) == [([], [])] * 3  # no context asked for: no check


# --- types files -----------------------------------------------------------------------------


def test_types_file_with_symmetric_relations(tmp_path: Path):
    raw = {
        "entities": {"Peop": {"short": "Peop", "verbose": "People"}, "Loc": {"short": "Loc"}},
        "relations": {
            "Live_In": {"short": "Live", "verbose": "Live in", "symmetric": False},
            "Spouse": {"short": "Spouse", "symmetric": True},
            "Kill": {"short": "Kill"},
        },
    }
    path = tmp_path / "types.json"
    path.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    types = read_types(path)
    assert types.entities == ("Peop", "Loc")
    assert types.relation_names == ("Live_In", "Spouse", "Kill")
    assert types.symmetric == frozenset({"Spouse"})
    assert types.relations[0] == RelationType("Live_In", False, "Live in")
    assert Types.from_dict(types.to_dict()) == Types(
        ("Peop", "Loc"),
        (
            RelationType("Live_In", False, "Live in"),
            RelationType("Spouse", True, "Spouse"),
            RelationType("Kill", False, "Kill"),
        ),
    )


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], "JSON object"),
        ({"relations": {}}, "'entities'"),
        ({"entities": {}}, "'entities'"),
        ({"entities": {"A": {}}, "relations": []}, "'relations'"),
        ({"entities": {"A": {}}, "relations": {"R": {"symmetric": "yes"}}}, "R.symmetric"),
    ],
)
def test_bad_types_file(raw: Any, match: str):
    with pytest.raises(DataError, match=match):
        Types.from_dict(raw, "types.json")


# --- the real CoNLL04 test set ---------------------------------------------------------------


def test_real_conll04_test_set():
    data = DATASETS / "conll04" / "conll04_test.json"
    types_path = DATASETS / "conll04" / "conll04_types.json"
    if not data.is_file() or not types_path.is_file():
        pytest.skip(f"{data} not available")
    types = read_types(types_path)
    assert set(types.entities) == {"Loc", "Org", "Peop", "Other"}
    assert "Kill" in types.relation_names
    sentences = read_dataset(data, types)
    assert len(sentences) == 288
    assert sum(len(s.entities) for s in sentences) == 1079
    assert sum(len(s.relations) for s in sentences) == 422


# -- input that used to end in a traceback (issue 23) -------------------------------------------
def _validate(data: Path, types: Path) -> str:
    with pytest.raises(SystemExit) as e:
        main(["validate", "--data", str(data), "--types", str(types)])
    return str(e.value.code)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"[" * 200_000, "nested too deeply"),
        (
            b'[{"tokens": ["a"], "entities": [{"type": "X", "start": ' + b"9" * 5001 + b"}]}]",
            "digits",
        ),
        (b'[{"tokens": ["caf\xe9"]}]', "not UTF-8"),
    ],
    ids=["deep-nesting", "5001-digits", "latin-1"],
)
def test_validate_bad_data_file_is_a_one_line_error(tmp_path: Path, content: bytes, match: str):
    types = write_json(tmp_path / "types.json", {"entities": {"X": {}}, "relations": {}})
    data = tmp_path / "data.json"
    data.write_bytes(content)
    message = _validate(data, types)
    assert str(data) in message and match in message and "\n" not in message


def test_validate_non_utf8_types_file_is_a_one_line_error(tmp_path: Path):
    types = tmp_path / "types.json"
    types.write_bytes(b'{"entities": {"Caf\xe9": {}}, "relations": {}}')
    data = write_json(tmp_path / "data.json", [record()])
    message = _validate(data, types)
    assert str(types) in message and "not UTF-8" in message
