"""The error breakdown: every false positive and false negative in exactly one category."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spert.data import DataError, Entity, Relation, RelationType, Sentence, Types
from spert.evaluation import evaluate
from spert.evaluation.errors import (
    ENTITY_KINDS,
    KIND_HELP,
    RELATION_KINDS,
    error_breakdown,
    kind_title,
)

TYPES = Types(
    entities=("Peop", "Org", "Loc"),
    relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
)
TOKENS = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9".split()


def sentence(entities: list[tuple[str, int, int]], relations=()) -> Sentence:
    return Sentence(
        list(TOKENS),
        [Entity(t, s, e) for t, s, e in entities],
        [Relation(t, h, tl) for t, h, tl in relations],
    )


def counts_match_metrics(gold: list[Sentence], predicted: list[Sentence]) -> None:
    """Categories add up to the FP and FN of the strict metrics, and TP match too."""
    breakdown = error_breakdown(gold, predicted, TYPES)
    metrics = evaluate(gold, predicted, TYPES)
    for section, metric_section in (("entities", "entities"), ("relations", "relations_strict")):
        per_type = metrics[metric_section]["per_type"]
        fp = fn = tp = 0
        for name, m in per_type.items():
            row = breakdown.per_type[section][name]
            # support = tp + fn; recompute tp and fp from precision, recall without rounding
            assert row["tp"] + row["fn"] == m["support"]
            tp += row["tp"]
            fp += row["fp"]
            fn += row["fn"]
            assert row["fp"] == sum(row[f"fp_{k}"] for k in KINDS[section]["fp"])
            assert row["fn"] == sum(row[f"fn_{k}"] for k in KINDS[section]["fn"])
            expected_p = 100.0 * row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else 0
            assert m["precision"] == pytest.approx(expected_p)
        totals = breakdown.totals[section]
        assert (totals["tp"], totals["fp"], totals["fn"]) == (tp, fp, fn)
        assert sum(breakdown.counts[section]["fp"].values()) == fp
        assert sum(breakdown.counts[section]["fn"].values()) == fn
        micro = metrics[metric_section]["micro"]
        assert micro["f1"] == pytest.approx(100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        # every item is listed once, in the sentence it comes from
        listed = sum(len(getattr(s, section)) for s in breakdown.sentences)
        assert listed == fp + fn
    # the confusion matrix: the diagonal (without none) is the entity TP; all spans counted
    confusion = breakdown.confusion
    n = len(confusion.labels)
    assert confusion.counts[n - 1][n - 1] == 0
    assert sum(confusion.counts[k][k] for k in range(n - 1)) == breakdown.totals["entities"]["tp"]
    gold_entities = sum(len({(e.start, e.end, e.type) for e in g.entities}) for g in gold)
    assert sum(sum(row) for row in confusion.counts[: n - 1]) == gold_entities
    predicted_entities = sum(len({(e.start, e.end, e.type) for e in p.entities}) for p in predicted)
    assert sum(row[k] for row in confusion.counts for k in range(n - 1)) == predicted_entities


KINDS = {"entities": ENTITY_KINDS, "relations": RELATION_KINDS}


def kinds_of(gold: Sentence, predicted: Sentence) -> tuple[list, list]:
    b = error_breakdown([gold], [predicted], TYPES)
    s = b.sentences[0]
    return (
        sorted((e.side, e.kind, e.entity) for e in s.entities),
        sorted((r.side, r.kind, r.relation) for r in s.relations),
    )


def test_entity_categories() -> None:
    gold = sentence([("Peop", 0, 2), ("Org", 3, 5), ("Loc", 6, 7), ("Loc", 8, 9)])
    predicted = sentence(
        [
            ("Peop", 0, 1),  # wrong boundary of Peop [0, 2)
            ("Loc", 3, 5),  # wrong type of Org [3, 5)
            ("Loc", 6, 7),  # correct
            ("Org", 8, 10),  # overlaps Loc [8, 9) with another type: spurious, and Loc missed
            ("Peop", 5, 6),  # spurious
        ]
    )
    entities, _ = kinds_of(gold, predicted)
    assert entities == [
        ("fn", "missed", (8, 9, "Loc")),
        ("fn", "wrong_boundary", (0, 2, "Peop")),
        ("fn", "wrong_type", (3, 5, "Org")),
        ("fp", "spurious", (5, 6, "Peop")),
        ("fp", "spurious", (8, 10, "Org")),
        ("fp", "wrong_boundary", (0, 1, "Peop")),
        ("fp", "wrong_type", (3, 5, "Loc")),
    ]
    counts_match_metrics([gold], [predicted])


def test_entity_confusion_matrix() -> None:
    gold = sentence([("Peop", 0, 2), ("Org", 3, 5), ("Loc", 6, 7)])
    predicted = sentence([("Peop", 0, 2), ("Loc", 3, 5), ("Org", 8, 9)])
    confusion = error_breakdown([gold], [predicted], TYPES).confusion
    assert confusion.labels == ["Peop", "Org", "Loc", "none"]
    assert confusion.counts == [
        [1, 0, 0, 0],  # Peop -> Peop
        [0, 0, 1, 0],  # Org -> Loc
        [0, 0, 0, 1],  # Loc -> none
        [0, 1, 0, 0],  # none -> Org
    ]


A, B, C, D = (0, 1, "Peop"), (2, 3, "Org"), (4, 5, "Loc"), (6, 7, "Peop")


def test_relation_false_negative_categories() -> None:
    gold = sentence(
        [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Peop", 6, 7)],
        [
            ("Work_For", 0, 1),  # predicted reversed: wrong direction
            ("Live_In", 0, 2),  # predicted as Work_For: wrong type
            ("Live_In", 3, 2),  # its head is not predicted: missed argument
            ("Work_For", 3, 1),  # both arguments predicted, nothing between: missed
        ],
    )
    predicted = sentence(
        [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Loc", 6, 7)],
        [("Work_For", 1, 0), ("Work_For", 0, 2)],
    )
    _, relations = kinds_of(gold, predicted)
    assert ("fn", "wrong_direction", (A, B, "Work_For")) in relations
    assert ("fn", "wrong_type", (A, C, "Live_In")) in relations
    assert ("fn", "missed_argument", (D, C, "Live_In")) in relations
    missed = [r for r in relations if r[1] == "missed"]
    assert missed == []  # D was not predicted, so Work_For(D, B) is a missed argument too
    assert ("fn", "missed_argument", (D, B, "Work_For")) in relations
    assert ("fp", "wrong_direction", (B, A, "Work_For")) in relations
    assert ("fp", "wrong_type", (A, C, "Work_For")) in relations
    counts_match_metrics([gold], [predicted])


def test_relation_false_positive_categories_and_missed() -> None:
    gold = sentence(
        [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5)],
        [("Work_For", 0, 1)],
    )
    predicted = sentence(
        [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Org", 8, 9)],
        [
            ("Live_In", 0, 2),  # both arguments are gold entities: spurious
            ("Work_For", 0, 3),  # the tail is not a gold entity: wrong argument
        ],
    )
    _, relations = kinds_of(gold, predicted)
    assert relations == [
        ("fn", "missed", (A, B, "Work_For")),
        ("fp", "spurious", (A, C, "Live_In")),
        ("fp", "wrong_argument", (A, (8, 9, "Org"), "Work_For")),
    ]
    counts_match_metrics([gold], [predicted])


def test_symmetric_relations_have_no_direction() -> None:
    gold = sentence([("Peop", 0, 1), ("Peop", 6, 7)], [("Spouse", 1, 0)])
    reversed_prediction = sentence([("Peop", 0, 1), ("Peop", 6, 7)], [("Spouse", 0, 1)])
    _, relations = kinds_of(gold, reversed_prediction)
    assert relations == []  # a symmetric relation matches in either order
    typed = sentence([("Peop", 0, 1), ("Peop", 6, 7)], [("Work_For", 1, 0)])
    _, relations = kinds_of(gold, typed)
    assert relations == [
        ("fn", "wrong_type", (A, D, "Spouse")),
        ("fp", "wrong_type", (D, A, "Work_For")),
    ]
    counts_match_metrics([gold], [typed])


def test_every_category_is_documented_and_hit() -> None:
    gold = [
        sentence([("Peop", 0, 2), ("Org", 3, 5), ("Loc", 6, 7), ("Loc", 8, 9)]),
        sentence(
            [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Peop", 6, 7)],
            [("Work_For", 0, 1), ("Live_In", 0, 2), ("Live_In", 3, 2), ("Work_For", 0, 3)],
        ),
        sentence([("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5)], [("Work_For", 0, 1)]),
    ]
    predicted = [
        sentence([("Peop", 0, 1), ("Loc", 3, 5), ("Loc", 6, 7), ("Peop", 5, 6)]),
        sentence(
            [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Loc", 6, 7)],
            [("Work_For", 1, 0), ("Work_For", 0, 2)],
        ),
        sentence(
            [("Peop", 0, 1), ("Org", 2, 3), ("Loc", 4, 5), ("Org", 8, 9)],
            [("Live_In", 0, 2), ("Work_For", 0, 3)],
        ),
    ]
    breakdown = error_breakdown(gold, predicted, TYPES)
    for section, side, kind in breakdown.kinds():
        assert breakdown.counts[section][side][kind] > 0, (section, side, kind)
        assert f"{section} {side} {kind}" in KIND_HELP
        assert kind.replace("_", " ") in kind_title(section, side, kind)
    counts_match_metrics(gold, predicted)
    worst = breakdown.worst_sentences("entities", "fp", "spurious", 5)
    assert worst == [0, 2]


def test_no_errors_and_misaligned_input() -> None:
    gold = sentence([("Peop", 0, 1)])
    breakdown = error_breakdown([gold], [gold], TYPES)
    assert breakdown.totals["entities"] == {"tp": 1, "fp": 0, "fn": 0}
    assert breakdown.worst_sentences("entities", "fn", "missed", 3) == []
    with pytest.raises(DataError, match="1 sentences but the predictions have 0"):
        error_breakdown([gold], [], TYPES)
    with pytest.raises(DataError, match="sentence 1: gold has 10 tokens"):
        error_breakdown([gold], [Sentence(["x"])], TYPES)
    bad = Sentence(list(TOKENS), [Entity("Peop", 0, 1)], [Relation("Work_For", 0, 3)])
    with pytest.raises(DataError, match=r"predicted sentence 1, relations\[0\].tail: 3"):
        error_breakdown([gold], [bad], TYPES)


# -------------------------------------------------------------------- random gold / predictions


@st.composite
def random_sentence(draw: st.DrawFn) -> Sentence:
    n = len(TOKENS)
    spans = draw(
        st.lists(
            st.tuples(
                st.sampled_from(TYPES.entities),
                st.integers(0, n - 1),
                st.integers(1, 3),
            ),
            max_size=6,
        )
    )
    entities = [(t, s, min(s + w, n)) for t, s, w in spans]
    relations = []
    if entities:
        relations = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(TYPES.relation_names),
                    st.integers(0, len(entities) - 1),
                    st.integers(0, len(entities) - 1),
                ),
                max_size=6,
            )
        )
    return sentence(entities, relations)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(random_sentence(), random_sentence()), min_size=1, max_size=4))
def test_categories_exhaustive_and_disjoint_on_random_data(pairs) -> None:
    gold = [g for g, _ in pairs]
    predicted = [p for _, p in pairs]
    counts_match_metrics(gold, predicted)
    breakdown = error_breakdown(gold, predicted, TYPES)
    for s in breakdown.sentences:
        # each error item is a distinct item of its side: no item in two categories
        keys = [(e.side, e.entity) for e in s.entities]
        assert len(keys) == len(set(keys))
        rel_keys = [(r.side, r.relation) for r in s.relations]
        assert len(rel_keys) == len(set(rel_keys))
        for e in s.entities:
            assert e.kind in ENTITY_KINDS[e.side]
        for r in s.relations:
            assert r.kind in RELATION_KINDS[r.side]
