"""How predictions are matched against gold, and the precision, recall and F1 of the matches.

An entity is identified by its span and type, a relation by its type and both arguments (span
and type; either order for a symmetric type). The metrics (:mod:`spert.evaluation.metrics`),
the calibration samples and fits (:mod:`spert.evaluation.reliability`,
:mod:`spert.calibration`) and the TP/FP/FN marks of the HTML pages (:mod:`spert.render.pages`)
all match this way and count with :func:`precision_recall_f1`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from spert.data.dataset import Entity, Relation

EntityKey = tuple[int, int, str]  # (start, end, type)
RelationKey = tuple[EntityKey, EntityKey, str]  # (head, tail, type)


def entity_key(entity: Entity) -> EntityKey:
    """What identifies an entity in scoring: span and type."""
    return entity.start, entity.end, entity.type


def relation_key(
    head: EntityKey, tail: EntityKey, relation: Relation, symmetric: frozenset[str]
) -> RelationKey:
    """What identifies a relation in strict scoring: both arguments (span and type) and the
    relation type; a symmetric type's arguments in a fixed order."""
    if relation.type in symmetric and tail < head:
        head, tail = tail, head
    return head, tail, relation.type


#: A ratio of counts: an array for arrays of counts, a float (``np.float64``) for numbers.
Ratio = np.ndarray | np.float64


def precision_recall_f1(
    tp: ArrayLike, fp: ArrayLike, fn: ArrayLike, scale: float = 1.0
) -> tuple[Ratio, Ratio, Ratio]:
    """Precision, recall and F1 from counts of true positives, false positives and false
    negatives, element-wise for arrays (floats for numbers), times ``scale`` (100: percent);
    0 where a denominator is 0. Each is one division of counts (``scale * tp /
    (tp + fp)``, ``2 * scale * tp / (2 * tp + fp + fn)``), so equal counts give equal values
    however they were summed."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    return (
        _ratio(scale * tp, tp + fp),
        _ratio(scale * tp, tp + fn),
        _ratio(2 * scale * tp, 2 * tp + fp + fn),
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> Ratio:
    num, den = np.broadcast_arrays(num, den)
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)[()]
