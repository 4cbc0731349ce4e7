"""``spert graph build|query|export|view|eval``: a knowledge graph from extractions (see
:mod:`spert.graph`)."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spert.cli.common import CliError, add_prediction_options, load_model
from spert.config import GraphConfig
from spert.data import DataError, read_dataset, read_types
from spert.graph.eval import evaluate_graphs, gold_documents, gold_texts, plot_curve
from spert.graph.export import EXPORT_FORMATS, export_graph
from spert.graph.query import QUERY_FORMATS, format_result
from spert.graph.source import SourceDocument, documents_with_ids, read_extractions
from spert.graph.store import BuildSummary, GraphStore, build_graph
from spert.graph.view import write_graph_view
from spert.model.directory import find_model_dir, read_meta
from spert.runtime.io import guess_input_format, open_input, read_inputs
from spert.utils import atomic_write_text, sigterm_as_interrupt


def _symmetric(args: argparse.Namespace) -> set[str]:
    """The symmetric relation types of --types and --model."""
    found: set[str] = set()
    if getattr(args, "types", None):
        found |= read_types(args.types).symmetric
    if getattr(args, "model", None):
        found |= read_meta(find_model_dir(args.model))[-1].symmetric
    return found


def _text_documents(args: argparse.Namespace) -> Iterator[SourceDocument]:
    """Extract the --text files with --model (ids: a JSONL record's id, else file:line)."""
    model = load_model(args.model, args.device, args.runtime, args.calibration)
    for path in args.text:
        input_format = guess_input_format(path)
        name = Path(path).name
        with open_input(path) as stream:
            inputs = (
                (doc_id if input_format == "jsonl" else f"{name}:{doc_id}", text)
                for doc_id, text in read_inputs(stream, input_format, path)
            )
            yield from documents_with_ids(model.extract_stream(inputs, args.batch_size), name)


def _print_summary(summary: BuildSummary, out: str) -> None:
    s = summary.stats
    print(
        f"read {summary.documents_read} documents ({summary.sentences_read} sentences, "
        f"{summary.entity_mentions_read} entity and {summary.relation_mentions_read} relation "
        f"mentions; {summary.documents_replaced} replaced) in {summary.seconds:.1f} s\n"
        f"{out}: {s['documents']} documents, {s['nodes']} nodes ({s['merged_aliases']} merged "
        f"aliases), {s['edges']} edges ({s['relation_mentions']} evidence)"
    )


def cmd_build(args: argparse.Namespace) -> None:
    if not args.input and not args.text:
        raise CliError("give --input (spert extract output) and/or --model with --text")
    if args.text and not args.model:
        raise CliError("--text needs --model (the model that extracts them)")
    sources: list[Any] = []
    if args.input:
        sources.append(read_extractions(args.input))
    if args.text:
        sources.append(_text_documents(args))
    _check_positive(args.batch_documents, "--batch-documents")
    config = GraphConfig(batch_documents=args.batch_documents)
    with sigterm_as_interrupt():
        summary = build_graph(
            args.out, itertools.chain(*sources), _symmetric(args), config, not args.quiet
        )
    _print_summary(summary, args.out)


def cmd_query(args: argparse.Namespace) -> None:
    with GraphStore(args.store) as store:
        result = store.query(args.query)
    sys.stdout.write(format_result(result, args.format))


def cmd_export(args: argparse.Namespace) -> None:
    with GraphStore(args.store) as store:
        path = export_graph(store, args.format, args.out, args.overwrite)
        stats = store.stats()
    print(f"{stats['nodes']} nodes, {stats['edges']} edges -> {path} ({args.format})")


def cmd_view(args: argparse.Namespace) -> None:
    _check_positive(args.max_edges, "--max-edges")
    config = GraphConfig(view_max_edges=args.max_edges)
    with GraphStore(args.store) as store:
        data = write_graph_view(
            store, args.out, args.min_confidence, args.types, config, args.title or args.store
        )
    print(f"{len(data['nodes'])} nodes, {len(data['edges'])} edges -> {args.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    _check_positive(args.group_size, "--group-size")
    gold = read_dataset(args.gold)
    if args.write_texts:
        lines = [json.dumps(r, ensure_ascii=False) for r in gold_texts(gold, args.group_size)]
        atomic_write_text(args.write_texts, "\n".join(lines) + "\n")
        print(f"{len(lines)} documents of {args.group_size} sentence(s) -> {args.write_texts}")
        if not args.pred:
            return
    if not args.pred:
        raise CliError("give --pred (spert extract output of the --write-texts documents)")
    symmetric = _symmetric(args)
    work = Path(args.work) if args.work else None
    with tempfile.TemporaryDirectory(prefix="spert-graph-eval-") as scratch:
        base = work or Path(scratch)
        gold_store, pred_store = base / "gold", base / "predicted"
        for store, documents in (
            (gold_store, gold_documents(gold, args.group_size)),
            (pred_store, read_extractions(args.pred)),
        ):
            if work is not None and store.exists():
                raise CliError(f"{store} exists: --work needs a new folder")
            build_graph(store, documents, symmetric, progress=False)
        result = evaluate_graphs(gold_store, pred_store)
    g, p = result.gold_stats, result.predicted_stats
    print(
        f"gold graph: {g['nodes']} nodes ({g['merged_aliases']} merged aliases), "
        f"{g['edges']} edges\npredicted graph: {p['nodes']} nodes "
        f"({p['merged_aliases']} merged aliases), {p['edges']} edges\n"
        f"triples: precision {result.precision:.4f}  recall {result.recall:.4f}  "
        f"F1 {result.f1:.4f}  ({result.correct} of {result.predicted_edges} predicted edges "
        f"right, {result.gold_edges} gold edges)"
    )
    print(f"{'confidence >=':>14} {'edges':>6} {'right':>6} {'precision':>10} {'recall':>8}")
    for cutoff in GraphConfig().eval_cutoffs:
        point = result.at(cutoff)
        print(
            f"{cutoff:14.2f} {point.edges:6d} {point.correct:6d} "
            f"{point.precision:10.4f} {point.recall:8.4f}"
        )
    if args.curve:
        plot_curve(result, args.curve)
        print(f"precision-recall curve -> {args.curve}")
    if args.out:
        atomic_write_text(args.out, json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"metrics -> {args.out}")


def register(sub: Any) -> None:
    """Add ``graph`` and its commands."""
    defaults = GraphConfig()
    group = sub.add_parser(
        "graph",
        help="knowledge graph from extractions: build, query, export, view, eval",
        description="Merge extracted mentions into a knowledge graph (nodes: entities, edges: "
        "relations with counts, confidence and evidence) stored in an embedded LadybugDB "
        "database; query it with Cypher, export, view or evaluate it.",
    )
    commands = group.add_subparsers(dest="graph_command", required=True)

    p = commands.add_parser(
        "build",
        help="build or extend a graph store",
        description="Add documents to the graph store KG (created if missing). A document "
        "id already in the store replaces that document. The store changes only when the "
        "build completes: an interrupted or failed build leaves it as it was.",
    )
    p.add_argument(
        "--input",
        nargs="+",
        default=[],
        help="spert extract JSONL output: files, folders of --ray shards, or globs",
    )
    p.add_argument("--out", required=True, help="the graph store folder (KG)")
    p.add_argument(
        "--model",
        help="model directory: its symmetric relation types; with --text it extracts the texts",
    )
    p.add_argument(
        "--text",
        nargs="+",
        default=[],
        help="raw text files to extract with --model (one document a line, or JSONL records "
        "with 'text' and 'id')",
    )
    p.add_argument("--types", help="types file: its symmetric relation types")
    p.add_argument(
        "--batch-documents",
        type=int,
        default=defaults.batch_documents,
        help=f"documents written at once (default: {defaults.batch_documents})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_prediction_options(p)
    p.set_defaults(func=cmd_build)

    p = commands.add_parser(
        "query",
        help="run a Cypher query",
        description="Run a Cypher query on the store. Tables: Entity(id, type, name, aliases, "
        "alias_counts, mentions, documents), RELATED(id, type, mentions, documents, "
        "confidence, max_score) between entities, Evidence(edge, doc, sentence, head, type, "
        "tail, head_text, tail_text, text, score, ...), Mention(doc, sentence, start_char, "
        "end_char, text, type, score, entity), Document(id, sentences, source).",
    )
    p.add_argument("store", metavar="KG", help="the graph store folder")
    p.add_argument(
        "query",
        help='e.g. "MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN '
        'a.name, r.type, b.name, r.confidence ORDER BY r.confidence DESC LIMIT 10"',
    )
    p.add_argument("--format", choices=QUERY_FORMATS, default="table", help="default: table")
    p.set_defaults(func=cmd_query)

    p = commands.add_parser("export", help="export for Neo4j, Gephi/networkx, RDF tools")
    p.add_argument("store", metavar="KG", help="the graph store folder")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="the export format")
    p.add_argument(
        "--out",
        required=True,
        help="a folder for neo4j (replaced whole), a file otherwise; not inside the store",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="neo4j: replace an existing --out folder that holds other files than a neo4j "
        "export (they are deleted); without it such a folder is refused",
    )
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("view", help="one self-contained HTML page of the graph")
    p.add_argument("store", metavar="KG", help="the graph store folder")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--min-confidence", type=float, default=0.0, help="edges at or above it")
    p.add_argument("--types", nargs="+", help="only these entity and relation types")
    p.add_argument(
        "--max-edges",
        type=int,
        default=defaults.view_max_edges,
        help=f"the most confident edges shown (default: {defaults.view_max_edges})",
    )
    p.add_argument("--title", help="page title (default: the store's path)")
    p.set_defaults(func=cmd_view)

    p = commands.add_parser(
        "eval",
        help="triple precision/recall of a predicted graph against the gold graph",
        description="Build the gold graph (GOLD grouped in documents of --group-size "
        "sentences, ids 0, 1, ...) and the predicted graph with the same merging, and print "
        "triple (head, type, tail) precision, recall and F1, and precision and recall at "
        "confidence cut-offs. --write-texts writes the gold documents as raw text for "
        "spert extract (so that the predicted documents have the same ids).",
    )
    p.add_argument("--gold", required=True, help="gold sentences (SpERT JSON)")
    p.add_argument("--pred", nargs="+", help="spert extract JSONL of the gold documents")
    p.add_argument(
        "--group-size",
        type=int,
        default=defaults.eval_group_size,
        help=f"sentences per document (default: {defaults.eval_group_size})",
    )
    p.add_argument("--write-texts", help="write the gold documents as JSONL {id, text} here")
    p.add_argument("--types", help="types file (its symmetric relation types)")
    p.add_argument("--model", help="model directory (its symmetric relation types)")
    p.add_argument("--curve", help="write the precision-recall curve PNG here")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--work", help="keep the gold and predicted stores in this new folder")
    p.set_defaults(func=cmd_eval)


def _check_positive(value: int, name: str) -> None:
    if value < 1:
        raise DataError(f"{name} must be at least 1, got {value}")
