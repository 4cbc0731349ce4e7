"""Calibration of scores: reliability bins and expected calibration error (ECE), the samples
they are measured on, and the fitting of temperatures, Platt scaling and thresholds.

What is stored and applied is :class:`spert.model.calibration.Calibration`; the passes over
held-out data that fit it are in :mod:`spert.runtime.calibrate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spert.data import Sentence, Types
from spert.evaluation.metrics import entity_key, relation_key


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


# -- fitting ---------------------------------------------------------------------------------


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The temperature T minimizing the cross-entropy of ``softmax(logits / T)`` against
    ``labels`` (class indices); LBFGS on log T. 1.0 without samples."""
    logits, labels = logits.detach().double(), labels.detach().long()
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(-5.0, 5.0).exp())


def fit_binary(
    logits: torch.Tensor, labels: torch.Tensor, method: str, steps: int = 100
) -> tuple[float, float]:
    """(scale, bias) of ``sigmoid(scale * logit + bias)`` minimizing the binary cross-entropy
    against ``labels``: ``temperature`` fits the scale alone (bias 0), ``platt`` both, with
    Platt's smoothed targets ((positives + 1) / (positives + 2), 1 / (negatives + 2)) that keep
    a type with few samples from over-fitting. (1, 0) without samples."""
    logits, labels = logits.detach().double().reshape(-1), labels.detach().double().reshape(-1)
    if len(labels) == 0:
        return 1.0, 0.0
    targets = labels
    if method == "platt":
        positives = float(labels.sum())
        negatives = len(labels) - positives
        targets = torch.where(
            labels > 0.5,
            torch.tensor((positives + 1) / (positives + 2), dtype=torch.float64),
            torch.tensor(1 / (negatives + 2), dtype=torch.float64),
        )
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=method == "platt")
    params = [log_scale, bias] if method == "platt" else [log_scale]
    optimizer = torch.optim.LBFGS(params, lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        z = logits * log_scale.exp() + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_scale.detach().clamp(-5.0, 5.0).exp()), float(bias.detach())


def binary_nll(logits: torch.Tensor, labels: torch.Tensor, scale: float, bias: float) -> float:
    """Summed binary cross-entropy of ``sigmoid(scale * logit + bias)`` against ``labels``."""
    z = logits.double().reshape(-1) * scale + bias
    return float(
        torch.nn.functional.binary_cross_entropy_with_logits(
            z, labels.double().reshape(-1), reduction="sum"
        )
    )


# -- tuning thresholds -----------------------------------------------------------------------


def f1(tp: np.ndarray | float, fp: np.ndarray | float, fn: np.ndarray | float) -> np.ndarray:
    """F1 (0..1) from counts; 0 where there is nothing."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def _cuts(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For keeping the k highest scores (k = 0..n, only where a cut separates distinct
    scores): k, true positives and false positives kept. ``scores`` sorted descending."""
    tp = np.concatenate([[0], np.cumsum(correct)])
    k = np.arange(len(scores) + 1)
    distinct = np.ones(len(scores) + 1, dtype=bool)
    distinct[1:-1] = scores[1:] < scores[:-1]
    return k[distinct], tp[distinct], (k - tp)[distinct]


def _threshold_above(scores: np.ndarray, k: int, floor: float) -> float:
    """A cut-off t such that exactly the k highest ``scores`` (descending) exceed t."""
    if k == 0:
        return 1.0
    if k == len(scores):
        return min(floor, float(scores[-1]) / 2)
    return float(scores[k - 1] + scores[k]) / 2


def tune_relation_thresholds(
    scores: np.ndarray,
    correct: np.ndarray,
    type_index: np.ndarray,
    gold_counts: np.ndarray,
    start: Sequence[float],
    target_precision: float | None = None,
    floor: float = SCORE_FLOOR,
    rounds: int = 5,
) -> list[float]:
    """A threshold per relation type (a relation is kept when its score exceeds it).

    ``scores``/``correct``/``type_index`` are the predicted relations at the ``floor``
    threshold (see :func:`calibration_samples`), ``gold_counts`` the gold relations per type.
    Without a target: coordinate ascent on micro F1 from the ``start`` thresholds, one type at
    a time, each set to its best cut given the others; every step keeps or raises micro F1,
    so the result is never below ``start``'s on this data. With ``target_precision``: per type
    the lowest threshold whose kept relations reach that precision (1.0, keeping none, where
    no threshold does).
    """
    n_types = len(gold_counts)
    per_type = []
    for r in range(n_types):
        mine = type_index == r
        order = np.argsort(-scores[mine], kind="stable")
        s, c = scores[mine][order], correct[mine][order].astype(np.int64)
        per_type.append((s, *_cuts(s, c)))
    if target_precision is not None:
        thresholds = []
        for s, k, tp, _ in per_type:
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(k > 0, tp / np.maximum(k, 1), 1.0)
            ok = np.nonzero((precision >= target_precision) & (k > 0))[0]
            thresholds.append(_threshold_above(s, int(k[ok[-1]]), floor) if len(ok) else 1.0)
        return thresholds

    thresholds = [float(t) for t in start]
    # Relations a start threshold keeps are a prefix of its type's sorted scores, and ties are
    # kept or dropped together, so each is one of the cuts.
    kept = [int(np.sum(s > t)) for (s, *_), t in zip(per_type, thresholds)]
    total_gold = int(np.sum(gold_counts))
    for _ in range(rounds):
        changed = False
        for r in range(n_types):
            s, ks, tp, fp = per_type[r]
            counts = [_tp_fp(per_type[o], kept[o]) for o in range(n_types) if o != r]
            others_tp = sum(c[0] for c in counts)
            others_fp = sum(c[1] for c in counts)
            candidates = f1(others_tp + tp, others_fp + fp, total_gold - others_tp - tp)
            best = int(np.argmax(candidates))
            now_tp, now_fp = _tp_fp(per_type[r], kept[r])
            now = float(f1(others_tp + now_tp, others_fp + now_fp, total_gold - others_tp - now_tp))
            if candidates[best] > now + 1e-12:
                kept[r] = int(ks[best])
                thresholds[r] = _threshold_above(s, kept[r], floor)
                changed = True
        if not changed:
            break
    return thresholds


def _tp_fp(cuts: tuple[np.ndarray, ...], k: int) -> tuple[int, int]:
    """True and false positives among the k highest scores of a type."""
    s, ks, tp, fp = cuts
    i = int(np.searchsorted(ks, k))
    if i < len(ks) and ks[i] == k:
        return int(tp[i]), int(fp[i])
    raise ValueError(f"no cut keeps exactly {k} relations")
