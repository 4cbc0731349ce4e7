"""Exports: Neo4j import CSV, GraphML (networkx reads it), N-Triples (an RDF parser reads it),
JSON Lines; each complete and atomic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from graph_docs import CORPUS, open_corpus_store

from spert.data import DataError
from spert.graph.export import NEO4J_FILES, export_graph
from spert.graph.source import documents_with_ids
from spert.graph.store import GraphError, GraphStore, build_graph

pytest.importorskip("ladybug")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    yield from open_corpus_store(tmp_path_factory)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_neo4j(store: GraphStore, tmp_path: Path) -> None:
    out = export_graph(store, "neo4j", tmp_path / "neo4j")
    assert sorted(p.name for p in out.iterdir()) == [
        "entities.csv",
        "evidence.csv",
        "evidence_links.csv",
        "import.sh",
        "relations.csv",
    ]
    entities = read_csv(out / "entities.csv")
    assert list(entities[0]) == [
        "id:ID(Entity)",
        "type",
        "name",
        "aliases",
        "alias_counts",
        "mentions:int",
        "documents:int",
        ":LABEL",
    ]
    ibm = next(e for e in entities if e["id:ID(Entity)"] == "Org:international business machines")
    assert ibm[":LABEL"] == "Entity;Org" and json.loads(ibm["aliases"])[0] == "IBM"
    relations = read_csv(out / "relations.csv")
    assert list(relations[0])[:3] == [":START_ID(Entity)", ":END_ID(Entity)", ":TYPE"]
    ids = {e["id:ID(Entity)"] for e in entities}
    assert all(r[":START_ID(Entity)"] in ids and r[":END_ID(Entity)"] in ids for r in relations)
    evidence = read_csv(out / "evidence.csv")
    links = read_csv(out / "evidence_links.csv")
    assert len(evidence) == 6 and len(links) == 12
    assert {r["id"] for r in relations} == {e["edge"] for e in evidence}
    assert "neo4j-admin database import full" in (out / "import.sh").read_text()


def test_graphml_opens_in_networkx(store: GraphStore, tmp_path: Path) -> None:
    nx = pytest.importorskip("networkx")
    path = export_graph(store, "graphml", tmp_path / "g.graphml")
    graph = nx.read_graphml(path)
    assert graph.number_of_nodes() == 6 and graph.number_of_edges() == 3
    node = graph.nodes["Peop:john smith"]
    assert node["name"] == "John Smith" and node["mentions"] == 2
    assert json.loads(node["aliases"]) == {"John Smith": 1, "Smith": 1}
    edge = graph.edges["Peop:mary jones", "Peop:smith"]
    assert edge["type"] == "Spouse" and edge["symmetric"] is True
    assert edge["confidence"] == pytest.approx(0.94)
    assert [v["score"] for v in json.loads(edge["evidence"])] == [0.9, 0.4]


def test_rdf_parses(store: GraphStore, tmp_path: Path) -> None:
    path = export_graph(store, "rdf", tmp_path / "g.nt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.endswith(" .") for line in lines)
    oxigraph = pytest.importorskip("pyoxigraph")
    triples = list(oxigraph.parse(path=str(path), format=oxigraph.RdfFormat.N_TRIPLES))
    assert len(triples) == len(lines)
    statements = [t for t in triples if t.object.value.endswith("#Statement")]
    assert len(statements) == 3
    evidence = [t for t in triples if t.predicate.value == "urn:spert:property:evidence"]
    assert len(evidence) == 6
    texts = {t.object.value for t in triples if t.predicate.value == "urn:spert:property:text"}
    assert "The IBM of today met Mary Jones and Smith." in texts


def test_jsonl(store: GraphStore, tmp_path: Path) -> None:
    path = export_graph(store, "jsonl", tmp_path / "g.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    nodes = [r for r in records if r["kind"] == "node"]
    edges = [r for r in records if r["kind"] == "edge"]
    assert len(nodes) == 6 and len(edges) == 3
    assert sum(len(e["evidence"]) for e in edges) == sum(e["mentions"] for e in edges) == 6
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_unknown_format(store: GraphStore, tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="unknown export format"):
        export_graph(store, "gexf", tmp_path / "g")


def test_neo4j_refuses_a_folder_of_other_files(store: GraphStore, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own notes", encoding="utf-8")
    with pytest.raises(GraphError, match=r"mine: holds other files .*notes\.txt.*--overwrite"):
        export_graph(store, "neo4j", out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # untouched
    export_graph(store, "neo4j", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(NEO4J_FILES)
    export_graph(store, "neo4j", out)  # a neo4j export of its own is replaced without asking
    assert sorted(p.name for p in out.iterdir()) == sorted(NEO4J_FILES)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"file: not a folder \(is a file\)"):
        export_graph(store, "neo4j", tmp_path / "file")


@pytest.mark.parametrize("fmt", ["neo4j", "graphml", "jsonl"])
def test_no_export_into_or_over_the_store(tmp_path: Path, fmt: str, monkeypatch) -> None:
    kg = tmp_path / "work" / "kg"
    build_graph(kg, documents_with_ids(CORPUS), progress=False)
    before = sorted(p.name for p in kg.iterdir())
    monkeypatch.chdir(tmp_path / "work")
    with GraphStore(kg) as opened:
        for out, pattern in [
            (kg, r"is or lies inside the graph store"),
            (kg / "export", r"is or lies inside the graph store"),
            (kg / "meta.json", r"is or lies inside the graph store"),
            (tmp_path / "work", r"holds the graph store"),
            (Path("."), r"give the export a name"),
            (Path("kg/.."), r"give the export a name"),
        ]:
            with pytest.raises(GraphError, match=pattern) as caught:
                export_graph(opened, fmt, out, overwrite=True)
            assert "\n" not in str(caught.value)
            assert sorted(p.name for p in kg.iterdir()) == before
        assert opened.stats()["nodes"] == 6


@pytest.mark.parametrize("fmt", ["graphml", "rdf", "jsonl"])
def test_a_file_export_to_a_folder_is_refused(store: GraphStore, tmp_path: Path, fmt: str) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(GraphError, match=rf"out: is a folder; the {fmt} export is a file"):
        export_graph(store, fmt, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
