"""Calibration: fitting recovers known temperatures, tuned thresholds never lower F1, a stored
calibration survives save/load and is applied, and the per-sentence caps bound the output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spert.api import ModelError, SpERT
from spert.cli import main
from spert.data import Entity, Relation, Sentence, Types, write_dataset
from spert.evaluation import evaluate
from spert.evaluation.calibration import (
    SCORE_FLOOR,
    calibration_samples,
    f1,
    fit_binary,
    fit_temperature,
    reliability,
    tune_relation_thresholds,
)
from spert.evaluation.card import CARD_FILE, write_model_card
from spert.model.calibration import CALIBRATION_FILE, Calibration, CalibrationError
from spert.model.directory import write_calibration
from spert.runtime.calibrate import calibrate

pytestmark = pytest.mark.usefixtures("one_thread")


# -- fitting on synthetic scores -----------------------------------------------------------


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
        return float(f1(tp, int(keep.sum()) - tp, int(gold.sum()) - tp))

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


# -- the stored calibration ------------------------------------------------------------------


def sample_calibration(types: Types, **changes) -> Calibration:
    n = len(types.relations)
    values = dict(
        entity_types=tuple(types.entities),
        relation_types=tuple(types.relation_names),
        entity_temperature=2.0,
        entity_threshold=None,
        relation_method="platt",
        relation_scale=(0.5,) * n,
        relation_bias=(-1.0,) * n,
        relation_thresholds=(0.3,) * n,
        fitted_on={"data": "dev.json"},
    )
    values.update(changes)
    return Calibration(**values)


def test_calibration_round_trips_and_is_validated(types: Types) -> None:
    calibration = sample_calibration(types)
    data = json.loads(json.dumps(calibration.to_dict()))
    assert Calibration.from_dict(data) == calibration
    with pytest.raises(CalibrationError, match="version"):
        Calibration.from_dict({**data, "version": 99})
    with pytest.raises(CalibrationError, match="relation_thresholds has 1 values"):
        Calibration.from_dict({**data, "relation_thresholds": [0.5]})
    with pytest.raises(CalibrationError, match="temperature"):
        Calibration.from_dict({**data, "entity_temperature": -1})
    with pytest.raises(CalibrationError, match="model has"):
        calibration.check_types(types.entities, ["Work_For"])


@pytest.fixture()
def saved(tmp_path: Path, types: Types, tiny_config) -> Path:
    torch.manual_seed(0)
    spert = SpERT.create(types, tiny_config.replace(max_span_size=3), "cpu")
    with torch.no_grad():  # keep some spans, so that relations are scored
        spert.model.entity_classifier.bias[0] = -1.0
    spert.save(tmp_path / "model")
    return tmp_path / "model"


def test_no_calibration_predicts_as_before(saved: Path, sentences) -> None:
    plain = SpERT.load(saved)
    assert plain.calibration is None
    before = plain.predict(sentences)
    write_calibration(saved, sample_calibration(plain.types))
    calibrated = SpERT.load(saved)
    assert calibrated.calibration is not None
    assert SpERT.load(saved, calibration=False).predict(sentences) == before
    after = calibrated.predict(sentences)
    assert after != before
    # Entity scores are the temperature-scaled softmax; the same spans are kept (argmax).
    for a, b in zip(before, after):
        assert [(e.start, e.end, e.type) for e in a.entities] == [
            (e.start, e.end, e.type) for e in b.entities
        ]
    # The override replaces every relation threshold: at 1.0 nothing is kept.
    assert not any(s.relations for s in calibrated.predict(sentences, relation_threshold=1.0))
    floor = calibrated.predict(sentences, relation_threshold=SCORE_FLOOR)
    assert sum(len(s.relations) for s in floor) >= sum(len(s.relations) for s in after)


def test_calibration_survives_save_and_load(saved: Path, tmp_path: Path) -> None:
    model = SpERT.load(saved)
    model.calibration = sample_calibration(model.types, entity_threshold=0.2)
    model.save(tmp_path / "copy")
    assert SpERT.load(tmp_path / "copy").calibration == model.calibration


def test_broken_calibration_file_names_it(saved: Path) -> None:
    (saved / CALIBRATION_FILE).write_text('{"version": 1}', encoding="utf-8")
    with pytest.raises(ModelError, match=CALIBRATION_FILE):
        SpERT.load(saved)
    (saved / CALIBRATION_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="unreadable"):
        SpERT.load(saved)
    assert SpERT.load(saved, calibration=False).calibration is None  # not even read


def test_fit_on_data_and_cli(saved: Path, sentences, tmp_path: Path, capsys) -> None:
    model = SpERT.load(saved)
    calibration = calibrate(model, sentences, data_name="dev")
    assert model.calibration is None  # left as it was
    assert calibration.relation_method in ("temperature", "platt")
    metrics = calibration.metrics
    assert (
        metrics["relations_strict"]["micro_f1_tuned"]
        >= (metrics["relations_strict"]["micro_f1_default"])
    )
    assert metrics["entities"]["micro_f1_after"] >= metrics["entities"]["micro_f1_before"]
    data = tmp_path / "dev.json"
    write_dataset(data, sentences)
    write_model_card(saved, None)
    assert "exceeds 0.4" in (saved / CARD_FILE).read_text(encoding="utf-8")
    main(["calibrate", "--model", str(saved), "--data", str(data), "--method", "temperature"])
    out = capsys.readouterr().out
    assert "entity ECE" in out and "Work_For" in out
    card = (saved / CARD_FILE).read_text(encoding="utf-8")  # written again: the new thresholds
    assert "exceeds 0.4" not in card and "Scores are calibrated probabilities" in card
    stored = SpERT.load(saved).calibration
    assert stored is not None and stored.relation_method == "temperature"
    assert stored.fitted_on["data"] == str(data)


# -- bounded output --------------------------------------------------------------------------


def test_caps_bound_an_untrained_model(types: Types, tiny_config, sentences) -> None:
    torch.manual_seed(0)
    config = tiny_config.replace(max_entities_per_sentence=0, max_relations_per_sentence=0)
    spert = SpERT.create(types, config, "cpu")
    with torch.no_grad():  # an untrained-like model: every span is an entity
        spert.model.entity_classifier.bias[0] = -100.0
        spert.model.relation_classifier.bias.fill_(5.0)
    free = spert.predict(sentences)
    assert max(len(s.entities) for s in free) > 30
    assert max(len(s.relations) for s in free) > 100
    spert.inference = config.inference_config().replace(
        max_entities_per_sentence=5, max_relations_per_sentence=7
    )
    capped = spert.predict(sentences)
    for a, b in zip(free, capped):
        assert len(b.entities) == min(5, len(a.entities))
        assert len(b.relations) <= 7
        # The kept entities are the highest-scoring ones.
        best = sorted((e.score for e in a.entities), reverse=True)[: len(b.entities)]
        assert sorted((e.score for e in b.entities), reverse=True) == pytest.approx(best)


def test_old_model_directory_loads_with_default_caps(saved: Path) -> None:
    meta = json.loads((saved / "spert.json").read_text(encoding="utf-8"))
    for name in ("max_entities_per_sentence", "max_relations_per_sentence"):
        del meta["config"][name]
    (saved / "spert.json").write_text(json.dumps(meta), encoding="utf-8")
    inference = SpERT.load(saved).inference
    assert inference.max_entities_per_sentence == 100
    assert inference.max_relations_per_sentence == 200


def test_calibrated_model_directory_copies(saved: Path, tmp_path: Path) -> None:
    write_calibration(saved, sample_calibration(SpERT.load(saved).types))
    copy = tmp_path / "copied"
    shutil.copytree(saved, copy)
    assert (copy / CALIBRATION_FILE).is_file()
    write_calibration(copy, None)
    assert SpERT.load(copy).calibration is None


def test_train_calibrate_stores_calibration(types: Types, tiny_config, sentences, tmp_path: Path):
    from spert.training import train

    config = tiny_config.replace(calibrate=True, max_span_size=3, eval_every_epoch=True)
    result = train(config, sentences, types, tmp_path / "run", dev_data=sentences, progress=False)
    for folder in ("final", "best"):  # with a dev set evaluated every epoch, both are written
        stored = SpERT.load(tmp_path / "run" / folder).calibration
        assert stored is not None and stored.fitted_on["sentences"] == len(sentences)
        card = (tmp_path / "run" / folder / "README.md").read_text(encoding="utf-8")
        threshold = stored.relation_thresholds[0]
        assert f"`{stored.relation_types[0]}` {threshold:.3f}" in card
        assert "Scores are calibrated probabilities" in card and "exceeds 0.4" not in card
    assert result.model.calibration is not None
