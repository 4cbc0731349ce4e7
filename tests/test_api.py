"""The public API: save / load round trips, model directory checks, predict and evaluate."""

from __future__ import annotations

import json

import pytest
import torch

from spert.api import ENCODER_DIR, FORMAT_VERSION, HEADS_FILE, META_FILE, ModelError, SpERT
from spert.config import INFERENCE_OPTIONS, MODEL_OPTIONS, InferenceConfig, ModelConfig, SpertConfig
from spert.data import DataError, Sentence, Types

pytestmark = pytest.mark.usefixtures("one_thread")


def make_spert(types: Types, config: SpertConfig) -> SpERT:
    """A random model that predicts entities (the "none" class is pushed down)."""
    torch.manual_seed(0)
    spert = SpERT.create(types, config, "cpu")
    with torch.no_grad():
        spert.model.entity_classifier.bias[0] = -3.0
    return spert


def check_sentence(sentence: Sentence, tokens: list[str], types: Types, config: SpertConfig):
    assert sentence.tokens == tokens
    for e in sentence.entities:
        assert e.type in types.entities
        assert 0 <= e.start < e.end <= len(tokens)
        assert e.end - e.start <= config.max_span_size
        assert e.score is not None and 0 < e.score <= 1
    for r in sentence.relations:
        assert r.type in types.relation_names
        assert 0 <= r.head < len(sentence.entities) and 0 <= r.tail < len(sentence.entities)
        assert r.head != r.tail
        assert r.score is not None and config.relation_threshold < r.score <= 1


def assert_same_prediction(a: Sentence, b: Sentence) -> None:
    assert [(e.type, e.start, e.end) for e in a.entities] == [
        (e.type, e.start, e.end) for e in b.entities
    ]
    assert [(r.type, r.head, r.tail) for r in a.relations] == [
        (r.type, r.head, r.tail) for r in b.relations
    ]

    def scores(s: Sentence) -> list[float | None]:
        return [e.score for e in s.entities] + [r.score for r in s.relations]

    assert scores(a) == pytest.approx(scores(b), abs=1e-5)


@pytest.mark.parametrize("encoder", ["bert_dir", "roberta_dir"])
def test_save_load_gives_identical_predictions(request, types, sentences, tmp_path, encoder):
    config = SpertConfig(encoder=str(request.getfixturevalue(encoder)), max_span_size=4)
    spert = make_spert(types, config)
    before = spert.predict(sentences)
    assert any(s.entities for s in before) and any(s.relations for s in before)
    spert.save(tmp_path / "model")

    assert (tmp_path / "model" / META_FILE).is_file()
    assert (tmp_path / "model" / HEADS_FILE).is_file()
    assert (tmp_path / "model" / ENCODER_DIR / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folders
    meta = json.loads((tmp_path / "model" / META_FILE).read_text(encoding="utf-8"))
    assert meta["format_version"] == FORMAT_VERSION
    # The model's options only (architecture and inference settings, in one object as spert
    # has always written them); training options are the run's record, not the model's.
    assert sorted(meta["config"]) == sorted(MODEL_OPTIONS + INFERENCE_OPTIONS)
    stored = meta["config"]
    assert ModelConfig.from_dict({k: stored[k] for k in MODEL_OPTIONS}) == config.model_config()
    inference = InferenceConfig.from_dict({k: stored[k] for k in INFERENCE_OPTIONS})
    assert inference == config.inference_config()

    loaded = SpERT.load(tmp_path / "model", device="cpu")
    assert loaded.types.entities == types.entities
    assert loaded.types.relation_names == types.relation_names
    assert loaded.types.symmetric == types.symmetric
    assert loaded.config == config.model_config()
    assert loaded.inference == config.inference_config()
    assert not loaded.model.training
    after = loaded.predict(sentences)
    assert after == before  # entities, relations and their scores
    for name, value in spert.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[name]), name


def test_directory_of_an_earlier_version_loads(types, sentences, tiny_config, tmp_path):
    """Before model and training options were apart, spert.json held every option of the run
    (as spert 0.1.0 at commit 882eecd wrote it); such a directory loads, training options
    ignored, and predicts as before."""
    config = tiny_config.replace(max_span_size=4, lr=1e-3, epochs=3, neg_relation_kind="weak")
    spert = make_spert(types, config)
    spert.save(tmp_path / "model")
    meta_path = tmp_path / "model" / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["config"] = config.to_dict()  # the old layout: all 33 options
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    loaded = SpERT.load(tmp_path / "model", device="cpu")
    assert loaded.config == config.model_config()
    assert loaded.inference == config.inference_config()
    assert loaded.predict(sentences) == spert.predict(sentences)
    meta["config"]["no_such_option"] = 1  # neither a model nor a training option
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match="unknown option.*no_such_option"):
        SpERT.load(tmp_path / "model")


#: spert.json's "config" as spert wrote it before inference settings had a class of their own
#: (commit 10fcdef): the architecture and the inference settings in one object.
BEFORE_INFERENCE_CONFIG = {
    "lowercase": "auto",
    "max_encoder_length": 0,
    "max_span_size": 4,
    "width_embedding_dim": 25,
    "num_width_embeddings": 100,
    "word_shape_dim": 0,
    "pooling": "max",
    "relation_context": "local",
    "dropout": 0.1,
    "context_words": 0,
    "relation_threshold": 0.25,
    "max_entities_per_sentence": 3,
    "max_relations_per_sentence": 2,
    "max_pairs": 5,
    "max_sentence_words": 50,
    "eval_batch_size": 3,
}


def test_directory_saved_before_inference_settings_were_apart_loads(
    types, sentences, tiny_config, tmp_path
):
    """A directory whose spert.json holds architecture and inference settings in one object
    (as every spert has written it) loads each into its own object, predicts with its inference
    settings and is saved again in the same layout."""
    old = {**BEFORE_INFERENCE_CONFIG, "encoder": tiny_config.encoder}
    model_dir = tmp_path / "model"
    make_spert(types, tiny_config.replace(max_span_size=4)).save(model_dir)
    meta_path = model_dir / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["config"] = old
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")

    loaded = SpERT.load(model_dir, device="cpu")
    # Options added since (span_boundary, ...) take their defaults.
    assert loaded.config == ModelConfig.from_dict({k: old[k] for k in MODEL_OPTIONS if k in old})
    assert loaded.inference == InferenceConfig(
        relation_threshold=0.25,
        max_entities_per_sentence=3,
        max_relations_per_sentence=2,
        max_pairs=5,
        max_sentence_words=50,
        eval_batch_size=3,
    )
    out = loaded.predict(sentences)
    assert max(len(s.entities) for s in out) == 3  # the stored cap, not the default 100
    assert all(len(s.relations) <= 2 for s in out)
    assert all(r.score > 0.25 for s in out for r in s.relations)

    loaded.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / META_FILE).read_text(encoding="utf-8"))
    assert {k: again["config"][k] for k in old} == old
    assert again["config"] == {**loaded.config.to_dict(), **loaded.inference.to_dict()}


def test_other_format_version_is_refused(types, tiny_config, tmp_path):
    make_spert(types, tiny_config).save(tmp_path / "model")
    meta_path = tmp_path / "model" / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    other = FORMAT_VERSION + 1
    meta["format_version"] = other
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match=rf"model format {other}\b.*reads format {FORMAT_VERSION}"):
        SpERT.load(tmp_path / "model")
    del meta["format_version"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match="model format None"):
        SpERT.load(tmp_path / "model")


def test_non_model_directories_are_refused(tmp_path):
    with pytest.raises(ModelError, match="not a SpERT model directory"):
        SpERT.load(tmp_path)
    with pytest.raises(ModelError, match="not a SpERT model directory"):
        SpERT.load(tmp_path / "missing")
    (tmp_path / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="unreadable"):
        SpERT.load(tmp_path)


def test_save_replaces_existing_directory(types, tiny_config, tmp_path):
    target = tmp_path / "model"
    first = make_spert(types, tiny_config)
    first.save(target)
    (target / "stale.txt").write_text("left from before", encoding="utf-8")

    second = make_spert(types, tiny_config)
    with torch.no_grad():
        second.model.relation_classifier.weight.add_(1.0)
    second.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .tmp / .old folders
    assert not (target / "stale.txt").exists()
    loaded = SpERT.load(target, device="cpu")
    assert torch.equal(
        loaded.model.relation_classifier.weight, second.model.relation_classifier.weight
    )


def test_predict_accepts_tokens_sentences_and_dicts(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(max_span_size=3))
    gold = sentences[0]  # its annotations are ignored
    inputs = [
        list(sentences[1].tokens),
        Sentence(list(gold.tokens), gold.entities, gold.relations, orig_id="s-0"),
        {"tokens": list(sentences[2].tokens), "orig_id": 7},
        {"tokens": ["Mary", "works"]},
        tuple(sentences[0].tokens),
    ]
    expected_tokens = [sentences[1].tokens, gold.tokens, sentences[2].tokens, ["Mary", "works"]]
    expected_tokens.append(sentences[0].tokens)
    out = spert.predict(inputs, batch_size=2)  # length buckets reorder; output must not
    assert [s.tokens for s in out] == expected_tokens
    assert [s.orig_id for s in out] == [None, "s-0", 7, None, None]
    for sentence in out:
        check_sentence(sentence, sentence.tokens, types, tiny_config.replace(max_span_size=3))
    # The same tokens give the same prediction, whatever the input kind and batching
    # (up to float noise from padding, which can move the 6th decimal of a score).
    assert_same_prediction(out[1], out[4])
    assert_same_prediction(spert.predict([sentences[2].tokens], batch_size=1)[0], out[2])
    assert spert.predict([]) == []


def test_predict_words_without_subwords_and_long_sentences(types, tiny_config):
    config = tiny_config.replace(max_encoder_length=16, max_span_size=4)
    spert = make_spert(types, config)
    zw = "\u200b"
    words = "Mary works for Acme Corp in Boston and lives in Cambridge .".split()
    long = (words * 4)[:40]
    inputs = [
        long,
        ["Mary", zw, "works", "for", "Acme"],
        [zw] * 6 + ["Mary"] + [zw] * 3,
        [zw],
        long[:10] + [zw] + long[10:30],
    ]
    assert len(spert.encode([Sentence(long)])[0].windows) > 1  # several encoder passes
    out = spert.predict(inputs, batch_size=3)
    for sentence, tokens in zip(out, inputs, strict=True):
        check_sentence(sentence, tokens, types, config)
        # Every entity holds a word with subwords.
        assert all(any(w != zw for w in tokens[e.start : e.end]) for e in sentence.entities)
    assert out[0].entities and out[0].relations
    assert out[3].entities == [] and out[3].relations == []


@pytest.mark.parametrize(
    "bad",
    [[[]], [{"tokens": []}], [["Mary", ""]], [{"tokens": "Mary works"}], [{"words": ["a"]}]],
)
def test_predict_rejects_bad_input(types, tiny_config, bad):
    spert = make_spert(types, tiny_config)
    with pytest.raises(DataError):
        spert.predict([["Mary", "works"], *bad])


def test_evaluate_returns_metrics_and_predictions(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(max_span_size=3))
    metrics, predictions = spert.evaluate(sentences)
    assert set(metrics) == {"entities", "relations", "relations_strict"}
    for section in metrics.values():
        assert {"precision", "recall", "f1"} <= set(section["micro"])
        assert set(section["per_type"]) <= set(types.entities) | set(types.relation_names)
    assert [p.tokens for p in predictions] == [s.tokens for s in sentences]
    support = sum(v["support"] for v in metrics["entities"]["per_type"].values())
    assert support == sum(len(s.entities) for s in sentences)
