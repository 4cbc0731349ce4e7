"""Corpus-level evaluation: gold documents, triple precision/recall, the confidence curve."""

from __future__ import annotations

from pathlib import Path

import pytest

from spert.data import Entity, Relation, Sentence
from spert.data.matching import precision_recall_f1
from spert.graph.eval import compare_edges, evaluate, gold_documents, gold_texts, plot_curve
from spert.graph.source import SourceDocument

GOLD = [
    Sentence(
        "John Smith works for Acme in Boston .".split(),
        [Entity("Peop", 0, 2), Entity("Org", 4, 5), Entity("Loc", 6, 7)],
        [Relation("Work_For", 0, 1), Relation("OrgBased_In", 1, 2)],
    ),
    Sentence(
        "Smith lives in Boston .".split(),
        [Entity("Peop", 0, 1), Entity("Loc", 3, 4)],
        [Relation("Live_In", 0, 1)],
    ),
    Sentence("Nothing here .".split()),
]


def test_gold_documents_and_texts() -> None:
    docs = list(gold_documents(GOLD, 2))
    assert [d.id for d in docs] == ["0", "1"]
    doc = docs[0].document
    assert doc.text == "John Smith works for Acme in Boston . Smith lives in Boston ."
    assert [doc.text[e.start : e.end] for e in doc.entities] == [
        "John Smith",
        "Acme",
        "Boston",
        "Smith",
        "Boston",
    ]
    assert list(gold_texts(GOLD, 2)) == [
        {"id": "0", "text": doc.text},
        {"id": "1", "text": "Nothing here ."},
    ]
    with pytest.raises(ValueError):
        list(gold_documents(GOLD, 0))


def test_compare_edges_and_curve() -> None:
    gold = {("a", "R", "b"), ("c", "R", "d"), ("e", "R", "f")}
    predicted = [
        (("a", "R", "b"), 0.9),
        (("x", "R", "y"), 0.8),
        (("c", "R", "d"), 0.8),
        (("z", "R", "z"), 0.2),
    ]
    result = compare_edges(gold, predicted)
    assert (result.correct, result.predicted_edges, result.gold_edges) == (2, 4, 3)
    assert result.precision == 0.5 and result.recall == pytest.approx(2 / 3)
    # One point per distinct confidence; ties enter together.
    assert [(p.cutoff, p.edges, p.correct) for p in result.curve] == [
        (0.9, 1, 1),
        (0.8, 3, 2),
        (0.2, 4, 2),
    ]
    assert result.at(0.85).precision == 1.0 and result.at(0.5).edges == 3
    assert result.at(0.95).edges == 0


def test_compare_edges_scores_like_the_rest_of_the_library() -> None:
    # 1 right of 1 predicted, 5 gold: 2PR/(P+R) rounds to 0.33333333333333337, the shared
    # precision_recall_f1 (one division of counts) to 0.3333333333333333.
    gold = {("a", "R", str(i)) for i in range(5)}
    result = compare_edges(gold, [(("a", "R", "0"), 0.5)])
    expected = tuple(float(x) for x in precision_recall_f1(1, 0, 4))
    assert (result.precision, result.recall, result.f1) == expected
    point = result.curve[0]
    assert (point.precision, point.recall, point.f1) == expected


def test_evaluate_gold_against_itself_and_a_worse_prediction(tmp_path: Path) -> None:
    pytest.importorskip("ladybug")
    perfect = evaluate(GOLD, gold_documents(GOLD, 2), 2)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    # Smith -> John Smith within the document: Live_In holds for john smith.
    assert perfect.gold_edges == 3 and perfect.gold_stats["merged_aliases"] == 1
    # The prediction misses the full name: "Smith" stays its own node, so Live_In is wrong.
    worse_doc = next(gold_documents(GOLD, 2)).document
    worse_doc.sentences[0].entities[0].type = "Org"
    worse = evaluate(GOLD, [SourceDocument("0", worse_doc, "pred")], 2)
    assert (
        worse.correct == 1 and worse.predicted_edges == 3 and worse.recall == pytest.approx(1 / 3)
    )
    png = tmp_path / "curve.png"
    pytest.importorskip("matplotlib")
    plot_curve(worse, png)
    assert png.read_bytes().startswith(b"\x89PNG")
