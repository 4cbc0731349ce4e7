"""The graph store: nodes and edges, incremental and idempotent builds, failures that leave
the previous store usable, version and query errors, and the mention accounting."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import SRC
from graph_docs import CORPUS, make_document, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.config import GraphConfig
from spert.data import DataError
from spert.graph.merge import document_mentions
from spert.graph.source import SourceDocument, documents_with_ids, read_extractions
from spert.graph.store import (
    BUILD_LOCK,
    META_FILE,
    GraphError,
    GraphQueryError,
    GraphStore,
    build_graph,
    combined_confidence,
)

pytest.importorskip("ladybug")


def build(path: Path, documents, **kwargs):
    kwargs.setdefault("symmetric", {"Spouse"})
    return build_graph(path, documents_with_ids(documents), progress=False, **kwargs)


def store_files(path: Path) -> list[str]:
    """The files of a store folder but its build lock (which stays: see build_graph)."""
    return sorted(p.name for p in path.iterdir() if p.name != BUILD_LOCK)


def snapshot(path: Path) -> dict:
    with GraphStore(path) as store:
        return {
            "stats": store.stats(),
            "nodes": list(store.nodes()),
            "edges": list(store.edges()),
            "evidence": sorted(v["id"] for v in store.evidence()),
        }


def test_nodes_and_edges(tmp_path: Path) -> None:
    summary = build(tmp_path / "kg", CORPUS)
    assert summary.documents_read == 2 and summary.documents_replaced == 0
    with GraphStore(tmp_path / "kg") as store:
        nodes = {n["id"]: n for n in store.nodes()}
        ibm = nodes["Org:international business machines"]
        assert ibm["name"] == "IBM"  # the most frequent surface form
        assert dict(zip(ibm["aliases"], ibm["alias_counts"])) == {
            "IBM": 2,
            "International Business Machines": 1,
        }
        assert (ibm["mentions"], ibm["documents"]) == (3, 1)
        assert nodes["Org:ibm"]["documents"] == 1  # d2: no definition, its own node
        assert nodes["Peop:john smith"]["aliases"] == ["John Smith", "Smith"]
        edges = {e["id"]: e for e in store.edges()}
        work = edges["Peop:john smith|Work_For|Org:international business machines"]
        assert (work["mentions"], work["documents"]) == (2, 1)
        assert work["confidence"] == pytest.approx(1 - 0.2 * 0.5)
        assert work["max_score"] == pytest.approx(0.8)
        spouse = edges["Peop:mary jones|Spouse|Peop:smith"]  # symmetric: both directions
        assert spouse["mentions"] == 2 and spouse["confidence"] == pytest.approx(1 - 0.1 * 0.6)
        evidence = list(store.evidence(work["id"]))
        assert [v["score"] for v in evidence] == [0.8, 0.5]
        first = evidence[0]
        assert first["doc"] == "d1" and first["sentence"] == 0
        assert first["text"].startswith("John Smith joined")
        assert CORPUS[0].text[first["head_start"] : first["head_end"]] == "John Smith"
        assert store.stats() == {
            "documents": 2,
            "entity_mentions": 10,
            "relation_mentions": 6,
            "nodes": 6,
            "edges": 3,
            "merged_aliases": 2,
        }
    assert json.loads((tmp_path / "kg" / META_FILE).read_text())["symmetric"] == ["Spouse"]


def test_confidence() -> None:
    assert combined_confidence([0.5, 0.5]) == pytest.approx(0.75)
    assert combined_confidence([0.2, 1.0]) == 1.0
    assert combined_confidence([1e-12] * 3) == pytest.approx(3e-12)
    assert math.isclose(combined_confidence([]), 0.0, abs_tol=0)


def test_builds_are_idempotent_and_incremental(tmp_path: Path) -> None:
    kg = tmp_path / "kg"
    build(kg, CORPUS)
    once = snapshot(kg)
    summary = build(kg, CORPUS)  # the same documents again: replaced, not counted twice
    assert summary.documents_replaced == 2
    assert snapshot(kg) == once
    assert len(store_files(kg)) == 2  # meta.json and one database file: the old one is gone

    build(tmp_path / "one", CORPUS[:1])
    build(tmp_path / "one", CORPUS[1:])  # in two builds: the same graph
    assert snapshot(tmp_path / "one") == once

    # A new version of d2 replaces the old one.
    d2 = make_document(
        "d2",
        [
            (
                "Mary Jones lives in Paris.",
                [("Mary Jones", "Peop"), ("Paris", "Loc")],
                [(0, 1, "Live_In", 0.3)],
            )
        ],
    )
    build(kg, [d2])
    after = snapshot(kg)
    ids = {e["id"] for e in after["edges"]}
    assert "Peop:mary jones|Spouse|Peop:smith" not in ids
    assert "Peop:mary jones|Live_In|Loc:paris" in ids
    assert "Org:ibm" not in {n["id"] for n in after["nodes"]}
    assert after["stats"]["documents"] == 2 and after["stats"]["entity_mentions"] == 9


def test_a_later_copy_in_one_input_wins(tmp_path: Path) -> None:
    old = make_document("d1", [("Ann in Rome.", [("Ann", "Peop"), ("Rome", "Loc")], [])])
    build(tmp_path / "kg", [old, *CORPUS], config=GraphConfig(batch_documents=1))
    build(tmp_path / "kg2", [old, *CORPUS])  # one batch
    assert snapshot(tmp_path / "kg") == snapshot(tmp_path / "kg2")
    assert snapshot(tmp_path / "kg")["stats"]["documents"] == 2


def failing(documents, after: int, error: BaseException):
    for i, doc in enumerate(documents_with_ids(documents)):
        if i == after:
            raise error
        yield doc


@pytest.mark.parametrize("error", [KeyboardInterrupt(), DataError("bad line")])
def test_a_failed_build_leaves_the_previous_store(tmp_path: Path, error: BaseException) -> None:
    kg = tmp_path / "kg"
    build(kg, CORPUS[:1])
    before = snapshot(kg)
    files = store_files(kg)
    more = [
        make_document(
            f"n{i}",
            CORPUS[1].sentences
            and [
                (
                    "Bob works for Acme.",
                    [("Bob", "Peop"), ("Acme", "Org")],
                    [(0, 1, "Work_For", 0.9)],
                )
            ],
        )
        for i in range(5)
    ]
    with pytest.raises(type(error)):
        build_graph(
            kg, failing(more, 3, error), config=GraphConfig(batch_documents=2), progress=False
        )
    assert store_files(kg) == files  # no stray copy left
    assert snapshot(kg) == before
    # A copy left by a killed build is removed by the next build.
    (kg / "graph-0123456789ab.lbug").write_bytes(b"partial")
    build(kg, more[:1])
    assert store_files(kg) != files and len(store_files(kg)) == 2
    # A failed first build leaves no store.
    with pytest.raises(type(error)):
        build_graph(tmp_path / "new", failing(more, 1, error), progress=False)
    assert not (tmp_path / "new" / META_FILE).exists()


def test_a_concurrent_build_into_the_same_store_is_refused(tmp_path: Path) -> None:
    # Without the lock the second build deleted the first one's database file, and the
    # first then named a deleted file in meta.json.
    kg = tmp_path / "kg"
    build(kg, CORPUS[:1])
    refused: list[str] = []

    def documents():
        yield from documents_with_ids(CORPUS[1:])
        with pytest.raises(GraphError, match=r"another build is running on .*kg") as caught:
            build(kg, CORPUS[:1])
        refused.append(str(caught.value))

    build_graph(kg, documents(), symmetric={"Spouse"}, progress=False)
    assert len(refused) == 1 and "\n" not in refused[0]
    meta = json.loads((kg / META_FILE).read_text())
    assert [n for n in store_files(kg) if n.endswith(".lbug")] == [meta["database"]]
    assert snapshot(kg)["stats"]["documents"] == 2
    build(kg, CORPUS)  # the lock is released when a build ends
    assert snapshot(kg)["stats"]["documents"] == 2


def test_a_type_that_becomes_symmetric_is_refused_when_stored_both_ways(tmp_path: Path) -> None:
    # Spouse not symmetric: d2's two Spouse relations are two edges, one in each direction.
    kg = tmp_path / "kg"
    build(kg, CORPUS, symmetric=set())
    before = snapshot(kg)
    assert len([e for e in before["edges"] if e["type"] == "Spouse"]) == 2
    with pytest.raises(GraphError, match=r"Spouse now symmetric.*a new store"):
        build(kg, CORPUS[:1], symmetric={"Spouse"})
    assert snapshot(kg) == before
    assert json.loads((kg / META_FILE).read_text())["symmetric"] == []
    # Stored without Spouse relations in the other direction: becoming symmetric is safe.
    build(tmp_path / "two", CORPUS[:1], symmetric=set())
    build(tmp_path / "two", CORPUS[1:], symmetric={"Spouse"})
    build(tmp_path / "once", CORPUS, symmetric={"Spouse"})
    assert snapshot(tmp_path / "two") == snapshot(tmp_path / "once")


def test_a_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", CORPUS)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"text": "truncated", "sentences": [{"te')
    with pytest.raises(DataError, match=r"x\.jsonl, line 3: invalid JSON .*truncated"):
        build_graph(tmp_path / "kg", read_extractions([str(path)]), progress=False)
    assert not (tmp_path / "kg" / META_FILE).exists()
    bad = tmp_path / "bad.jsonl"
    for line, pattern in [
        ('{"tokens": ["a"]}', r"line 1: not a spert extract record"),
        ('{"text": "a", "sentences": 3}', r"line 1, field 'sentences'"),
        (
            '{"text": "ab", "sentences": [{"text": "ab", "start": 0, "end": 2, "tokens": ["ab"],'
            ' "token_offsets": [[0, 2]], "entities": [{"type": "X", "text": "ab", "start": 0, '
            '"end": 9, "token_start": 0, "token_end": 1, "score": 0.5}]}]}',
            r"line 1, field 'sentences\[0\].entities\[0\]': start/end outside",
        ),
    ]:
        bad.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=pattern):
            list(read_extractions([str(bad)]))
    with pytest.raises(DataError, match="no such file"):
        list(read_extractions([str(tmp_path / "missing.jsonl")]))


def test_unreadable_lines_are_one_line_errors(tmp_path: Path) -> None:
    # Not UTF-8, nesting too deep for the parser, an integer too long to convert: each a
    # DataError naming file and line, not a UnicodeDecodeError/RecursionError/ValueError.
    bad = tmp_path / "bad.jsonl"
    good = write_jsonl(bad, CORPUS[:1]).read_bytes()
    for line, pattern in [
        (b'{"text": "caf\xe9", "sentences": []}', r"line 2: not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, r"line 2: invalid JSON: nested too deeply"),
        (b'{"text": "a", "n": ' + b"9" * 5000 + b"}", r"line 2: invalid JSON: .*4300"),
    ]:
        bad.write_bytes(b"\xef\xbb\xbf" + good + line + b"\n")
        with pytest.raises(DataError, match=rf"bad\.jsonl, {pattern}") as caught:
            list(read_extractions([str(bad)]))
        assert "\n" not in str(caught.value)
    bad.write_bytes(b"\xef\xbb\xbf" + good)  # a byte order mark is not an error
    assert len(list(read_extractions([str(bad)]))) == 1


def test_shard_folders_and_ids(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "a.jsonl", CORPUS[:1])
    anonymous = make_document(None, [("Bob in Oslo.", [("Bob", "Peop"), ("Oslo", "Loc")], [])])
    write_jsonl(shards / "b.jsonl", [anonymous])
    ids = [d.id for d in read_extractions([str(shards)])]
    assert ids == ["d1", "b.jsonl:1"]


def test_store_errors(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="no such graph store"):
        GraphStore(tmp_path / "nothing")
    kg = tmp_path / "kg"
    build(kg, CORPUS)
    with GraphStore(kg) as store:
        with pytest.raises(GraphQueryError) as caught:
            store.query("MATCH (a:Entity RETURN a")
        assert "\n" not in str(caught.value) and str(caught.value).startswith("query error:")
        with pytest.raises(GraphQueryError, match="Nope"):
            store.query("MATCH (a:Nope) RETURN a")
        result = store.query(
            "MATCH (a:Entity)-[r:RELATED]->(b:Entity) WHERE r.type = $t RETURN a.name, b.name",
            {"t": "OrgBased_In"},
        )
        assert result.columns == ["a.name", "b.name"] and result.rows == [["IBM", "Armonk"]]
    meta = json.loads((kg / META_FILE).read_text())
    (kg / META_FILE).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(GraphError, match="format version 99.*reads version 1.*rebuild"):
        GraphStore(kg)
    with pytest.raises(GraphError, match="format version 99"):
        build(kg, CORPUS)  # a build does not touch a store it cannot read
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(GraphError, match="not a spert graph store"):
        GraphStore(tmp_path / "other")
    with pytest.raises(GraphError, match="exists and is not a graph store"):
        build(tmp_path / "other", CORPUS)


# -- every mention accounted for once ---------------------------------------------------------
NAMES = ["Ann Lee", "Lee", "Acme", "ACME", "the Acme", "Bo", "Rome", "Rome's", "New York", "York"]
TYPES = ["Peop", "Org", "Loc"]
REL_TYPES = ["Work_For", "Spouse", "Live_In"]


@st.composite
def corpora(draw):
    documents = []
    for _ in range(draw(st.integers(1, 4))):
        sentences = []
        for _ in range(draw(st.integers(1, 3))):
            picked = draw(
                st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES)), max_size=4)
            )
            text = " , ".join(name for name, _ in picked) or "nothing"
            relations = []
            if picked:
                relations = draw(
                    st.lists(
                        st.tuples(
                            st.integers(0, len(picked) - 1),
                            st.integers(0, len(picked) - 1),
                            st.sampled_from(REL_TYPES),
                            st.floats(0, 1),
                        ),
                        max_size=4,
                    )
                )
            sentences.append((text + " .", picked, relations))
        # A few documents share an id: the later one replaces the earlier.
        documents.append(make_document(f"d{draw(st.integers(0, 2))}", sentences))
    return documents


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(corpora())
def test_every_mention_belongs_to_one_node_and_every_relation_to_one_edge(
    tmp_path_factory, documents
) -> None:
    kg = tmp_path_factory.mktemp("kg")
    build_graph(
        kg,
        documents_with_ids(documents),
        symmetric={"Spouse"},
        config=GraphConfig(batch_documents=2),
        progress=False,
    )
    last = {str(d.id): d for d in documents}  # what the store must hold
    expected_entities, expected_relations = [], []
    for doc_id, doc in last.items():
        entities, relations = document_mentions(doc, doc_id, {"Spouse"}, ("Peop",))
        expected_entities += entities
        expected_relations += relations
    with GraphStore(kg) as store:
        nodes = {n["id"]: n for n in store.nodes()}
        edges = {e["id"]: e for e in store.edges()}
        mentions = store.query("MATCH (m:Mention) RETURN m.id, m.entity").rows
        evidence = list(store.evidence())
    # Every entity mention is in exactly one node, and the nodes count exactly these.
    assert len(mentions) == len(expected_entities) == len({m for m, _ in mentions})
    assert all(node in nodes for _, node in mentions)
    assert Counter(node for _, node in mentions) == {k: n["mentions"] for k, n in nodes.items()}
    assert sum(sum(n["alias_counts"]) for n in nodes.values()) == len(expected_entities)
    # Every relation mention is evidence of exactly one edge, and the edges count exactly these.
    assert len(evidence) == len(expected_relations)
    assert len({v["id"] for v in evidence}) == len(evidence)
    assert all(v["edge"] in edges for v in evidence)
    assert Counter(v["edge"] for v in evidence) == {k: e["mentions"] for k, e in edges.items()}
    for v in evidence:
        edge = edges[v["edge"]]
        assert (edge["head"], edge["type"], edge["tail"]) == (v["head"], v["type"], v["tail"])
    for edge in edges.values():
        scores = [v["score"] for v in evidence if v["edge"] == edge["id"]]
        assert edge["confidence"] == pytest.approx(combined_confidence(scores), abs=1e-12)
        assert edge["max_score"] == max(scores)
    # A symmetric type has one edge for both directions.
    spouse = [(e["head"], e["tail"]) for e in edges.values() if e["type"] == "Spouse"]
    assert all(h <= t for h, t in spouse)


def test_source_documents_keep_their_place() -> None:
    docs = list(documents_with_ids([CORPUS[0], make_document(None, [("x", [], [])])]))
    assert [d.id for d in docs] == ["d1", "doc:2"]
    assert isinstance(docs[0], SourceDocument)


def test_a_killed_build_leaves_the_previous_store(tmp_path: Path) -> None:
    """SIGKILL in the middle of a build (no cleanup runs): the store still reads as before."""
    kg = tmp_path / "kg"
    build(kg, CORPUS[:1])
    before = snapshot(kg)
    marker = tmp_path / "started"
    script = f"""
import time
from graph_docs import CORPUS
from spert.graph.source import documents_with_ids
from spert.graph.store import build_graph
def slow():
    for doc in documents_with_ids(CORPUS[1:] * 50):
        open({str(marker)!r}, "w").close()
        time.sleep(0.2)
        yield doc
build_graph({str(kg)!r}, slow(), progress=False)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(Path(__file__).parent)]))
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child.poll() is None, "the build ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert snapshot(kg) == before
    build(kg, CORPUS[1:])  # the next build works and removes the killed build's copy
    assert snapshot(kg)["stats"]["documents"] == 2
    assert len(store_files(kg)) == 2
