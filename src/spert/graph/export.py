"""The graph out of the store, for other tools: Neo4j import CSV, GraphML, RDF, JSON Lines.

- ``neo4j`` (a folder): ``entities.csv`` and ``evidence.csv`` (nodes), ``relations.csv`` and
  ``evidence_links.csv`` (relationships) with the headers ``neo4j-admin database import``
  reads, and ``import.sh`` with the command. Nodes are labelled ``Entity`` and their type;
  relationships have the relation type; each evidence node links to the head and tail entity
  (``HEAD``, ``TAIL``) and names its relationship (``edge`` = the relationship's ``id``).
  Lists (aliases and their counts) are JSON strings.
- ``graphml`` (a file): a directed graph; node and edge attributes as in the store, the
  evidence of an edge as a JSON string.
- ``rdf`` (a file, N-Triples): entities, one triple per edge, and the edge reified (RDF
  statement) with its counts, confidence and evidence resources.
- ``jsonl`` (a file): one line per node, then one per edge with its evidence.

Every file is written under a temporary name and renamed when complete. Evidence is read in
edge order along the edges, so memory holds one edge's evidence at a time.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from spert.data.formats.brat import check_output_folder
from spert.graph.store import EVIDENCE_FIELDS, GraphError, GraphStore
from spert.utils import AtomicFile, atomic_replace_dir, recover_replaced_dir

EXPORT_FORMATS = ("neo4j", "graphml", "rdf", "jsonl")
#: The IRI prefix of the RDF export's resources and properties.
RDF_BASE = "urn:spert:"


#: The files of the ``neo4j`` export (a folder holding only these may be replaced).
NEO4J_FILES = ("entities.csv", "relations.csv", "evidence.csv", "evidence_links.csv", "import.sh")


def export_graph(
    store: GraphStore, fmt: str, out: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write the graph of ``store`` in ``fmt`` (see :data:`EXPORT_FORMATS`) to ``out``.

    ``neo4j`` writes the folder ``out``, swapped in whole: a folder holding other files than
    :data:`NEO4J_FILES` is refused unless ``overwrite`` (then they are deleted). ``out`` may
    not be the store, lie inside it or hold it, nor be a path without a name (``.``)."""
    writers = {"graphml": write_graphml, "rdf": write_ntriples, "jsonl": write_jsonl}
    if fmt != "neo4j" and fmt not in writers:
        raise GraphError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
    out = Path(out)
    check_output_path(store, out)
    if fmt == "neo4j":
        _check_neo4j_folder(out, overwrite)
        return atomic_replace_dir(out, lambda folder: write_neo4j(store, folder))
    if out.is_dir():
        raise GraphError(f"{out}: is a folder; the {fmt} export is a file")
    target = AtomicFile(out)
    try:
        writers[fmt](store, target.file)
        target.commit()
    except BaseException:
        target.discard()
        raise
    return Path(out)


def check_output_path(store: GraphStore, out: Path) -> None:
    """Refuse an output (an export, the HTML view) that would replace or write into the store,
    or has no name."""
    if out.name in ("", ".", ".."):
        raise GraphError(f"{out}: give the export a name (a new folder or file), not {out}")
    check_output_folder(out.parent)
    target, kg = out.resolve(), store.path.resolve()
    if target == kg or kg in target.parents:
        raise GraphError(f"{out}: is or lies inside the graph store {store.path}; export elsewhere")
    if target in kg.parents:
        raise GraphError(f"{out}: holds the graph store {store.path}; export elsewhere")


def _check_neo4j_folder(out: Path, overwrite: bool) -> None:
    check_output_folder(out)
    recover_replaced_dir(out)
    if not out.is_dir() or overwrite:
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in NEO4J_FILES)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise GraphError(
            f"{out}: holds other files than a neo4j export ({shown}); the export replaces the "
            "folder: write to another folder, or replace it (--overwrite)"
        )


def edges_with_evidence(store: GraphStore) -> Iterator[tuple[dict, list[dict]]]:
    """Each edge (in id order) with its evidence, merged from two ordered scans."""
    evidence = groupby(store.evidence(), key=lambda v: v["edge"])
    pending = next(evidence, None)
    edges = sorted(store.edges(), key=lambda e: e["id"])
    for edge in edges:
        while pending is not None and pending[0] < edge["id"]:
            pending = next(evidence, None)
        items: list[dict] = []
        if pending is not None and pending[0] == edge["id"]:
            items = list(pending[1])
            pending = next(evidence, None)
        yield edge, items


def _evidence_record(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v[k] for k in EVIDENCE_FIELDS if k not in ("edge", "head", "type", "tail")}


# -- Neo4j -----------------------------------------------------------------------------------
NEO4J_IMPORT = (
    "#!/bin/sh\n"
    "# Import into a new Neo4j database (stop it first); run in this folder.\n"
    'neo4j-admin database import full "${1:-neo4j}" --overwrite-destination \\\n'
    "  --nodes=entities.csv --nodes=evidence.csv \\\n"
    "  --relationships=relations.csv --relationships=evidence_links.csv\n"
)


def write_neo4j(store: GraphStore, folder: Path) -> None:
    def writer(name: str) -> tuple[TextIO, Any]:
        f = open(folder / name, "w", encoding="utf-8", newline="")
        return f, csv.writer(f, lineterminator="\n")

    files = []
    try:
        f, nodes = writer("entities.csv")
        files.append(f)
        nodes.writerow(
            ["id:ID(Entity)", "type", "name", "aliases", "alias_counts", "mentions:int"]
            + ["documents:int", ":LABEL"]
        )
        for n in store.nodes():
            nodes.writerow(
                [n["id"], n["type"], n["name"], json.dumps(n["aliases"], ensure_ascii=False)]
                + [json.dumps(n["alias_counts"]), n["mentions"], n["documents"]]
                + [f"Entity;{n['type']}"]
            )
        f, rels = writer("relations.csv")
        files.append(f)
        rels.writerow(
            [":START_ID(Entity)", ":END_ID(Entity)", ":TYPE", "id", "mentions:int"]
            + ["documents:int", "confidence:double", "max_score:double"]
        )
        for e in store.edges():
            rels.writerow(
                [e["head"], e["tail"], e["type"], e["id"], e["mentions"], e["documents"]]
                + [repr(e["confidence"]), repr(e["max_score"])]
            )
        f, evidence = writer("evidence.csv")
        files.append(f)
        f, links = writer("evidence_links.csv")
        files.append(f)
        evidence.writerow(
            ["id:ID(Evidence)", "edge", "doc", "sentence:int", "head_start:int", "head_end:int"]
            + ["tail_start:int", "tail_end:int", "head_text", "tail_text", "text"]
            + ["score:double", ":LABEL"]
        )
        links.writerow([":START_ID(Evidence)", ":END_ID(Entity)", ":TYPE"])
        for v in store.evidence():
            ev_id = v["id"]
            evidence.writerow(
                [ev_id, v["edge"], v["doc"], v["sentence"], v["head_start"], v["head_end"]]
                + [v["tail_start"], v["tail_end"], v["head_text"], v["tail_text"], v["text"]]
                + [repr(v["score"]), "Evidence"]
            )
            links.writerow([ev_id, v["head"], "HEAD"])
            links.writerow([ev_id, v["tail"], "TAIL"])
    finally:
        for f in files:
            f.close()
    (folder / "import.sh").write_text(NEO4J_IMPORT, encoding="utf-8")


# -- GraphML ---------------------------------------------------------------------------------
_GRAPHML_KEYS = (
    ("node", "type", "string"),
    ("node", "name", "string"),
    ("node", "aliases", "string"),
    ("node", "mentions", "int"),
    ("node", "documents", "int"),
    ("edge", "type", "string"),
    ("edge", "mentions", "int"),
    ("edge", "documents", "int"),
    ("edge", "confidence", "double"),
    ("edge", "max_score", "double"),
    ("edge", "symmetric", "boolean"),
    ("edge", "evidence", "string"),
)


def write_graphml(store: GraphStore, out: TextIO) -> None:
    out.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
    )
    for domain, name, kind in _GRAPHML_KEYS:
        out.write(
            f'  <key id="{domain[0]}_{name}" for="{domain}" attr.name="{name}" '
            f'attr.type="{kind}"/>\n'
        )
    out.write('  <graph id="spert" edgedefault="directed">\n')

    def data(key: str, value: Any) -> str:
        return f'<data key="{key}">{escape(str(value))}</data>'

    for n in store.nodes():
        aliases = json.dumps(dict(zip(n["aliases"], n["alias_counts"])), ensure_ascii=False)
        out.write(
            f"    <node id={quoteattr(n['id'])}>"
            + data("n_type", n["type"])
            + data("n_name", n["name"])
            + data("n_aliases", aliases)
            + data("n_mentions", n["mentions"])
            + data("n_documents", n["documents"])
            + "</node>\n"
        )
    symmetric = store.symmetric
    for e, evidence in edges_with_evidence(store):
        records = json.dumps([_evidence_record(v) for v in evidence], ensure_ascii=False)
        out.write(
            f"    <edge id={quoteattr(e['id'])} source={quoteattr(e['head'])} "
            f"target={quoteattr(e['tail'])}>"
            + data("e_type", e["type"])
            + data("e_mentions", e["mentions"])
            + data("e_documents", e["documents"])
            + data("e_confidence", repr(e["confidence"]))
            + data("e_max_score", repr(e["max_score"]))
            + data("e_symmetric", "true" if e["type"] in symmetric else "false")
            + data("e_evidence", records)
            + "</edge>\n"
        )
    out.write("  </graph>\n</graphml>\n")


# -- RDF (N-Triples) -------------------------------------------------------------------------
def _iri(kind: str, name: str) -> str:
    return f"<{RDF_BASE}{kind}:{quote(name, safe='')}>"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return f'"{str(value).lower()}"^^<http://www.w3.org/2001/XMLSchema#boolean>'
    if isinstance(value, int):
        return f'"{value}"^^<http://www.w3.org/2001/XMLSchema#integer>'
    if isinstance(value, float):
        return f'"{value!r}"^^<http://www.w3.org/2001/XMLSchema#double>'
    text = str(value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{text}"'


_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDFS_LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"


def write_ntriples(store: GraphStore, out: TextIO) -> None:
    def triple(s: str, p: str, o: str) -> None:
        out.write(f"{s} {p} {o} .\n")

    def prop(name: str) -> str:
        return f"<{RDF_BASE}property:{name}>"

    for n in store.nodes():
        node = _iri("entity", n["id"])
        triple(node, f"<{_RDF}type>", _iri("type", n["type"]))
        triple(node, _RDFS_LABEL, _literal(n["name"]))
        for alias in n["aliases"]:
            triple(node, prop("alias"), _literal(alias))
        triple(node, prop("mentions"), _literal(n["mentions"]))
        triple(node, prop("documents"), _literal(n["documents"]))
    for e, evidence in edges_with_evidence(store):
        head, tail = _iri("entity", e["head"]), _iri("entity", e["tail"])
        predicate = _iri("relation", e["type"])
        triple(head, predicate, tail)
        edge = _iri("edge", e["id"])
        triple(edge, f"<{_RDF}type>", f"<{_RDF}Statement>")
        triple(edge, f"<{_RDF}subject>", head)
        triple(edge, f"<{_RDF}predicate>", predicate)
        triple(edge, f"<{_RDF}object>", tail)
        for key in ("mentions", "documents", "confidence", "max_score"):
            triple(edge, prop(key), _literal(e[key]))
        for v in evidence:
            item = _iri("evidence", v["id"])
            triple(edge, prop("evidence"), item)
            for key, value in _evidence_record(v).items():
                triple(item, prop(key), _literal(value))


# -- JSON Lines ------------------------------------------------------------------------------
def write_jsonl(store: GraphStore, out: TextIO) -> None:
    for n in store.nodes():
        out.write(json.dumps({"kind": "node", **n}, ensure_ascii=False) + "\n")
    for e, evidence in edges_with_evidence(store):
        record = {"kind": "edge", **e, "evidence": [_evidence_record(v) for v in evidence]}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
