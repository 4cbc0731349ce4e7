"""How well scores are calibrated: reliability bins and the expected calibration error (ECE),
and the samples they are measured on (every predicted entity and relation with its score and
whether it is correct).

What is stored and applied is :class:`spert.model.calibration.Calibration`; it is fitted by
:mod:`spert.calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spert.data import Sentence, Types
from spert.data.matching import entity_key, relation_key


@dataclass(frozen=True)
class Reliability:
    """Scores against outcomes in equal-width bins over [0, 1] (a reliability diagram)."""

    edges: list[float]  # bins + 1 edges
    counts: list[int]  # scores per bin
    mean_score: list[float]  # mean score per bin (nan where empty)
    accuracy: list[float]  # fraction of positive outcomes per bin (nan where empty)
    ece: float  # sum over bins of count / total * |accuracy - mean_score|


def reliability(scores: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> Reliability:
    """Reliability of ``scores`` (probabilities) for binary ``outcomes`` (True = correct)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    outcomes = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    if scores.shape != outcomes.shape:
        raise ValueError(f"{len(scores)} scores but {len(outcomes)} outcomes")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a score of 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, scores, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, scores, bins) / counts
        accuracy = np.bincount(index, outcomes, bins) / counts
    filled = counts > 0
    total = max(int(counts.sum()), 1)
    ece = float(np.sum(counts[filled] / total * np.abs(accuracy[filled] - mean_score[filled])))
    return Reliability(edges.tolist(), counts.tolist(), mean_score.tolist(), accuracy.tolist(), ece)


# -- what ECE measures: predicted items, their scores and whether each is correct ----------

#: Relations are predicted down to this (calibrated) score to measure calibration: ECE, the
#: reliability diagrams and precision-recall curves see every relation scored above it.
SCORE_FLOOR = 0.05


@dataclass(frozen=True)
class CalibrationSamples:
    """Every predicted entity and relation: its score, whether it is correct, its type."""

    entity_scores: np.ndarray  # (n,) float
    entity_correct: np.ndarray  # (n,) bool: (span, type) is a gold entity
    entity_types: np.ndarray  # (n,) str
    relation_scores: np.ndarray  # (m,) float
    relation_correct: np.ndarray  # (m,) bool: strictly correct (arguments' spans and types)
    relation_types: np.ndarray  # (m,) str


def calibration_samples(
    gold: Sequence[Sentence], predicted: Sequence[Sentence], types: Types
) -> CalibrationSamples:
    """Each predicted entity and relation of ``predicted`` (aligned with ``gold``) with its
    score and correctness as :func:`spert.evaluation.metrics.evaluate` judges it: an entity by
    span and type, a relation strictly (both arguments' spans and types, and the type; the
    arguments of a symmetric type in either order). Predict at ``relation_threshold=
    SCORE_FLOOR`` to see the scores a threshold could choose from."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    symmetric = types.symmetric
    e_scores: list[float] = []
    e_correct: list[bool] = []
    e_types: list[str] = []
    r_scores: list[float] = []
    r_correct: list[bool] = []
    r_types: list[str] = []
    for g, p in zip(gold, predicted, strict=True):
        gold_keys = [entity_key(e) for e in g.entities]
        gold_entities = set(gold_keys)
        gold_relations = {
            relation_key(gold_keys[r.head], gold_keys[r.tail], r, symmetric) for r in g.relations
        }
        keys = [entity_key(e) for e in p.entities]
        for entity, key in zip(p.entities, keys):
            e_scores.append(_score(entity.score))
            e_correct.append(key in gold_entities)
            e_types.append(entity.type)
        for rel in p.relations:
            key = relation_key(keys[rel.head], keys[rel.tail], rel, symmetric)
            r_scores.append(_score(rel.score))
            r_correct.append(key in gold_relations)
            r_types.append(rel.type)
    return CalibrationSamples(
        np.asarray(e_scores, dtype=np.float64),
        np.asarray(e_correct, dtype=bool),
        np.asarray(e_types, dtype=object),
        np.asarray(r_scores, dtype=np.float64),
        np.asarray(r_correct, dtype=bool),
        np.asarray(r_types, dtype=object),
    )


def _score(value: float | None) -> float:
    return 1.0 if value is None else float(value)
