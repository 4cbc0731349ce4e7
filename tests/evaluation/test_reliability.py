"""The calibration samples judge predictions as strict evaluation does; reliability bins."""

from __future__ import annotations

import pytest

from spert.data import Entity, Relation, Sentence, Types
from spert.evaluation import evaluate
from spert.evaluation.reliability import calibration_samples


def test_samples_judge_like_strict_evaluation(types: Types) -> None:
    gold = [
        Sentence(
            "a b c d e".split(),
            [Entity("Peop", 0, 1), Entity("Peop", 2, 3), Entity("Org", 4, 5)],
            [Relation("Spouse", 0, 1), Relation("Work_For", 0, 2)],
        )
    ]
    predicted = [
        Sentence(
            "a b c d e".split(),
            [Entity("Peop", 2, 3, 0.9), Entity("Peop", 0, 1, 0.8), Entity("Loc", 4, 5, 0.7)],
            [
                Relation("Spouse", 0, 1, 0.6),  # the other direction of a symmetric gold one
                Relation("Work_For", 1, 2, 0.5),  # tail has the wrong type: not strict
            ],
        )
    ]
    samples = calibration_samples(gold, predicted, types)
    assert samples.entity_correct.tolist() == [True, True, False]
    assert samples.entity_scores.tolist() == [0.9, 0.8, 0.7]
    assert samples.relation_correct.tolist() == [True, False]
    assert samples.relation_types.tolist() == ["Spouse", "Work_For"]
    strict = evaluate(gold, predicted, types)["relations_strict"]["micro"]
    assert strict["precision"] == pytest.approx(100 * samples.relation_correct.mean())
