"""Fitting on synthetic scores: temperatures and Platt scaling recover known miscalibration,
tuned cut-offs never lower F1 and meet a target precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spert.calibration.fitting import (
    fit_binary,
    fit_temperature,
    tune_entity_threshold,
    tune_relation_thresholds,
)
from spert.data.matching import precision_recall_f1
from spert.evaluation.reliability import SCORE_FLOOR, reliability


def test_temperature_recovered_from_over_confident_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20000, 4, generator=generator) * 2.0
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=generator).squeeze(1)
    temperature = fit_temperature(true_logits * 3.0, labels)  # 3x over-confident
    assert temperature == pytest.approx(3.0, rel=0.05)
    calibrated = (true_logits * 3.0 / temperature).softmax(-1)
    raw = (true_logits * 3.0).softmax(-1)
    correct = calibrated.argmax(-1) == labels
    ece_after = reliability(calibrated.max(-1).values.numpy(), correct.numpy()).ece
    ece_before = reliability(raw.max(-1).values.numpy(), correct.numpy()).ece
    assert ece_after < 0.02 < ece_before


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_binary_calibration_recovered(method: str) -> None:
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(30000, generator=generator) * 2.0
    bias = -1.0 if method == "platt" else 0.0
    labels = torch.bernoulli(torch.sigmoid(z + bias), generator=generator)
    scale, fitted_bias = fit_binary(z * 2.5, labels, method)  # over-confident by 2.5
    assert scale == pytest.approx(0.4, rel=0.06)
    assert fitted_bias == pytest.approx(bias, abs=0.08)


def test_fitting_without_samples_is_the_identity() -> None:
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0
    assert fit_binary(torch.zeros(0), torch.zeros(0), "platt") == (1.0, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_tuned_thresholds_never_lower_micro_f1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_types = 400, 3
    scores = np.round(rng.uniform(SCORE_FLOOR, 1.0, n), 3)  # ties included
    types = rng.integers(0, n_types, n)
    correct = rng.uniform(size=n) < scores * rng.uniform(0.3, 1.2, n_types)[types]
    gold = np.bincount(types[correct], minlength=n_types) + rng.integers(0, 20, n_types)
    start = rng.uniform(0.2, 0.8, n_types).tolist()

    def micro(thresholds: list[float]) -> float:
        keep = scores > np.asarray(thresholds)[types]
        tp = int(np.sum(keep & correct))
        return float(precision_recall_f1(tp, int(keep.sum()) - tp, int(gold.sum()) - tp)[2])

    tuned = tune_relation_thresholds(scores, correct, types, gold, start)
    assert micro(tuned) >= micro(start)
    assert all(SCORE_FLOOR / 2 <= t <= 1.0 for t in tuned)
    # No single type's threshold can do better from the tuned point (a coordinate optimum).
    for r in range(n_types):
        for t in np.unique(scores[types == r]):
            trial = list(tuned)
            trial[r] = float(t)
            assert micro(trial) <= micro(tuned) + 1e-12


def test_target_precision_is_met() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(SCORE_FLOOR, 1.0, 600)
    correct = rng.uniform(size=600) < scores
    types = np.zeros(600, dtype=np.int64)
    (threshold,) = tune_relation_thresholds(
        scores, correct, types, np.array([400]), [0.4], target_precision=0.9
    )
    keep = scores > threshold
    assert keep.sum() > 0 and correct[keep].mean() >= 0.9
    lower = scores[(scores <= threshold)].max()  # one more relation would miss the target
    assert correct[scores >= lower].mean() < 0.9


def test_entity_threshold_beats_argmax_or_is_none() -> None:
    rng = np.random.default_rng(4)
    scores = np.round(rng.uniform(size=500), 3)  # ties included
    correct = rng.uniform(size=500) < scores**2
    gold = int(correct.sum()) + 30

    def f1_at(keep: np.ndarray) -> float:
        tp = int(np.sum(keep & correct))
        return float(precision_recall_f1(tp, int(keep.sum()) - tp, gold - tp)[2])

    argmax_kept = scores > 0.1  # keeps many wrong spans
    threshold = tune_entity_threshold(scores, correct, argmax_kept, gold)
    assert threshold is not None
    best = max(f1_at(scores >= t) for t in np.unique(scores))
    assert f1_at(scores >= threshold) == pytest.approx(best) and best > f1_at(argmax_kept)
    # Where argmax keeps the best set already, there is no cut-off.
    assert tune_entity_threshold(scores, correct, scores >= threshold, gold) is None
    assert tune_entity_threshold(scores[:0], correct[:0], argmax_kept[:0], gold) is None
