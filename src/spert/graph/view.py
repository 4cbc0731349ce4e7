"""The graph as one self-contained HTML page (inline CSS, JavaScript and data; no network).

Nodes are coloured by type and sized by their mention count; edges are labelled with their
type (an arrow for directed types). A click on a node shows its aliases with counts; a click
on an edge its confidence, counts and evidence sentences (head and tail marked). The page
shows the most confident edges (at most ``max_edges``) at or above ``min_confidence`` and
their nodes; ``types`` keeps only the entity and relation types named.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

from spert.config import GraphConfig
from spert.graph.export import check_output_path
from spert.graph.store import GraphError, GraphStore
from spert.utils import atomic_write_text

#: Type colours, in the order types are first seen (then repeated).
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def graph_view_data(
    store: GraphStore,
    min_confidence: float = 0.0,
    types: Collection[str] | None = None,
    config: GraphConfig | None = None,
) -> dict[str, Any]:
    """The nodes, edges (with evidence) and colours the page shows."""
    config = config or GraphConfig()
    keep = set(types) if types else None
    node_rows = {n["id"]: n for n in store.nodes() if keep is None or n["type"] in keep}
    edges = []
    for e in store.edges(min_confidence):
        if len(edges) >= config.view_max_edges:
            break
        if keep is not None and e["type"] not in keep:
            continue
        if e["head"] not in node_rows or e["tail"] not in node_rows:
            continue
        evidence = list(store.evidence(e["id"], limit=config.view_max_evidence))
        e = dict(e, symmetric=e["type"] in store.symmetric)
        e["evidence"] = [
            {k: v[k] for k in ("doc", "sentence", "text", "head_text", "tail_text", "score")}
            for v in evidence
        ]
        edges.append(e)
    if edges:
        shown = {e["head"] for e in edges} | {e["tail"] for e in edges}
    else:  # no edges: the most mentioned nodes
        ranked = sorted(node_rows.values(), key=lambda n: (-n["mentions"], n["id"]))
        shown = {n["id"] for n in ranked[: config.view_max_edges]}
    nodes = [node_rows[i] for i in sorted(shown)]
    type_order = list(dict.fromkeys(n["type"] for n in node_rows.values()))
    colours = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(sorted(type_order))}
    return {"nodes": nodes, "edges": edges, "colours": colours, "stats": store.stats()}


def _asset(name: str) -> str:
    return resources.files("spert.graph").joinpath("assets", name).read_text(encoding="utf-8")


def render_graph(data: dict[str, Any], title: str = "spert knowledge graph") -> str:
    """The page for :func:`graph_view_data`'s data."""
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    stats = data["stats"]
    summary = (
        f"showing {len(data['nodes'])} nodes and {len(data['edges'])} edges of "
        f"{stats['nodes']} nodes and {stats['edges']} edges "
        f"({stats['documents']} documents); click a node or an edge"
    )
    legend = "".join(
        f'<span class="swatch"><i style="background:{c}"></i>{html.escape(t)}</span>'
        for t, c in data["colours"].items()
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('graph.css')}</style>\n"
        "</head>\n<body>\n"
        f"<header><h1>{html.escape(title)}</h1>\n"
        f'<div class="summary">{html.escape(summary)}</div>\n'
        f'<div class="legend">{legend}</div></header>\n'
        '<div id="layout"><div id="canvas"></div>\n'
        '<aside id="panel"><p class="hint">Click a node for its aliases, an edge for its '
        "evidence.</p></aside></div>\n"
        f'<script type="application/json" id="graph-data">{payload}</script>\n'
        f"<script>\n{_asset('graph.js')}</script>\n"
        "</body>\n</html>\n"
    )


def write_graph_view(
    store: GraphStore,
    out: str | os.PathLike[str],
    min_confidence: float = 0.0,
    types: Collection[str] | None = None,
    config: GraphConfig | None = None,
    title: str = "spert knowledge graph",
) -> dict[str, Any]:
    """Write the page to ``out`` (atomically; not inside the store); returns the data shown."""
    check_output_path(store, Path(out))
    if Path(out).is_dir():
        raise GraphError(f"{out}: is a folder; the view is an HTML file")
    data = graph_view_data(store, min_confidence, types, config)
    atomic_write_text(Path(out), render_graph(data, title))
    return data
