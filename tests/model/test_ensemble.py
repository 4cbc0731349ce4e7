"""Ensembles: decoding averages the members' probabilities; the directory round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_same_predictions, tiny_bert_dir

from spert.api import ModelError, SpERT
from spert.calibration import calibrate
from spert.cli import main
from spert.config import SpertConfig
from spert.data import RelationType, Sentence, Types
from spert.model.candidates import Batch, candidate_spans, collate
from spert.model.decoding import score_batch
from spert.model.directory import ENSEMBLE_FILE, write_calibration
from spert.model.modeling import RangePooler, SpertEnsemble, SpertModel

pytestmark = pytest.mark.usefixtures("one_thread")


def member(types: Types, bert_dir: Path, seed: int, **options: object) -> SpERT:
    """A random model that keeps some spans as entities (its "none" bias pushed down a bit)."""
    torch.manual_seed(seed)
    settings: dict[str, object] = {"max_span_size": 4, **options}
    config = SpertConfig(encoder=str(bert_dir), **settings)  # type: ignore[arg-type]
    spert = SpERT.create(types, config, "cpu")
    spert.model.eval()
    with torch.no_grad():
        spert.model.entity_classifier.bias[0] = 0.5
    return spert


def batch_of(spert: SpERT, sentences: list[Sentence]) -> Batch:
    encoded = spert.sentence_encoder.encode([s.tokens for s in sentences])
    spans = [candidate_spans(e, spert.config.max_span_size) for e in encoded]
    return collate(encoded, spans, spert.pad_token_id)


def member_scores(
    model: SpertModel, batch: Batch, pairs: torch.Tensor, pair_types: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One member's entity probabilities of every span and relation probabilities of pairs."""
    with torch.no_grad():
        hidden = model.encode(batch)
        pooler = RangePooler(hidden, model.config.pooling)
        spans = model.span_representations(pooler, batch)
        entity = model.entity_logits(spans, hidden[:, 0], batch.span_batch).softmax(-1)
        relation = model.relation_logits(pooler, spans, hidden[:, 0], batch, pairs, pair_types)
    return entity, relation.sigmoid()


@pytest.fixture()
def pair(types: Types, bert_dir: Path) -> tuple[SpERT, SpERT]:
    return member(types, bert_dir, 1), member(types, bert_dir, 2)


def test_scores_are_the_members_mean_probabilities(pair, sentences):
    ensemble = SpERT.ensemble(pair)
    batch = batch_of(ensemble, sentences)
    scored = score_batch(ensemble.model, batch, max_pairs=7)  # several pair chunks
    pairs = torch.stack([scored.kept[scored.head_slot], scored.kept[scored.tail_slot]], 1)
    assert len(pairs) > 0
    pair_types = scored.entity_labels[pairs]
    entity, relation = zip(*(member_scores(m.model, batch, pairs, pair_types) for m in pair))
    mean_entity = torch.stack(entity).mean(0)
    torch.testing.assert_close(scored.entity_logits.softmax(-1), mean_entity)
    assert torch.equal(
        torch.nonzero(mean_entity.argmax(-1) > 0).squeeze(1).sort()[0], scored.kept.sort()[0]
    )
    torch.testing.assert_close(scored.relation_logits.sigmoid(), torch.stack(relation).mean(0))
    # The members alone decide otherwise: the ensemble is not one of them.
    alone = score_batch(pair[0].model, batch, max_pairs=7)
    assert not torch.allclose(alone.entity_logits.softmax(-1), mean_entity)


def test_ensemble_of_one_model_twice_predicts_as_the_model(types, bert_dir, sentences):
    model = member(types, bert_dir, 1)
    ensemble = SpERT.ensemble([model, model])
    single, double = model.predict(sentences), ensemble.predict(sentences)
    assert any(s.relations for s in single)
    assert_same_predictions(single, double, tolerance=1e-5)


def test_directory_round_trip_and_calibration(pair, sentences, tmp_path):
    ensemble = SpERT.ensemble(pair)
    path = tmp_path / "ensemble"
    ensemble.save(path)
    meta = json.loads((path / ENSEMBLE_FILE).read_text())
    assert meta["members"] == ["member_1", "member_2"]
    loaded = SpERT.load(path, device="cpu")
    assert isinstance(loaded.model, SpertEnsemble)
    assert loaded.predict(sentences) == ensemble.predict(sentences)

    calibration = calibrate(loaded, sentences, thresholds="entity")
    write_calibration(path, calibration)
    calibrated = SpERT.load(path, device="cpu")
    assert calibrated.calibration == calibration
    raw = SpERT.load(path, device="cpu", calibration=False)
    assert raw.calibration is None


def test_members_must_agree(types, bert_dir):
    model = member(types, bert_dir, 1)
    other_types = Types(types.entities, (RelationType("Work_For"),))
    with pytest.raises(ModelError, match="ensemble member 2: its entity or relation types"):
        SpERT.ensemble([model, member(other_types, bert_dir, 2)])
    with pytest.raises(ModelError, match="ensemble member 2: option max_span_size is 3"):
        SpERT.ensemble([model, member(types, bert_dir, 2, max_span_size=3)])
    with pytest.raises(ModelError, match="at least 2 models"):
        SpERT.ensemble([model])


def test_members_must_share_the_encoder_input_limit(types, bert_dir, tmp_path):
    shorter = tiny_bert_dir(tmp_path, max_position=32)
    models = [member(types, bert_dir, 1), member(types, shorter, 2)]
    with pytest.raises(ModelError, match="member 2: its encoder reads 32 positions"):
        SpERT.ensemble(models)


def test_members_may_differ_in_architecture(types, bert_dir, sentences, tmp_path):
    """Options outside the span settings (here span boundaries) are each member's own."""
    models = [member(types, bert_dir, 1), member(types, bert_dir, 2, span_boundary=True)]
    ensemble = SpERT.ensemble(models)
    ensemble.save(tmp_path / "mixed")
    loaded = SpERT.load(tmp_path / "mixed", device="cpu")
    assert [m.config.span_boundary for m in loaded.model.members] == [False, True]
    assert loaded.predict(sentences) == ensemble.predict(sentences)


def test_bad_ensemble_file_names_file_and_field(pair, tmp_path):
    path = tmp_path / "ensemble"
    SpERT.ensemble(pair).save(path)
    file = path / ENSEMBLE_FILE
    meta = json.loads(file.read_text())
    file.write_text(json.dumps({**meta, "members": ["member_1", "../elsewhere"]}))
    with pytest.raises(ModelError, match=r"ensemble.json: members\[1\] must be a folder name"):
        SpERT.load(path)
    file.write_text(json.dumps({**meta, "members": ["member_1", "member_3"]}))
    with pytest.raises(ModelError, match=r"members\[1\]: .*member_3 is not a SpERT model"):
        SpERT.load(path)
    file.write_text(json.dumps({**meta, "members": ["member_1"]}))
    with pytest.raises(ModelError, match="field 'members' must list at least 2"):
        SpERT.load(path)
    file.write_text(json.dumps({**meta, "members": ["member_1", "member_2"]}))
    with pytest.raises(ModelError, match="torch runtimes only"):
        SpERT.load(path, runtime="onnx")


def test_cli_ensemble(pair, sentences, tmp_path, capsys):
    paths = []
    for i, model in enumerate(pair):
        paths.append(str(tmp_path / f"model_{i}"))
        model.save(paths[-1])
    out = tmp_path / "ensemble"
    main(["ensemble", *paths, "--out", str(out)])
    assert "ensemble of 2 models" in capsys.readouterr().out
    assert SpERT.load(out).predict(sentences) == SpERT.ensemble(pair).predict(sentences)
    assert SpERT.ensemble(pair).device == pair[0].device  # the models stay where they are


def test_cli_ensemble_error_names_the_directory(types, bert_dir, tmp_path):
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    member(types, bert_dir, 1).save(paths[0])
    member(types, bert_dir, 2, max_span_size=3).save(paths[1])
    with pytest.raises(SystemExit) as exited:
        main(["ensemble", *paths, "--out", str(tmp_path / "ensemble")])
    assert f"{paths[1]}: option max_span_size is 3, {paths[0]} has 4" in str(exited.value.code)
    assert not (tmp_path / "ensemble").exists()
