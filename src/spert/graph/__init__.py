"""From extractions to a knowledge graph: merge mentions into nodes and edges, store them in an
embedded graph database (LadybugDB, Cypher), query, export, view and evaluate.

One module per job: :mod:`~spert.graph.merge` (name normalization and merging rules),
:mod:`~spert.graph.source` (reading ``spert extract`` output), :mod:`~spert.graph.store`
(building and opening a store), :mod:`~spert.graph.query` (query results as tables),
:mod:`~spert.graph.export` (Neo4j CSV, GraphML, RDF, JSONL), :mod:`~spert.graph.view` (a
self-contained HTML page) and :mod:`~spert.graph.eval` (the gold graph against the predicted).
"""

from spert.graph.merge import document_mentions, normalize_name
from spert.graph.source import SourceDocument, documents_with_ids, read_extractions
from spert.graph.store import (
    BuildSummary,
    GraphError,
    GraphQueryError,
    GraphStore,
    QueryResult,
    build_graph,
)

__all__ = [
    "BuildSummary",
    "GraphError",
    "GraphQueryError",
    "GraphStore",
    "QueryResult",
    "SourceDocument",
    "build_graph",
    "document_mentions",
    "documents_with_ids",
    "normalize_name",
    "read_extractions",
]
