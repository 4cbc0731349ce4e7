"""``spert graph ...`` end to end: build, query, export, view, eval, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import DATASETS
from graph_docs import CORPUS, write_jsonl

from spert.cli import main
from spert.data import RelationType, Types
from spert.graph.store import BUILD_LOCK

pytest.importorskip("ladybug")


def run(argv: list[str]) -> None:
    main(["graph", *argv])


def error_of(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        run(argv)
    message = str(caught.value.code)
    assert "\n" not in message and message.startswith("spert: error: ")
    return message


@pytest.fixture()
def types_file(tmp_path: Path) -> Path:
    types = Types(
        ("Peop", "Org", "Loc"),
        (RelationType("Work_For"), RelationType("Spouse", True), RelationType("OrgBased_In")),
    )
    path = tmp_path / "types.json"
    path.write_text(json.dumps(types.to_dict()), encoding="utf-8")
    return path


def test_build_query_export_view(tmp_path: Path, types_file: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "x.jsonl", CORPUS)
    kg = tmp_path / "kg"
    run(["build", "--input", str(data), "--out", str(kg), "--types", str(types_file), "--quiet"])
    out = capsys.readouterr().out
    assert "read 2 documents (3 sentences, 10 entity and 6 relation mentions; 0 replaced)" in out
    assert "6 nodes (2 merged aliases), 3 edges (6 evidence)" in out

    query = (
        "MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN a.name, r.type, b.name, "
        "r.confidence ORDER BY r.confidence DESC"
    )
    run(["query", str(kg), query])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split(" | ")[0].strip() == "a.name" and table[-1] == "(3 rows)"
    assert [c.strip() for c in table[2].split(" | ")[:3]] == ["Mary Jones", "Spouse", "Smith"]
    run(["query", str(kg), query, "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "a.name": "Mary Jones",
        "r.type": "Spouse",
        "b.name": "Smith",
        "r.confidence": pytest.approx(0.94),
    }
    run(["query", str(kg), "MATCH (e:Entity) RETURN e ORDER BY e.id LIMIT 1", "--format", "csv"])
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    node = json.loads(rows[1][0])
    assert node["id"] == "Loc:armonk" and "_ID" not in node

    assert "query error: Parser exception" in error_of(["query", str(kg), "MATCH (a RETURN a"])
    assert "no such graph store" in error_of(["query", str(tmp_path / "none"), "RETURN 1"])

    run(["export", str(kg), "--format", "graphml", "--out", str(tmp_path / "g.graphml")])
    assert "6 nodes, 3 edges" in capsys.readouterr().out
    run(["view", str(kg), "--out", str(tmp_path / "g.html"), "--min-confidence", "0.91"])
    assert capsys.readouterr().out.startswith("2 nodes, 1 edges")


def test_export_refuses_to_replace_a_folder_or_the_store(tmp_path: Path, monkeypatch) -> None:
    kg = tmp_path / "kg"
    run(["build", "--input", str(write_jsonl(tmp_path / "x.jsonl", CORPUS)), "--out", str(kg)])
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own notes", encoding="utf-8")
    export = ["export", "kg", "--format", "neo4j", "--out"]
    assert "holds other files than a neo4j export (notes.txt)" in error_of([*export, "mine"])
    assert (mine / "notes.txt").exists()
    assert "inside the graph store" in error_of([*export, "kg"])
    assert "give the export a name" in error_of([*export, "."])
    run(["query", "kg", "MATCH (e:Entity) RETURN count(*)"])  # the store still works
    run([*export, "mine", "--overwrite"])
    assert not (mine / "notes.txt").exists() and (mine / "import.sh").exists()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "x.jsonl", CORPUS)
    with open(data, "a", encoding="utf-8") as f:
        f.write('{"text": "cut')
    kg = tmp_path / "kg"
    message = error_of(["build", "--input", str(data), "--out", str(kg), "--quiet"])
    assert "x.jsonl, line 3: invalid JSON" in message
    assert not kg.exists() or not any(p.name != BUILD_LOCK for p in kg.iterdir())
    assert "--text needs --model" in error_of(["build", "--text", "a.txt", "--out", str(kg)])


def test_eval(tmp_path: Path, capsys) -> None:
    gold = DATASETS / "conll04" / "conll04_test.json"
    if not gold.is_file():
        pytest.skip("no CoNLL04 test set in ../shared")
    texts = tmp_path / "texts.jsonl"
    run(["eval", "--gold", str(gold), "--group-size", "5", "--write-texts", str(texts)])
    records = [json.loads(line) for line in texts.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 58 and records[0]["id"] == "0"
    # The gold documents as predictions (spert extract records): everything right.
    from spert.data import read_dataset
    from spert.graph.eval import gold_documents

    pred = write_jsonl(
        tmp_path / "pred.jsonl", [d.document for d in gold_documents(read_dataset(gold), 5)]
    )
    capsys.readouterr()
    run(
        [
            "eval",
            "--gold",
            str(gold),
            "--group-size",
            "5",
            "--pred",
            str(pred),
            "--curve",
            str(tmp_path / "pr.png"),
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    out = capsys.readouterr().out
    assert "triples: precision 1.0000  recall 1.0000  F1 1.0000  (375 of 375" in out
    assert (tmp_path / "pr.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "m.json").read_text())["gold_graph"]["edges"] == 375


def test_build_extracts_raw_text_with_a_model(tmp_path: Path, types, tiny_config, capsys) -> None:
    from spert.runtime.predictor import SpERT

    model_dir = tmp_path / "model"
    SpERT.create(types, tiny_config, "cpu").save(model_dir)
    texts = tmp_path / "news.txt"
    texts.write_text("Mary works for Acme Corp in Boston .\n\nJohn lives in Paris .\n")
    kg = tmp_path / "kg"
    run(["build", "--model", str(model_dir), "--text", str(texts), "--out", str(kg), "--quiet"])
    assert "read 2 documents" in capsys.readouterr().out
    meta = json.loads((kg / "meta.json").read_text())
    assert meta["symmetric"] == ["Spouse"]  # from the model's types
    run(["query", str(kg), "MATCH (d:Document) RETURN d.id ORDER BY d.id", "--format", "json"])
    assert [r["d.id"] for r in json.loads(capsys.readouterr().out)] == ["news.txt:1", "news.txt:3"]
