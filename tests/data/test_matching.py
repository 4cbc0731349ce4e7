"""Matching keys and the one precision/recall/F1 helper."""

from __future__ import annotations

import numpy as np
import pytest

from spert.data import Entity, Relation
from spert.data.matching import entity_key, precision_recall_f1, relation_key


def test_numbers_give_floats_and_zero_for_nothing() -> None:
    p, r, f = precision_recall_f1(3, 1, 2)
    assert isinstance(p, float) and (p, r, f) == pytest.approx((0.75, 0.6, 2 / 3))
    assert precision_recall_f1(0, 0, 0) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(0, 0, 5, scale=100.0) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(1, 1, 0, scale=100.0)[2] == pytest.approx(200 / 3)


def test_arrays_are_element_wise_and_equal_to_numbers() -> None:
    rng = np.random.default_rng(0)
    tp, fp, fn = rng.integers(0, 6, (3, 200))
    arrays = precision_recall_f1(tp, fp, fn, scale=100.0)
    for i in range(len(tp)):
        numbers = precision_recall_f1(int(tp[i]), int(fp[i]), int(fn[i]), scale=100.0)
        assert tuple(a[i] for a in arrays) == numbers  # bit for bit
    # Broadcast against a number, e.g. a total of gold items.
    _, recall, _ = precision_recall_f1(np.array([1, 2, 4]), 0, 4 - np.array([1, 2, 4]))
    assert recall.tolist() == [0.25, 0.5, 1.0]


def test_keys_identify_span_type_and_symmetric_order() -> None:
    head, tail = entity_key(Entity("Peop", 3, 4)), entity_key(Entity("Peop", 0, 2))
    assert head == (3, 4, "Peop")
    spouse, works = Relation("Spouse", 0, 1), Relation("Work_For", 0, 1)
    symmetric = frozenset({"Spouse"})
    assert relation_key(head, tail, spouse, symmetric) == relation_key(
        tail, head, spouse, symmetric
    )
    assert relation_key(head, tail, works, symmetric) != relation_key(tail, head, works, symmetric)
