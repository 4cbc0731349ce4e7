"""The graph store: an embedded LadybugDB database (Cypher) in a folder, built incrementally.

A store folder holds ``meta.json`` (the store format version, the database file's name, the
symmetric relation types, counts), the database file it names, and ``.build.lock``, which a
build holds (one build at a time). The database has:

- ``Document(id, sentences, source)``: the documents built in;
- ``Mention(id, doc, sentence, start_char, end_char, text, type, score, entity)``: every
  entity mention, with the id of its node (``entity``);
- ``Evidence(id, edge, doc, sentence, head, type, tail, head_start, head_end, tail_start,
  tail_end, head_text, tail_text, text, score)``: every relation mention, with its edge's id
  and head and tail node ids; ``text`` is the sentence;
- ``Entity(id, type, name, aliases, alias_counts, mentions, documents)``: the nodes;
  ``name`` is the most frequent surface form, ``aliases`` all surface forms (most frequent
  first) and ``alias_counts`` their counts;
- ``RELATED(FROM Entity TO Entity, id, type, mentions, documents, confidence, max_score)``:
  the edges; ``confidence`` = 1 - prod(1 - score) over the edge's evidence.

Mentions and evidence are the record; nodes and edges are recomputed from them at the end of
every build, so that replacing a document (same id) leaves no trace of its old version.

A build never changes the database the store names: it works on a copy (a new file) and, once
complete, rewrites ``meta.json`` atomically to name the copy. An interrupted or failed build
leaves the previous store as it was. The input is read as a stream, in batches, and never held
whole; what grows is the database: LadybugDB's memory grows with the stored mentions and
evidence (about 7 KiB per sentence in ``benchmarks/graph_build.py``), plus the nodes and edges
while they are recomputed. (Mention and Evidence rows are keyed by a ``row`` serial number:
a string primary key would add a hash index that costs memory.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spert.config import GraphConfig
from spert.data import DataError
from spert.graph.merge import EntityMention, RelationMention, document_mentions
from spert.graph.source import SourceDocument
from spert.utils import atomic_write_text, signals_held
from spert.version import __version__

try:
    import ladybug
    import pyarrow as pa
except ImportError:  # pragma: no cover - the graph extra is not installed
    ladybug = pa = None

log = logging.getLogger(__name__)

#: The version of the store layout; a store of another version is refused with a clear error.
FORMAT_VERSION = 1
META_FILE = "meta.json"
#: The file a build locks (see :func:`build_graph`).
BUILD_LOCK = ".build.lock"
FORMAT_NAME = "spert-graph"

_SCHEMA = (
    "CREATE NODE TABLE Document(id STRING PRIMARY KEY, sentences INT64, source STRING)",
    "CREATE NODE TABLE Mention(row SERIAL PRIMARY KEY, id STRING, doc STRING, sentence INT64, "
    "start_char INT64, end_char INT64, text STRING, type STRING, score DOUBLE, entity STRING)",
    "CREATE NODE TABLE Evidence(row SERIAL PRIMARY KEY, id STRING, edge STRING, doc STRING, "
    "sentence INT64, head STRING, type STRING, tail STRING, head_start INT64, head_end INT64, "
    "tail_start INT64, tail_end INT64, head_text STRING, tail_text STRING, text STRING, "
    "score DOUBLE)",
)
_GRAPH_SCHEMA = (
    "CREATE NODE TABLE Entity(id STRING PRIMARY KEY, type STRING, name STRING, "
    "aliases STRING[], alias_counts INT64[], mentions INT64, documents INT64)",
    "CREATE REL TABLE RELATED(FROM Entity TO Entity, id STRING, type STRING, mentions INT64, "
    "documents INT64, confidence DOUBLE, max_score DOUBLE)",
)


class GraphError(DataError):
    """A store that cannot be used (missing, of another version, damaged) or a bad request."""


class GraphQueryError(GraphError):
    """A query the database refused (syntax, unknown table or property)."""


def _require_ladybug() -> Any:
    if ladybug is None:
        raise GraphError("the graph store needs LadybugDB: pip install 'spert[graph]'")
    return ladybug


@dataclass
class QueryResult:
    """A query's columns and rows (values as the database returns them)."""

    columns: list[str]
    rows: list[list[Any]]


@dataclass
class BuildSummary:
    """What a build did and what the store holds after it."""

    documents_read: int
    documents_replaced: int
    sentences_read: int
    entity_mentions_read: int
    relation_mentions_read: int
    seconds: float
    stats: dict[str, int]


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The store's ``meta.json``, checked: a GraphError names what is wrong."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise GraphError(f"{folder}: no such graph store (build one with spert graph build)")
    if not meta_path.is_file():
        raise GraphError(f"{folder}: not a spert graph store (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GraphError(f"{meta_path}: damaged ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise GraphError(f"{meta_path}: not a spert graph store")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        raise GraphError(
            f"{folder}: graph store format version {version}, this spert ({__version__}) reads "
            f"version {FORMAT_VERSION}: rebuild it with spert graph build"
        )
    if not (folder / str(meta.get("database"))).is_file():
        raise GraphError(f"{folder}: the database file {meta.get('database')!r} is missing")
    return meta


class GraphStore:
    """An open graph store (read-only unless built into): queries and the graph's contents.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], config: GraphConfig | None = None) -> None:
        lb = _require_ladybug()
        pool = (config or GraphConfig()).buffer_pool_mb * 2**20
        self.path = Path(path)
        self.meta = read_meta(self.path)
        db_path = self.path / self.meta["database"]
        try:
            self._db = lb.Database(str(db_path), read_only=True, buffer_pool_size=pool)
            self._conn = lb.Connection(self._db)
        except RuntimeError as e:
            raise GraphError(f"{self.path}: cannot open the database: {_first_line(e)}") from None

    @property
    def symmetric(self) -> frozenset[str]:
        return frozenset(self.meta.get("symmetric", ()))

    def query(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a Cypher query; a refused query raises a GraphQueryError (one line)."""
        result = self._execute(cypher, parameters)
        columns = result.get_column_names()
        rows = []
        while result.has_next():
            rows.append(result.get_next())
        return QueryResult(columns, rows)

    def iter_rows(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> Iterator[list]:
        """The rows of a query, one at a time."""
        result = self._execute(cypher, parameters)
        while result.has_next():
            yield result.get_next()

    def _execute(self, cypher: str, parameters: Mapping[str, Any] | None) -> Any:
        try:
            return self._conn.execute(cypher, dict(parameters or {}))
        except RuntimeError as e:
            raise GraphQueryError(f"query error: {_first_line(e)}") from None

    def stats(self) -> dict[str, int]:
        """Counts: documents, entity mentions, nodes, merged aliases, evidence, edges."""
        return _stats(self._conn)

    def nodes(self) -> Iterator[dict[str, Any]]:
        """Every node as a dict (id, type, name, aliases, alias_counts, mentions, documents)."""
        for row in self.iter_rows(
            "MATCH (e:Entity) RETURN e.id, e.type, e.name, e.aliases, e.alias_counts, "
            "e.mentions, e.documents ORDER BY e.id"
        ):
            yield dict(zip(NODE_FIELDS, row))

    def edges(self, min_confidence: float = 0.0) -> Iterator[dict[str, Any]]:
        """Every edge as a dict (id, head, type, tail, mentions, documents, confidence,
        max_score), most confident first."""
        for row in self.iter_rows(
            "MATCH (h:Entity)-[r:RELATED]->(t:Entity) WHERE r.confidence >= $min "
            "RETURN r.id, h.id, r.type, t.id, r.mentions, r.documents, r.confidence, "
            "r.max_score ORDER BY r.confidence DESC, r.id",
            {"min": float(min_confidence)},
        ):
            yield dict(zip(EDGE_FIELDS, row))

    def evidence(self, edge: str | None = None, limit: int | None = None) -> Iterator[dict]:
        """The evidence of one edge (by id; of all edges for None), highest score first."""
        where = "WHERE v.edge = $edge " if edge is not None else ""
        order = "ORDER BY v.score DESC, v.id" if edge is not None else "ORDER BY v.edge, v.id"
        cap = f" LIMIT {int(limit)}" if limit is not None else ""
        params = {"edge": edge} if edge is not None else {}
        fields = ", ".join(f"v.{f}" for f in EVIDENCE_FIELDS)
        for row in self.iter_rows(
            f"MATCH (v:Evidence) {where}RETURN {fields} {order}{cap}", params
        ):
            yield dict(zip(EVIDENCE_FIELDS, row))

    def close(self) -> None:
        self._conn.close()
        self._db.close()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


NODE_FIELDS = ("id", "type", "name", "aliases", "alias_counts", "mentions", "documents")
EDGE_FIELDS = ("id", "head", "type", "tail", "mentions", "documents", "confidence", "max_score")
EVIDENCE_FIELDS = (
    "id",
    "edge",
    "doc",
    "sentence",
    "head",
    "type",
    "tail",
    "head_start",
    "head_end",
    "tail_start",
    "tail_end",
    "head_text",
    "tail_text",
    "text",
    "score",
)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _stats(conn: Any) -> dict[str, int]:
    def count(cypher: str) -> int:
        return int(conn.execute(cypher).get_next()[0] or 0)

    return {
        "documents": count("MATCH (d:Document) RETURN count(*)"),
        "entity_mentions": count("MATCH (m:Mention) RETURN count(*)"),
        "relation_mentions": count("MATCH (v:Evidence) RETURN count(*)"),
        "nodes": count("MATCH (e:Entity) RETURN count(*)"),
        "edges": count("MATCH ()-[r:RELATED]->() RETURN count(*)"),
        # Surface forms beyond the first of each node: names merged into another.
        "merged_aliases": count("MATCH (e:Entity) RETURN sum(size(e.aliases) - 1)"),
    }


# -- building ------------------------------------------------------------------------------
def build_graph(
    out: str | os.PathLike[str],
    documents: Iterable[SourceDocument],
    symmetric: Collection[str] = (),
    config: GraphConfig | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Add ``documents`` to the store ``out`` (created if missing); a document whose id is in
    the store already replaces it. See the module docstring for the guarantees. A second
    build into ``out`` while one runs is refused, and so is a relation type that becomes
    symmetric while the store holds relations of that type in both directions."""
    config = config or GraphConfig()
    folder = Path(out)
    _require_ladybug()
    if not (folder / META_FILE).exists() and folder.exists() and any(_foreign_files(folder)):
        raise GraphError(f"{folder}: exists and is not a graph store (refusing to write into it)")
    folder.mkdir(parents=True, exist_ok=True)
    with _build_lock(folder):
        return _build_locked(folder, documents, symmetric, config, progress)


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s build lock: a build deletes the database files it did not make, so
    two builds into one store at once would delete each other's; the second is refused. The
    lock (``flock``) ends with its process, so a killed build leaves no stale lock."""
    with open(folder / BUILD_LOCK, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GraphError(f"another build is running on {folder}: wait until it ends") from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _build_locked(
    folder: Path,
    documents: Iterable[SourceDocument],
    symmetric: Collection[str],
    config: GraphConfig,
    progress: bool,
) -> BuildSummary:
    lb = _require_ladybug()
    started = time.perf_counter()
    old_meta = read_meta(folder) if (folder / META_FILE).exists() else None
    old_symmetric = set(old_meta["symmetric"]) if old_meta else set()
    symmetric_all = sorted(set(symmetric) | old_symmetric)
    new_name = f"graph-{uuid.uuid4().hex[:12]}.lbug"
    new_path = folder / new_name
    builder = None
    try:
        if old_meta is not None:
            shutil.copyfile(folder / old_meta["database"], new_path)
        db = lb.Database(str(new_path), buffer_pool_size=config.buffer_pool_mb * 2**20)
        builder = _Builder(db, lb.Connection(db), fresh=old_meta is None)
        builder.check_orientation(folder, sorted(set(symmetric) - old_symmetric))
        summary = builder.add(documents, frozenset(symmetric_all), config, progress)
        builder.recompute_graph()
        stats = _stats(builder.conn)
        builder.close()
        builder = None
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "database": new_name,
            "spert": __version__,
            "ladybug": getattr(lb, "__version__", "unknown"),
            "symmetric": symmetric_all,
            "stats": stats,
        }
        with signals_held():
            atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n", fsync=True)
    except BaseException:
        if builder is not None:
            builder.close()
        _remove_database(new_path)
        raise
    # The old database, and copies left by builds that were killed (SIGKILL, power loss).
    for stale in {p.name.split(".lbug")[0] for p in folder.glob(_DATABASE_GLOB)}:
        if stale + ".lbug" != new_name:
            _remove_database(folder / (stale + ".lbug"))
    summary.stats = stats
    summary.seconds = time.perf_counter() - started
    return summary


_DATABASE_GLOB = "graph-*.lbug*"


def _foreign_files(folder: Path) -> list[Path]:
    """Files in ``folder`` that a build did not make (a store's folder holds no others)."""
    return [
        p
        for p in folder.iterdir()
        if not p.match(_DATABASE_GLOB) and p.name not in (META_FILE, BUILD_LOCK)
    ]


def _remove_database(path: Path) -> None:
    """The database file and the files LadybugDB keeps beside it (write-ahead log, ...)."""
    for p in path.parent.glob(path.name + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class _Builder:
    """Writes batches of documents into an open database, then recomputes nodes and edges."""

    def __init__(self, db: Any, conn: Any, fresh: bool) -> None:
        self.db = db
        self.conn = conn
        if fresh:
            for statement in _SCHEMA + _GRAPH_SCHEMA:
                conn.execute(statement)
        self.any_documents = not fresh and _stats(conn)["documents"] > 0

    def close(self) -> None:
        self.conn.close()
        self.db.close()

    def check_orientation(self, folder: Path, newly_symmetric: list[str]) -> None:
        """Refuse types that become symmetric while the store holds relations of theirs in
        the non-canonical direction (tail node before head node): their edges would exist
        in both directions. (Evidence of a symmetric type is stored head <= tail.)"""
        if not newly_symmetric or not self.any_documents:
            return
        found = self.conn.execute(
            "MATCH (v:Evidence) WHERE v.type IN $types AND v.tail < v.head RETURN DISTINCT v.type",
            {"types": newly_symmetric},
        )
        types = sorted(row[0] for row in found.get_all())
        if types:
            raise GraphError(
                f"{folder}: {', '.join(types)} now symmetric, but the store holds relations of "
                "this type in both directions: build everything into a new store"
            )

    def add(
        self,
        documents: Iterable[SourceDocument],
        symmetric: frozenset[str],
        config: GraphConfig,
        progress: bool,
    ) -> BuildSummary:
        summary = BuildSummary(0, 0, 0, 0, 0, 0.0, {})
        batch: dict[str, tuple[SourceDocument, list[EntityMention], list[RelationMention]]] = {}
        with tqdm(unit="doc", desc="graph build", file=sys.stderr, disable=not progress) as bar:
            for item in documents:
                entities, relations = document_mentions(
                    item.document, item.id, symmetric, config.person_types, item.where
                )
                batch.pop(item.id, None)  # a later copy in the input wins
                batch[item.id] = (item, entities, relations)
                summary.documents_read += 1
                summary.sentences_read += len(item.document.sentences)
                summary.entity_mentions_read += len(entities)
                summary.relation_mentions_read += len(relations)
                bar.update()
                if len(batch) >= config.batch_documents:
                    summary.documents_replaced += self._write(batch)
                    batch = {}
            if batch:
                summary.documents_replaced += self._write(batch)
        return summary

    def _write(self, batch: Mapping[str, tuple]) -> int:
        """Store one batch; documents already in the store are replaced. Returns how many."""
        ids = list(batch)
        replaced = 0
        if self.any_documents:
            found = self.conn.execute(
                "MATCH (d:Document) WHERE d.id IN $ids RETURN d.id", {"ids": ids}
            )
            existing = [row[0] for row in found.get_all()]
            if existing:
                replaced = len(existing)
                for table in ("Mention", "Evidence"):
                    self.conn.execute(
                        f"MATCH (x:{table}) WHERE x.doc IN $ids DELETE x", {"ids": existing}
                    )
                self.conn.execute(
                    "MATCH (d:Document) WHERE d.id IN $ids DELETE d", {"ids": existing}
                )
        documents = pa.table(
            {
                "id": ids,
                "sentences": [len(item.document.sentences) for item, _, _ in batch.values()],
                "source": [item.where for item, _, _ in batch.values()],
            }
        )
        mentions = [m for _, entities, _ in batch.values() for m in entities]
        evidence = [r for _, _, relations in batch.values() for r in relations]
        mention_table = pa.table(
            {
                "id": [f"{m.doc}#{m.sentence}#{m.index}" for m in mentions],
                "doc": [m.doc for m in mentions],
                "sentence": pa.array([m.sentence for m in mentions], pa.int64()),
                "start_char": pa.array([m.start for m in mentions], pa.int64()),
                "end_char": pa.array([m.end for m in mentions], pa.int64()),
                "text": [m.text for m in mentions],
                "type": [m.type for m in mentions],
                "score": pa.array([float(m.score) for m in mentions], pa.float64()),
                "entity": [m.node for m in mentions],
            }
        )
        evidence_table = pa.table(
            {
                "id": [f"{r.doc}#{r.sentence}#{r.index}" for r in evidence],
                "edge": [r.edge for r in evidence],
                "doc": [r.doc for r in evidence],
                "sentence": pa.array([r.sentence for r in evidence], pa.int64()),
                "head": [r.head for r in evidence],
                "type": [r.type for r in evidence],
                "tail": [r.tail for r in evidence],
                "head_start": pa.array([r.head_start for r in evidence], pa.int64()),
                "head_end": pa.array([r.head_end for r in evidence], pa.int64()),
                "tail_start": pa.array([r.tail_start for r in evidence], pa.int64()),
                "tail_end": pa.array([r.tail_end for r in evidence], pa.int64()),
                "head_text": [r.head_text for r in evidence],
                "tail_text": [r.tail_text for r in evidence],
                "text": [r.sentence_text for r in evidence],
                "score": pa.array([float(r.score) for r in evidence], pa.float64()),
            }
        )
        self._copy("Document", documents)
        self._copy("Mention", mention_table)
        self._copy("Evidence", evidence_table)
        self.any_documents = True
        return replaced

    def _copy(self, table_name: str, table: Any) -> None:
        if table.num_rows:
            self.conn.execute(f"COPY {table_name} FROM $rows", {"rows": table})

    def recompute_graph(self) -> None:
        """Nodes and edges from all mentions and evidence (replaces the old ones)."""
        self.conn.execute("DROP TABLE RELATED")
        self.conn.execute("DROP TABLE Entity")
        for statement in _GRAPH_SCHEMA:
            self.conn.execute(statement)

        forms: dict[str, Counter[str]] = defaultdict(Counter)
        for node, text, n in self.conn.execute(
            "MATCH (m:Mention) RETURN m.entity, m.text, count(*)"
        ).get_all():
            forms[node][" ".join(text.split())] += n
        rows = self.conn.execute(
            "MATCH (m:Mention) RETURN m.entity, min(m.type), count(*), count(DISTINCT m.doc)"
        ).get_all()
        ids, types, names, aliases, alias_counts, mentions, docs = [], [], [], [], [], [], []
        for node, entity_type, n, n_docs in rows:
            # Most frequent first; ties: the longer form, then alphabetical.
            ranked = sorted(forms.pop(node).items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))
            ids.append(node)
            types.append(entity_type)
            names.append(ranked[0][0])
            aliases.append([a for a, _ in ranked])
            alias_counts.append([c for _, c in ranked])
            mentions.append(n)
            docs.append(n_docs)
        self._copy(
            "Entity",
            pa.table(
                {
                    "id": ids,
                    "type": types,
                    "name": names,
                    "aliases": pa.array(aliases, pa.list_(pa.string())),
                    "alias_counts": pa.array(alias_counts, pa.list_(pa.int64())),
                    "mentions": pa.array(mentions, pa.int64()),
                    "documents": pa.array(docs, pa.int64()),
                }
            ),
        )
        del ids, types, names, aliases, alias_counts, mentions, docs

        edges = self.conn.execute(
            "MATCH (v:Evidence) RETURN v.head, v.tail, v.edge, v.type, count(*), "
            "count(DISTINCT v.doc), max(v.score), "
            "sum(CASE WHEN v.score < 1.0 THEN ln(1.0 - v.score) ELSE 0.0 END), "
            "sum(CASE WHEN v.score >= 1.0 THEN 1 ELSE 0 END)"
        ).get_all()
        columns: dict[str, list[Any]] = defaultdict(list)
        for head, tail, edge, rel_type, n, n_docs, best, log_miss, certain in edges:
            columns["from"].append(head)
            columns["to"].append(tail)
            columns["id"].append(edge)
            columns["type"].append(rel_type)
            columns["mentions"].append(n)
            columns["documents"].append(n_docs)
            columns["confidence"].append(confidence_from_log(float(log_miss), int(certain)))
            columns["max_score"].append(float(best))
        if edges:
            self._copy(
                "RELATED",
                pa.table(
                    {
                        "from": columns["from"],
                        "to": columns["to"],
                        "id": columns["id"],
                        "type": columns["type"],
                        "mentions": pa.array(columns["mentions"], pa.int64()),
                        "documents": pa.array(columns["documents"], pa.int64()),
                        "confidence": pa.array(columns["confidence"], pa.float64()),
                        "max_score": pa.array(columns["max_score"], pa.float64()),
                    }
                ),
            )


def confidence_from_log(log_miss: float, certain: int) -> float:
    """1 - prod(1 - p) from sum(log(1 - p)) over the scores below 1 and the number of scores
    equal to 1 (which make the product 0)."""
    return 1.0 if certain else -math.expm1(log_miss)


def combined_confidence(scores: Iterable[float]) -> float:
    """1 - prod(1 - p): the chance that at least one mention is right, as if independent."""
    scores = list(scores)
    certain = sum(1 for p in scores if p >= 1.0)
    return confidence_from_log(sum(math.log1p(-p) for p in scores if p < 1.0), certain)
