"""Fitting a calibration's numbers: temperatures and Platt scaling (cross-entropy, LBFGS), the
entity cut-off and the per-type relation thresholds (F1 or a target precision over the
candidates' scores). Tensors and arrays in, numbers out; :mod:`spert.calibration.calibrate`
gathers the logits and scores from a model and puts the numbers into a
:class:`~spert.model.calibration.Calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from spert.data.matching import precision_recall_f1
from spert.evaluation.reliability import SCORE_FLOOR


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


# -- tuning cut-offs -----------------------------------------------------------------------


def _f1(tp: np.ndarray | int, fp: np.ndarray | int, fn: np.ndarray | int) -> np.ndarray:
    return precision_recall_f1(tp, fp, fn)[2]


def tune_entity_threshold(
    scores: np.ndarray, correct: np.ndarray, argmax_kept: np.ndarray, gold: int
) -> float | None:
    """The "none" decision maximizing entity micro F1 over candidate spans: None (argmax, the
    spans ``argmax_kept``) unless keeping the spans whose ``scores`` (calibrated entity scores)
    are at least some cut-off does strictly better. ``correct``: the span's best type is gold;
    ``gold``: the number of gold entities."""
    tp = int(np.sum(argmax_kept & correct))
    argmax_f1 = float(_f1(tp, int(argmax_kept.sum()) - tp, gold - tp))
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], correct[order].astype(np.int64)
    if not len(scores):
        return None
    cum_tp = np.cumsum(hits)
    k = np.arange(1, len(scores) + 1)
    last_of_tie = np.ones(len(scores), dtype=bool)  # ">= t" keeps all scores tied with t
    last_of_tie[:-1] = scores[1:] < scores[:-1]
    candidates = np.where(last_of_tie, _f1(cum_tp, k - cum_tp, gold - cum_tp), -1.0)
    i = int(np.argmax(candidates))
    if candidates[i] > argmax_f1 + 1e-12:
        # Half-way to the next lower score: float32 decoding keeps the same spans.
        return float(scores[i] + scores[i + 1]) / 2 if i + 1 < len(scores) else float(scores[i]) / 2
    return None


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
    threshold (see :func:`spert.evaluation.reliability.calibration_samples`), ``gold_counts``
    the gold relations per type.

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
        for s, k, tp, fp in per_type:
            precision = precision_recall_f1(tp, fp, 0)[0]
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
            candidates = _f1(others_tp + tp, others_fp + fp, total_gold - others_tp - tp)
            best = int(np.argmax(candidates))
            now_tp, now_fp = _tp_fp(per_type[r], kept[r])
            now = float(
                _f1(others_tp + now_tp, others_fp + now_fp, total_gold - others_tp - now_tp)
            )
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
