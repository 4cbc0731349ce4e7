"""The HTML graph page: self-contained, its data filtered, and drawn by a browser (Chromium)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import chromium
from graph_docs import open_corpus_store

from spert.config import GraphConfig
from spert.graph.store import GraphError, GraphStore
from spert.graph.view import graph_view_data, write_graph_view

pytest.importorskip("ladybug")


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    yield from open_corpus_store(tmp_path_factory)


def test_data_and_filters(store: GraphStore) -> None:
    data = graph_view_data(store)
    assert len(data["edges"]) == 3 and len(data["nodes"]) == 5  # Org:ibm has no edge
    assert set(data["colours"]) == {"Loc", "Org", "Peop"}
    work = next(e for e in data["edges"] if e["type"] == "Work_For")
    assert [v["score"] for v in work["evidence"]] == [0.8, 0.5]
    assert [e["type"] for e in graph_view_data(store, min_confidence=0.91)["edges"]] == ["Spouse"]
    only = graph_view_data(store, types=["Peop", "Spouse"])
    assert [e["type"] for e in only["edges"]] == ["Spouse"]
    assert {n["type"] for n in only["nodes"]} == {"Peop"}
    few = graph_view_data(store, config=GraphConfig(view_max_edges=1, view_max_evidence=1))
    assert len(few["edges"]) == 1 and len(few["edges"][0]["evidence"]) == 1
    none = graph_view_data(store, min_confidence=1.0)
    assert none["edges"] == [] and len(none["nodes"]) == 6  # the most mentioned nodes


def test_page_is_self_contained(store: GraphStore, tmp_path: Path) -> None:
    page = tmp_path / "g.html"
    write_graph_view(store, page, title="<Test> graph")
    html = page.read_text(encoding="utf-8")
    assert "&lt;Test&gt; graph" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no network resource
    payload = re.search(
        r'<script type="application/json" id="graph-data">(.*?)</script>', html, re.S
    )
    assert json.loads(payload.group(1))["stats"]["nodes"] == 6


def test_page_is_never_written_into_the_store(store: GraphStore, tmp_path: Path) -> None:
    before = sorted(p.name for p in store.path.iterdir())
    for out, pattern in [
        (store.path / "view.html", "is or lies inside the graph store"),
        (store.path, "is or lies inside the graph store"),
        (tmp_path, "is a folder; the view is an HTML file"),
    ]:
        with pytest.raises(GraphError, match=pattern):
            write_graph_view(store, out)
    assert sorted(p.name for p in store.path.iterdir()) == before


def test_browser_draws_the_graph_and_shows_evidence(store: GraphStore, tmp_path: Path) -> None:
    page = tmp_path / "g.html"
    write_graph_view(store, page)
    edge = "Peop:john smith|Work_For|Org:international business machines"
    dumped = chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#{edge}").stdout
    dom = Elements()
    dom.feed(dumped)
    nodes = dom.having("g", "node")
    assert sorted(n["data-type"] for n in nodes) == ["Loc", "Org", "Peop", "Peop", "Peop"]
    assert all(re.fullmatch(r"translate\(-?[\d.]+,-?[\d.]+\)", n["transform"]) for n in nodes)
    positions = {n["transform"] for n in nodes}
    assert len(positions) == 5  # laid out: no two nodes on one spot
    assert len(dom.having("g", "edge")) == 3
    assert dom.having("g", "selected")[0]["data-id"] == edge
    text = " ".join(dom.text)
    # The panel shows the selected edge's evidence, head and tail marked.
    assert "John Smith joined International Business Machines" in text
    assert len(dom.having("mark", "head")) == 2 and len(dom.having("mark", "tail")) == 2
    # A node: its aliases.
    dumped = chromium(tmp_path, "--dump-dom", f"{page.as_uri()}#Peop:john smith").stdout
    dom = Elements()
    dom.feed(dumped)
    assert len(dom.having("tr", "alias")) == 2 and "Smith" in dom.text


def test_browser_screenshot(store: GraphStore, tmp_path: Path) -> None:
    page = tmp_path / "g.html"
    write_graph_view(store, page)
    png = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1000,700", page.as_uri())
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
