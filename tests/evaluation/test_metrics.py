"""Hand-computed checks of the SpERT evaluation metrics."""

from __future__ import annotations

import pytest

from spert.data import Entity, Relation, RelationType, Sentence, Types
from spert.evaluation import evaluate, format_metrics

TYPES = Types(
    entities=("Peop", "Loc", "Org"),
    relations=(
        RelationType("Live_In"),
        RelationType("Kill"),
        RelationType("Spouse", symmetric=True),
    ),
)


def sent(entities: list[tuple[str, int, int]], relations=(), n: int = 10) -> Sentence:
    """A sentence of ``n`` tokens; entities as (type, start, end), relations as (type, h, t)."""
    return Sentence(
        [f"w{i}" for i in range(n)],
        [Entity(t, s, e) for t, s, e in entities],
        [Relation(t, h, ta) for t, h, ta in relations],
    )


def prf(metrics: dict) -> tuple[float, float, float]:
    return metrics["precision"], metrics["recall"], metrics["f1"]


def approx(*values: float):
    return pytest.approx(values, abs=1e-9)


def test_perfect_prediction_is_100_everywhere():
    gold = [
        sent(
            [("Peop", 0, 2), ("Loc", 4, 5), ("Peop", 6, 7)],
            [("Live_In", 0, 1), ("Spouse", 0, 2), ("Kill", 2, 0)],
        ),
        sent([("Org", 1, 3)]),
    ]
    pred = [
        sent(
            [("Peop", 0, 2), ("Loc", 4, 5), ("Peop", 6, 7)],
            [("Live_In", 0, 1), ("Spouse", 0, 2), ("Kill", 2, 0)],
        ),
        sent([("Org", 1, 3)]),
    ]
    m = evaluate(gold, pred, TYPES)
    assert set(m) == {"entities", "relations", "relations_strict"}
    for section in m.values():
        assert prf(section["micro"]) == approx(100, 100, 100)
        assert prf(section["macro"]) == approx(100, 100, 100)
        for per_type in section["per_type"].values():
            assert prf(per_type) == approx(100, 100, 100)
    assert list(m["entities"]["per_type"]) == ["Peop", "Loc", "Org"]
    assert {k: v["support"] for k, v in m["entities"]["per_type"].items()} == {
        "Peop": 2,
        "Loc": 1,
        "Org": 1,
    }
    assert set(m["relations"]["per_type"]) == {"Live_In", "Kill", "Spouse"}
    assert set(m["entities"]["micro"]) == {"precision", "recall", "f1"}
    assert set(m["entities"]["per_type"]["Peop"]) == {"precision", "recall", "f1", "support"}


def test_micro_and_macro_hand_computed():
    gold = [sent([("Peop", 0, 1), ("Peop", 2, 3), ("Loc", 5, 6), ("Org", 7, 8)])]
    pred = [sent([("Peop", 0, 1), ("Peop", 2, 3), ("Peop", 4, 5), ("Loc", 5, 6)])]
    ent = evaluate(gold, pred, TYPES)["entities"]
    # Peop tp=2 fp=1 fn=0; Loc tp=1; Org fn=1.
    assert prf(ent["per_type"]["Peop"]) == approx(200 / 3, 100, 80)
    assert prf(ent["per_type"]["Loc"]) == approx(100, 100, 100)
    assert prf(ent["per_type"]["Org"]) == approx(0, 0, 0)
    assert [v["support"] for v in ent["per_type"].values()] == [2, 1, 1]
    # micro: tp=3 fp=1 fn=1
    assert prf(ent["micro"]) == approx(75, 75, 75)
    # macro: mean of per-type values, F1 = mean of per-type F1 (not F1 of mean P and R)
    assert prf(ent["macro"]) == approx(500 / 9, 200 / 3, 60)
    p, r = ent["macro"]["precision"], ent["macro"]["recall"]
    assert ent["macro"]["f1"] != pytest.approx(2 * p * r / (p + r))


def test_macro_ignores_types_absent_from_gold_and_prediction():
    gold = [sent([("Peop", 0, 1)])]
    pred = [sent([("Peop", 0, 1)])]
    ent = evaluate(gold, pred, TYPES)["entities"]
    assert list(ent["per_type"]) == ["Peop"]
    assert prf(ent["macro"]) == approx(100, 100, 100)


def test_wrong_entity_type_is_false_positive_and_false_negative():
    gold = [sent([("Peop", 0, 2), ("Loc", 3, 4)])]
    pred = [sent([("Org", 0, 2), ("Loc", 3, 4)])]
    ent = evaluate(gold, pred, TYPES)["entities"]
    assert prf(ent["per_type"]["Peop"]) == approx(0, 0, 0)
    assert ent["per_type"]["Peop"]["support"] == 1
    assert prf(ent["per_type"]["Org"]) == approx(0, 0, 0)
    assert ent["per_type"]["Org"]["support"] == 0
    # tp=1 fp=1 fn=1
    assert prf(ent["micro"]) == approx(50, 50, 50)
    assert prf(ent["macro"]) == approx(100 / 3, 100 / 3, 100 / 3)


def test_wrong_span_is_not_correct():
    gold = [sent([("Peop", 0, 2)])]
    pred = [sent([("Peop", 0, 1)])]
    assert prf(evaluate(gold, pred, TYPES)["entities"]["micro"]) == approx(0, 0, 0)


def test_strict_relations_need_argument_entity_types():
    gold = [sent([("Peop", 0, 1), ("Loc", 3, 4)], [("Live_In", 0, 1)])]
    pred = [sent([("Peop", 0, 1), ("Org", 3, 4)], [("Live_In", 0, 1)])]
    m = evaluate(gold, pred, TYPES)
    assert prf(m["relations"]["micro"]) == approx(100, 100, 100)
    assert prf(m["relations"]["per_type"]["Live_In"]) == approx(100, 100, 100)
    assert prf(m["relations_strict"]["micro"]) == approx(0, 0, 0)
    assert m["relations_strict"]["per_type"]["Live_In"]["support"] == 1
    assert prf(m["entities"]["micro"]) == approx(50, 50, 50)


def test_relation_type_must_match():
    gold = [sent([("Peop", 0, 1), ("Peop", 3, 4)], [("Kill", 0, 1)])]
    pred = [sent([("Peop", 0, 1), ("Peop", 3, 4)], [("Live_In", 0, 1)])]
    rel = evaluate(gold, pred, TYPES)["relations"]
    assert prf(rel["micro"]) == approx(0, 0, 0)
    assert rel["per_type"]["Kill"]["support"] == 1
    assert rel["per_type"]["Live_In"]["support"] == 0


def test_symmetric_reversed_is_correct_asymmetric_reversed_is_not():
    gold = [sent([("Peop", 0, 1), ("Peop", 2, 3)], [("Spouse", 0, 1), ("Kill", 0, 1)])]
    # Entities listed in the other order: head/tail indices 0 -> 1 now mean (2,3) -> (0,1).
    pred = [sent([("Peop", 2, 3), ("Peop", 0, 1)], [("Spouse", 0, 1), ("Kill", 0, 1)])]
    m = evaluate(gold, pred, TYPES)
    assert prf(m["entities"]["micro"]) == approx(100, 100, 100)
    for section in ("relations", "relations_strict"):
        rel = m[section]
        assert prf(rel["per_type"]["Spouse"]) == approx(100, 100, 100)
        assert prf(rel["per_type"]["Kill"]) == approx(0, 0, 0)
        # tp=1 (Spouse), fp=1 and fn=1 (Kill)
        assert prf(rel["micro"]) == approx(50, 50, 50)
        assert prf(rel["macro"]) == approx(50, 50, 50)


def test_symmetric_reversed_with_different_entity_types_in_strict_mode():
    gold = [sent([("Peop", 0, 1), ("Org", 2, 3)], [("Spouse", 1, 0)])]
    pred = [sent([("Peop", 0, 1), ("Org", 2, 3)], [("Spouse", 0, 1)])]
    m = evaluate(gold, pred, TYPES)
    assert prf(m["relations"]["micro"]) == approx(100, 100, 100)
    assert prf(m["relations_strict"]["micro"]) == approx(100, 100, 100)


def test_duplicates_collapse():
    gold = [sent([("Peop", 0, 1)])]
    pred = [sent([("Peop", 0, 1), ("Peop", 0, 1)])]
    assert prf(evaluate(gold, pred, TYPES)["entities"]["micro"]) == approx(100, 100, 100)


def test_counts_add_up_over_sentences():
    gold = [sent([("Peop", 0, 1)]), sent([("Peop", 0, 1)])]
    pred = [sent([("Peop", 0, 1)]), sent([("Peop", 1, 2)])]
    ent = evaluate(gold, pred, TYPES)["entities"]
    # tp=1 fp=1 fn=1; the same tuple in another sentence is a different item
    assert prf(ent["micro"]) == approx(50, 50, 50)
    assert ent["per_type"]["Peop"]["support"] == 2


NO_OVERLAP_GOLD = sent(
    [("Org", 0, 3), ("Loc", 2, 3), ("Peop", 5, 6), ("Peop", 7, 8)],
    [("Live_In", 2, 1), ("Kill", 0, 1)],
)
NO_OVERLAP_PRED = sent(
    [("Org", 0, 3), ("Loc", 2, 3), ("Peop", 5, 6), ("Peop", 7, 8), ("Org", 7, 8)],
    [("Live_In", 2, 1), ("Kill", 0, 1), ("Kill", 2, 3)],
)


def test_without_no_overlap_nested_entities_count():
    m = evaluate([NO_OVERLAP_GOLD], [NO_OVERLAP_PRED], TYPES)
    # entities tp=4 fp=1 (Org 7-8) fn=0
    assert prf(m["entities"]["micro"]) == approx(80, 100, 800 / 9)
    # relations tp=2 (Live_In, Kill Org->Loc) fp=1 (Kill Peop->Peop)
    assert prf(m["relations"]["micro"]) == approx(200 / 3, 100, 80)


def test_no_overlap_removes_overlapping_entities_and_relations_on_both_sides():
    m = evaluate([NO_OVERLAP_GOLD], [NO_OVERLAP_PRED], TYPES, no_overlap=True)
    ent = m["entities"]
    # gold keeps Peop 5-6 and Peop 7-8 (Org 0-3 and nested Loc 2-3 dropped); the prediction keeps
    # only Peop 5-6: Peop 7-8 and Org 7-8 (same span, other type) overlap and are both dropped.
    assert list(ent["per_type"]) == ["Peop"]
    assert ent["per_type"]["Peop"]["support"] == 2
    assert prf(ent["micro"]) == approx(100, 50, 200 / 3)
    assert prf(ent["macro"]) == approx(100, 50, 200 / 3)
    for section in ("relations", "relations_strict"):
        rel = m[section]
        # Kill Org 0-3 -> Loc 2-3 has overlapping arguments: dropped on both sides. Live_In keeps
        # (its arguments do not overlap each other), so: Live_In tp=1, Kill fp=1.
        assert rel["per_type"]["Live_In"]["support"] == 1
        assert rel["per_type"]["Kill"]["support"] == 0
        assert prf(rel["per_type"]["Live_In"]) == approx(100, 100, 100)
        assert prf(rel["per_type"]["Kill"]) == approx(0, 0, 0)
        assert prf(rel["micro"]) == approx(50, 100, 200 / 3)
        assert prf(rel["macro"]) == approx(50, 50, 50)


def test_no_overlap_keeps_identical_duplicates_and_adjacent_spans():
    gold = [sent([("Peop", 0, 2), ("Peop", 0, 2), ("Loc", 2, 3)], [("Live_In", 0, 2)])]
    m = evaluate(gold, gold, TYPES, no_overlap=True)
    assert m["entities"]["per_type"]["Peop"]["support"] == 1
    assert m["entities"]["per_type"]["Loc"]["support"] == 1
    assert m["relations"]["per_type"]["Live_In"]["support"] == 1


def test_empty_input_gives_zero_and_no_types():
    m = evaluate([sent([])], [sent([])], TYPES)
    for section in m.values():
        assert section["per_type"] == {}
        assert prf(section["micro"]) == approx(0, 0, 0)
        assert prf(section["macro"]) == approx(0, 0, 0)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="1 gold sentences but 2 predicted"):
        evaluate([sent([])], [sent([]), sent([])], TYPES)


def test_mismatched_token_counts_raise():
    with pytest.raises(ValueError, match="sentence 0: gold has 10 tokens"):
        evaluate([sent([])], [sent([], n=9)], TYPES)


def test_bad_relation_index_raises():
    bad = Sentence(["a", "b"], [Entity("Peop", 0, 1)], [Relation("Kill", 0, 3)])
    with pytest.raises(ValueError, match="predicted sentence 0"):
        evaluate([sent([], n=2)], [bad], TYPES)


def test_format_metrics_shows_tables():
    gold = [sent([("Peop", 0, 1), ("Peop", 2, 3), ("Loc", 5, 6), ("Org", 7, 8)])]
    pred = [sent([("Peop", 0, 1), ("Peop", 2, 3), ("Peop", 4, 5), ("Loc", 5, 6)])]
    gold[0].relations.append(Relation("Live_In", 0, 2))
    pred[0].relations.append(Relation("Live_In", 0, 3))
    text = format_metrics(evaluate(gold, pred, TYPES))
    for name in ("Peop", "Loc", "Org", "Live_In", "micro", "macro", "precision", "support"):
        assert name in text
    assert "66.67" in text and "60.00" in text and "75.00" in text
    assert text.count("micro") == 3
    micro_line = next(line for line in text.splitlines() if line.split()[:1] == ["micro"])
    assert micro_line.split() == ["micro", "75.00", "75.00", "75.00", "4"]
