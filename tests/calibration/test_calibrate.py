"""The calibration passes and calibrated models: a stored calibration survives save/load and
is applied (or replaced per call), fitting on data leaves the model as it was, and the
per-sentence caps bound the output."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from spert.api import ModelError, SpERT
from spert.calibration import calibrate
from spert.cli import main
from spert.data import Types, write_dataset
from spert.evaluation.card import CARD_FILE, write_model_card
from spert.evaluation.reliability import SCORE_FLOOR
from spert.model.calibration import CALIBRATION_FILE, Calibration, CalibrationError
from spert.model.directory import write_calibration

pytestmark = pytest.mark.usefixtures("one_thread")


# -- calibrated models ------------------------------------------------------------------


def sample_calibration(types: Types, **changes) -> Calibration:
    n = len(types.relations)
    identity = Calibration.identity(types.entities, types.relation_names, 0.3)
    values = dict(
        entity_temperature=2.0,
        relation_method="platt",
        relation_scale=(0.5,) * n,
        relation_bias=(-1.0,) * n,
        fitted_on={"data": "dev.json"},
    )
    return replace(identity, **{**values, **changes})


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


def test_predict_with_another_calibration(saved: Path, sentences) -> None:
    plain = SpERT.load(saved)
    other = sample_calibration(plain.types, entity_temperature=0.5, entity_threshold=0.2)
    write_calibration(saved, sample_calibration(plain.types))
    model = SpERT.load(saved)
    own = model.calibration
    assert model.predict(sentences, calibration=None) == plain.predict(sentences)
    plain.calibration = other
    assert model.predict(sentences, calibration=other) == plain.predict(sentences)
    assert model.predict(sentences, calibration=other) != model.predict(sentences)
    assert model.calibration is own  # per call: the model keeps its own
    assert model.relation_thresholds(calibration=None) == [0.4] * len(model.types.relations)
    wrong = replace(other, relation_types=("Work_For", "Live_In", "Kill"))
    with pytest.raises(CalibrationError, match="model has"):
        model.predict(sentences, calibration=wrong)


def test_fit_ignores_the_models_own_calibration(saved: Path, sentences) -> None:
    plain = SpERT.load(saved)
    calibrated = SpERT.load(saved)
    own = calibrated.calibration = sample_calibration(calibrated.types, entity_threshold=0.2)
    assert calibrate(calibrated, sentences) == calibrate(plain, sentences)
    assert calibrated.calibration is own


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


def test_thresholds_tune_one_cut_off_only(saved: Path, sentences, tmp_path: Path, capsys) -> None:
    model = SpERT.load(saved)
    both = calibrate(model, sentences, method="temperature")
    entity = calibrate(model, sentences, method="temperature", thresholds="entity")
    relations = calibrate(model, sentences, method="temperature", thresholds="relations")
    # Scores are calibrated alike; only the cut-offs differ.
    assert entity.entity_temperature == relations.entity_temperature == both.entity_temperature
    assert entity.entity_threshold == both.entity_threshold
    assert entity.relation_thresholds == tuple(entity.calibrated_threshold(0.4))
    assert relations.entity_threshold is None
    assert entity.fitted_on["thresholds"] == "entity"
    with pytest.raises(ValueError, match="target precision"):
        calibrate(model, sentences, thresholds="entity", target_precision=0.9)
    with pytest.raises(ValueError, match="thresholds must be one of"):
        calibrate(model, sentences, thresholds="relation")
    data = tmp_path / "dev.json"
    write_dataset(data, sentences)
    main(["calibrate", "--model", str(saved), "--data", str(data), "--thresholds", "entity"])
    assert "cut-offs tuned: entity" in capsys.readouterr().out
    stored = SpERT.load(saved).calibration
    assert stored is not None and stored.fitted_on["thresholds"] == "entity"
    assert stored.relation_thresholds == tuple(stored.calibrated_threshold(0.4))


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

    config = tiny_config.replace(
        calibrate=True, calibrate_thresholds="entity", max_span_size=3, eval_every_epoch=True
    )
    result = train(config, sentences, types, tmp_path / "run", dev_data=sentences, progress=False)
    for folder in ("final", "best"):  # with a dev set evaluated every epoch, both are written
        stored = SpERT.load(tmp_path / "run" / folder).calibration
        assert stored is not None and stored.fitted_on["sentences"] == len(sentences)
        assert stored.fitted_on["thresholds"] == "entity"
        assert stored.relation_thresholds == tuple(stored.calibrated_threshold(0.4))
        card = (tmp_path / "run" / folder / "README.md").read_text(encoding="utf-8")
        threshold = stored.relation_thresholds[0]
        assert f"`{stored.relation_types[0]}` {threshold:.3f}" in card
        assert "Scores are calibrated probabilities" in card and "exceeds 0.4" not in card
    assert result.model.calibration is not None
