"""HTML visualization: content, escaping, tp/fp/fn marking, and the page as a browser draws it."""

from __future__ import annotations

import argparse
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import chromium

from spert.cli.predict import register as add_parser
from spert.data import DataError, Entity, Relation, RelationType, Sentence, Types, write_dataset
from spert.render.pages import (
    MarkedEntity,
    MarkedRelation,
    SentenceGroup,
    compare_sentence,
    render_comparison,
    render_comparison_groups,
    render_documents,
    render_sentences,
    write_html,
)
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

TYPES = Types(
    entities=("Peop", "Org", "Loc"),
    relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
)
TOKENS = "Mary and John work for Acme Corp in Boston .".split()
#         0    1   2    3    4   5    6    7  8      9


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside chosen elements."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[tuple[dict[str, str], str]] = []
        self._open: list[tuple[dict[str, str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "text":
            self._open.append((a, []))

    def handle_data(self, data: str) -> None:
        for _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "text" and self._open:
            a, parts = self._open.pop()
            self.texts.append((a, "".join(parts)))

    def having(self, tag: str, *classes: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and set(classes) <= set(a.get("class", "").split())
        ]


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def comparison_case() -> tuple[Sentence, Sentence]:
    gold = Sentence(
        TOKENS,
        [Entity("Peop", 0, 1), Entity("Peop", 2, 3), Entity("Org", 5, 7), Entity("Loc", 8, 9)],
        [
            Relation("Work_For", 0, 2),  # predicted with Acme Corp as Loc: FN (strict)
            Relation("Spouse", 0, 1),  # predicted reversed, symmetric: TP
            Relation("Live_In", 0, 3),  # predicted reversed, not symmetric: FN (+ FP)
        ],
    )
    predicted = Sentence(
        TOKENS,
        [
            Entity("Peop", 0, 1, 0.9),
            Entity("Peop", 2, 3, 0.8),
            Entity("Loc", 5, 7, 0.7),
            Entity("Loc", 8, 9, 0.6),
            Entity("Peop", 0, 1, 0.5),  # a duplicate: collapses
        ],
        [
            Relation("Work_For", 0, 2, 0.55),
            Relation("Spouse", 1, 0, 0.65),
            Relation("Live_In", 3, 0, 0.45),
        ],
    )
    return gold, predicted


def test_entities_marked_tp_fp_fn() -> None:
    gold, predicted = comparison_case()
    c = compare_sentence(gold, predicted, TYPES.symmetric)
    assert c.entities == [
        MarkedEntity("Peop", 0, 1, "tp", 0.9),
        MarkedEntity("Peop", 2, 3, "tp", 0.8),
        MarkedEntity("Loc", 5, 7, "fp", 0.7),  # the same span, another type
        MarkedEntity("Org", 5, 7, "fn", None),
        MarkedEntity("Loc", 8, 9, "tp", 0.6),
    ]
    assert c.counts()["entities"] == {"tp": 3, "fp": 1, "fn": 1}


def test_relations_strict_and_symmetric() -> None:
    gold, predicted = comparison_case()
    c = compare_sentence(gold, predicted, TYPES.symmetric)
    peop0, peop2, loc5, org5, loc8 = range(5)
    assert c.relations == [
        MarkedRelation("Work_For", peop0, org5, "fn", None),
        MarkedRelation("Spouse", peop0, peop2, "tp", 0.65),
        MarkedRelation("Live_In", peop0, loc8, "fn", None),
        MarkedRelation("Work_For", peop0, loc5, "fp", 0.55),
        MarkedRelation("Live_In", loc8, peop0, "fp", 0.45),
    ]
    assert c.counts()["relations"] == {"tp": 1, "fp": 2, "fn": 2}
    # Without the symmetric type, the reversed Spouse is an error too.
    plain = compare_sentence(gold, predicted, ())
    assert plain.counts()["relations"] == {"tp": 0, "fp": 3, "fn": 3}


def test_identical_sentences_are_all_tp() -> None:
    gold, _ = comparison_case()
    c = compare_sentence(gold, gold, TYPES.symmetric)
    assert {e.status for e in c.entities} == {"tp"}
    assert {r.status for r in c.relations} == {"tp"}


def test_mismatched_sentences_are_errors() -> None:
    gold, predicted = comparison_case()
    with pytest.raises(DataError, match="different tokens"):
        compare_sentence(gold, Sentence(TOKENS[:-1]), ())
    with pytest.raises(DataError, match="sentence 2: gold and predicted"):
        render_comparison([gold, gold], [predicted, Sentence(["x"])], TYPES)
    with pytest.raises(DataError, match="gold has 1 sentences but the predictions have 2"):
        render_comparison([gold], [predicted, predicted], TYPES)


def test_comparison_page_content() -> None:
    gold, predicted = comparison_case()
    page = render_comparison([gold, gold], [predicted, gold], TYPES, title="Dev <set>")
    dom = parse(page)
    assert "<title>Dev &lt;set&gt;</title>" in page
    marks = dom.having("span", "ent")
    assert [(m["data-type"], m["data-status"]) for m in marks[:5]] == [
        ("Peop", "tp"),
        ("Peop", "tp"),
        ("Loc", "fp"),
        ("Org", "fn"),
        ("Loc", "tp"),
    ]
    assert len(dom.having("span", "ent", "tp")) == 3 + 4
    assert len(dom.having("li", "rel-item", "fp")) == 2
    assert len(dom.having("li", "rel-item", "fn")) == 2
    assert len(dom.having("li", "rel-item", "tp")) == 1 + 3
    # The status labels are text on the page, next to the colours.
    assert re.search(r'<span class="badge fn">FN</span> <span class="rtype">Work_For</span>', page)
    assert 'data-label="Spouse · TP"' in page
    # Summary: entities 7 TP, 1 FP, 1 FN; relations 4 TP, 2 FP, 2 FN.
    assert re.search(
        r'data-kind="entities"><th>Entities</th><td class="tp">7</td><td class="fp">1</td>'
        r'<td class="fn">1</td>',
        page,
    )
    assert re.search(
        r'data-kind="relations">.*?<td class="tp">4</td><td class="fp">2</td><td class="fn">2</td>',
        page,
    )
    # Sentences with errors can be filtered; one type colour per type in the legend.
    assert len(dom.having("section", "sentence", "has-errors")) == 1
    assert len(dom.having("section", "sentence", "no-errors")) == 1
    assert len(dom.having("span", "swatch")) == 3
    # Self-contained: no external resources.
    assert not re.search(r"(src|href)=", page)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_text_is_escaped() -> None:
    tokens = ["<script>alert(1)</script>", "A&B", '"quoted"', "x"]
    sentence = Sentence(tokens, [Entity("Peop", 0, 2)], [])
    page = render_comparison([sentence], [sentence], TYPES, title="<b>&")
    assert "<script>alert" not in page
    assert page.count("<script") == 1  # the page's own script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "A&amp;B" in page
    assert "&quot;quoted&quot;" in page
    assert "<title>&lt;b&gt;&amp;</title>" in page
    # Attributes too (tooltips quote the entity text).
    dom = parse(page)
    assert "<script>alert(1)</script> A&B" in dom.having("span", "ent")[0]["title"]


def raw_document() -> Document:
    text = "Mary Smith works for <Acme> & Co.\nShe lives in Boston."
    s1_tokens = ["Mary", "Smith", "works", "for", "<Acme>", "&", "Co."]
    s1_offsets = [(0, 4), (5, 10), (11, 16), (17, 20), (21, 27), (28, 29), (30, 33)]
    s2_tokens = ["She", "lives", "in", "Boston", "."]
    s2_offsets = [(34, 37), (38, 43), (44, 46), (47, 53), (53, 54)]
    s1 = ExtractedSentence(
        text[0:33],
        0,
        33,
        s1_tokens,
        s1_offsets,
        [
            ExtractedEntity("Peop", "Mary Smith", 0, 10, 0, 2, 0.987),
            ExtractedEntity("Org", "<Acme> & Co.", 21, 33, 4, 7, 0.876),
        ],
        [ExtractedRelation("Work_For", 0, 1, 0.765)],
    )
    s2 = ExtractedSentence(
        text[34:],
        34,
        54,
        s2_tokens,
        s2_offsets,
        [
            ExtractedEntity("Peop", "She", 34, 37, 0, 1, 0.9),
            ExtractedEntity("Loc", "Boston", 47, 53, 3, 4, 0.8),
        ],
        [ExtractedRelation("Live_In", 0, 1, 0.7)],
    )
    return Document(text, [s1, s2], id="doc-1")


def test_documents_page_content() -> None:
    page = render_documents([raw_document()])
    dom = parse(page)
    marks = dom.having("span", "ent")
    assert [m["data-type"] for m in marks] == ["Peop", "Org", "Peop", "Loc"]
    assert "score 0.987" in marks[0]["title"]
    assert "data-status" not in marks[0]  # no gold: no statuses
    items = dom.having("li", "rel-item")
    assert [(i["data-type"], i["data-head"], i["data-tail"]) for i in items] == [
        ("Work_For", "0", "1"),
        ("Live_In", "0", "1"),
    ]
    assert "score 0.765" in items[0]["title"]
    assert "Document doc-1, sentence 2" in page
    assert "&lt;Acme&gt; &amp; Co." in page
    assert "1 documents, 2 sentences, 4 entities, 2 relations" in page
    assert "TP" not in re.sub(r"<(style|script)>.*?</\1>", "", page, flags=re.S)


def test_documents_bad_indices() -> None:
    doc = raw_document()
    doc.sentences[0].relations.append(ExtractedRelation("Kill", 0, 5, 0.5))
    with pytest.raises(DataError, match="relation 1: 5 is not an entity index"):
        render_documents([doc])
    doc = raw_document()
    doc.sentences[1].entities[0].token_end = 9
    with pytest.raises(DataError, match=r"sentence 2, entity 0: token span \[0, 9\)"):
        render_documents([doc])


def test_render_sentences_and_empty_pages() -> None:
    gold, _ = comparison_case()
    page = render_sentences([gold])
    assert len(parse(page).having("li", "rel-item")) == 3
    assert "No sentences." in render_documents([])
    assert "No sentences." in render_comparison([], [], TYPES)


def test_comparison_groups_page() -> None:
    gold, predicted = comparison_case()
    groups = [
        SentenceGroup("Relations <FN>", "gold only", [1, 0], {1: "2 \u00d7 missed"}),
        SentenceGroup("All", "every sentence", [0]),
    ]
    page = render_comparison_groups(
        [gold, gold], [gold, predicted], TYPES, groups, title="Errors", intro="2 sentences."
    )
    dom = parse(page)
    # a sentence may appear under several headings; sections keep page-unique ids
    sections = dom.having("section", "sentence")
    assert [s["id"] for s in sections] == ["s1", "s2", "s3"]
    assert '<h2 id="group-1">Relations &lt;FN&gt;</h2>' in page
    assert '<a href="#group-2">All</a> (1 sentences)' in page
    assert "2 \u00d7 missed" in page  # the group's line replaces the counts of sentence 2
    assert "entities: TP 4 FP 0 FN 0" in page  # sentence 1 is all correct
    statuses = [a.get("data-status") for a in dom.having("li", "rel-item")]
    assert statuses.count("fn") == 2 and statuses.count("fp") == 2  # sentence 2, shown once
    with pytest.raises(DataError, match="group 'All': no sentence 5"):
        render_comparison_groups([gold], [gold], TYPES, [SentenceGroup("All", "", [5])])
    with pytest.raises(DataError, match="1 sentences but the predictions have 2"):
        render_comparison_groups([gold], [gold, gold], TYPES, groups)


def test_write_html_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "page.html"
    write_html(out, "<p>é</p>")
    assert out.read_text(encoding="utf-8") == "<p>é</p>"
    assert [p.name for p in out.parent.iterdir()] == ["page.html"]


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="spert")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold, predicted = comparison_case()
    types_file = tmp_path / "types.json"
    types_file.write_text(
        '{"entities": {"Peop": {}, "Org": {}, "Loc": {}}, "relations": {"Work_For": {}, '
        '"Live_In": {}, "Spouse": {"symmetric": true}}}'
    )
    write_dataset(tmp_path / "gold.json", [gold])
    write_dataset(tmp_path / "pred.jsonl", [predicted])
    out = tmp_path / "page.html"
    common = ["--pred", str(tmp_path / "pred.jsonl"), "--types", str(types_file)]
    run_cli(["visualize", "--gold", str(tmp_path / "gold.json"), *common, "--out", str(out)])
    assert "1 sentences ->" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert len(parse(page).having("li", "rel-item", "tp")) == 1  # the symmetric Spouse
    run_cli(["visualize", *common, "--out", str(tmp_path / "pred.html"), "--title", "Preds"])
    assert "<title>Preds</title>" in (tmp_path / "pred.html").read_text(encoding="utf-8")
    with pytest.raises(DataError, match="no such file"):
        run_cli(["visualize", "--gold", str(tmp_path / "nope.json"), *common, "--out", str(out)])


# --------------------------------------------------------------------------- in a browser


def test_browser_draws_comparison(tmp_path: Path) -> None:
    gold, predicted = comparison_case()
    page = tmp_path / "comparison.html"
    write_html(page, render_comparison([gold, gold], [predicted, gold], TYPES))
    dumped = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    dom = parse(dumped)

    # Entity marks, laid out by the script under the tokens they cover.
    marks = dom.having("span", "ent")
    assert len(marks) == 5 + 4
    assert [(m["data-type"], m["data-status"]) for m in marks[:5]] == [
        ("Peop", "tp"),
        ("Peop", "tp"),
        ("Loc", "fp"),
        ("Org", "fn"),
        ("Loc", "tp"),
    ]
    for mark in marks:
        style = dict(
            item.split(":", 1) for item in mark["style"].replace(" ", "").split(";") if item
        )
        assert all(re.fullmatch(r"[\d.]+px", style[k]) for k in ("left", "width", "top"))
        assert float(style["width"].removesuffix("px")) > 5
    # Two rows of marks in the first sentence (Loc and Org share a span), one in the second.
    assert re.search(r'class="ents" data-rows="2" style="height: 38px', dumped)

    # One arc, arrow and label per relation (5 + 3), labelled with type and status.
    assert len(dom.having("g", "rel")) == 8
    assert len(dom.having("path", "rel-arc")) == 8
    assert len(dom.having("path", "rel-arrow")) == 8
    labels = [text for a, text in dom.texts if a.get("class") == "rel-label"]
    assert labels[:5] == [
        "Work_For · FN",
        "Spouse · TP",
        "Live_In · FN",
        "Work_For · FP",
        "Live_In · FP",
    ]
    statuses = [g["class"].split()[1] for g in dom.having("g", "rel")]
    assert statuses == ["fn", "tp", "fn", "fp", "fp", "tp", "tp", "tp"]
    assert all(re.fullmatch(r"M[\d.]+,[\d.]+ V.*", p["d"]) for p in dom.having("path", "rel-arc"))
    svgs = dom.having("svg", "arcs")
    assert all(int(s["height"]) > 0 and int(s["width"]) > 100 for s in svgs)


def test_browser_draws_documents(tmp_path: Path) -> None:
    page = tmp_path / "documents.html"
    write_html(page, render_documents([raw_document()]))
    dom = parse(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
    assert [m["data-type"] for m in dom.having("span", "ent")] == ["Peop", "Org", "Peop", "Loc"]
    assert len(dom.having("path", "rel-arc")) == 2
    assert [t for a, t in dom.texts if a.get("class") == "rel-label"] == ["Work_For", "Live_In"]
    assert "html" in dom.elements[0][0] and "js" in dom.elements[0][1].get("class", "")


def test_browser_screenshot(tmp_path: Path) -> None:
    gold, predicted = comparison_case()
    page = tmp_path / "comparison.html"
    write_html(page, render_comparison([gold], [predicted], TYPES))
    png = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1000,700", page.as_uri())
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # more than a blank page


def test_old_import_path_still_works_and_warns() -> None:
    """README named ``spert.evaluation.visualize.render_documents``: it works, and warns."""
    import importlib
    import sys

    sys.modules.pop("spert.evaluation.visualize", None)
    with pytest.warns(DeprecationWarning, match="spert.render.pages"):
        old = importlib.import_module("spert.evaluation.visualize")
    assert old.render_documents is render_documents
