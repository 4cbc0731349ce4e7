"""The paper's ablations as options: weak relation negatives, encoder initialization.

Relation context (local / sentence / none) and span pooling (max / sum / mean) are tested in
test_modeling.py (test_relation_context_modes, test_sum_and_mean_pooling_models_run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spert.api import SpERT
from spert.cli import build_config, build_parser
from spert.config import ConfigError, SpertConfig
from spert.data import Entity, Relation, Sentence, Types
from spert.model.candidates import candidate_spans, collate, sample_training
from spert.model.encoding import SentenceEncoder, load_tokenizer
from spert.training import make_optimizer, spert_loss, train
from spert.training.checkpoint import read_run_info

pytestmark = pytest.mark.usefixtures("one_thread")


def encode(bert_dir: Path, sentences: list[Sentence]):
    return SentenceEncoder(load_tokenizer(bert_dir), 10_000).encode([s.tokens for s in sentences])


# --- weak relation negatives -----------------------------------------------------------------


def gold_relation_keys(sentence: Sentence, types: Types) -> set[tuple[tuple, tuple]]:
    """(head span, tail span) of every gold relation, both ways for symmetric types."""
    keys = set()
    for r in sentence.relations:
        head, tail = sentence.entities[r.head].span, sentence.entities[r.tail].span
        keys.add((head, tail))
        if r.type in types.symmetric:
            keys.add((tail, head))
    return keys


def check_weak(sample, sentence: Sentence, types: Types, cfg: SpertConfig) -> None:
    spans = [tuple(s) for s in sample.spans.tolist()]
    n_gold = len(sentence.entities)
    positive = sample.relation_labels.sum(axis=1) > 0
    n_pos = int(positive.sum())
    assert positive[:n_pos].all() and not positive[n_pos:].any()
    # Positives keep their gold labels (as with strong negatives).
    for (h, t), labels in zip(sample.pairs[:n_pos].tolist(), sample.relation_labels[:n_pos]):
        want = set()
        for r in sentence.relations:
            gold = (sentence.entities[r.head].span, sentence.entities[r.tail].span)
            if gold == (spans[h], spans[t]) or (
                r.type in types.symmetric and gold == (spans[t], spans[h])
            ):
                want.add(r.type)
        assert {types.relation_names[i] for i in np.flatnonzero(labels)} == want
    negatives = [tuple(p) for p in sample.pairs[n_pos:].tolist()]
    assert len(negatives) == len(set(negatives)) <= cfg.neg_relation_count
    gold_keys = gold_relation_keys(sentence, types)
    for h, t in negatives:
        assert 0 <= h < len(spans) and 0 <= t < len(spans)
        assert spans[h] != spans[t]
        # No gold pair is labelled negative, in any of its spellings (duplicate-span entities).
        assert (spans[h], spans[t]) not in gold_keys
        # Relations point at the first entity of a span: later duplicates are never used.
        for i in (h, t):
            assert i >= n_gold or spans.index(spans[i]) == i


@pytest.fixture()
def dup_sentence() -> Sentence:
    """Entities 0 and 2 share a span; the relation uses the later one (index 2)."""
    return Sentence(
        "Mary works for Acme Corp in Boston .".split(),
        [Entity("Peop", 0, 1), Entity("Org", 3, 5), Entity("Loc", 0, 1), Entity("Loc", 6, 7)],
        [Relation("Work_For", 2, 1), Relation("Spouse", 0, 3)],
    )


def test_weak_negatives_include_non_entity_spans(bert_dir, sentences, types):
    cfg = SpertConfig(neg_entity_count=20, neg_relation_count=30, neg_relation_kind="weak")
    rng = np.random.default_rng(0)
    for sentence, encoded in zip(sentences, encode(bert_dir, sentences)):
        sample = sample_training(sentence, encoded, types, cfg, rng)
        check_weak(sample, sentence, types, cfg)
        n_gold = len(sentence.entities)
        negatives = sample.pairs[int((sample.relation_labels.sum(1) > 0).sum()) :]
        assert len(negatives) == cfg.neg_relation_count  # plenty of pairs to draw from
        # Most involve a non-entity span (20 of 20 + n_gold spans are non-entities).
        assert (negatives >= n_gold).any(axis=1).mean() > 0.5


def test_weak_negatives_all_pairs_when_few(bert_dir, dup_sentence, types):
    """With room for every pair: all ordered pairs of distinct spans but the gold ones."""
    cfg = SpertConfig(neg_entity_count=4, neg_relation_count=10_000, neg_relation_kind="weak")
    (encoded,) = encode(bert_dir, [dup_sentence])
    sample = sample_training(dup_sentence, encoded, types, cfg, np.random.default_rng(1))
    check_weak(sample, dup_sentence, types, cfg)
    n_pos = int((sample.relation_labels.sum(1) > 0).sum())
    assert n_pos == 3  # Work_For (0, 1) and Spouse both ways (0, 3), (3, 0)
    nodes = [0, 1, 3] + list(range(4, 4 + 4))  # first of each gold span, then 4 negatives
    assert len(sample.spans) == 8
    expected = {(a, b) for a in nodes for b in nodes if a != b} - {(0, 1), (0, 3), (3, 0)}
    assert {tuple(p) for p in sample.pairs[n_pos:].tolist()} == expected


def test_weak_negatives_with_no_negative_entities_use_gold_pairs(bert_dir, sentences, types):
    cfg = SpertConfig(neg_entity_count=0, neg_relation_count=100, neg_relation_kind="weak")
    sentence = sentences[0]  # 4 entities, Work_For (0, 1), Live_In (0, 3)
    (encoded,) = encode(bert_dir, [sentence])
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    strong = sample_training(
        sentence, encoded, types, cfg.replace(neg_relation_kind="strong"), np.random.default_rng(0)
    )
    # Only gold spans to pair: weak and strong negatives are the same set.
    assert {tuple(p) for p in sample.pairs.tolist()} == {tuple(p) for p in strong.pairs.tolist()}
    assert len(sample.pairs) == 12


def test_weak_negatives_are_seeded_and_strong_ones_unchanged(bert_dir, sentences, types):
    weak = SpertConfig(neg_entity_count=10, neg_relation_count=10, neg_relation_kind="weak")
    encoded = encode(bert_dir, sentences)

    def draw(cfg: SpertConfig, seed: int):
        rng = np.random.default_rng(seed)
        return [sample_training(s, e, types, cfg, rng) for s, e in zip(sentences, encoded)]

    a, b, c = draw(weak, 5), draw(weak, 5), draw(weak, 6)
    assert all(np.array_equal(x.pairs, y.pairs) for x, y in zip(a, b))
    assert any(not np.array_equal(x.pairs, z.pairs) for x, z in zip(a, c))
    # Strong samples are still pairs of gold entities only.
    for sample, sentence in zip(draw(weak.replace(neg_relation_kind="strong"), 5), sentences):
        assert (sample.pairs < len(sentence.entities)).all()


def test_training_with_weak_negatives(bert_dir, sentences, types, tmp_path):
    cfg = SpertConfig(
        encoder=str(bert_dir),
        epochs=1,
        neg_entity_count=10,
        neg_relation_count=10,
        neg_relation_kind="weak",
    )
    result = train(cfg, sentences, types, tmp_path / "run", progress=False)
    assert np.isfinite(result.history[-1]["train_loss"])
    # A training option: in the run's record, not in the model directory.
    assert read_run_info(tmp_path / "run")["config"]["neg_relation_kind"] == "weak"
    assert SpERT.load(tmp_path / "run" / "final").config == cfg.model_config()


# --- encoder initialization ------------------------------------------------------------------


def encoder_state(spert: SpERT) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in spert.model.encoder.state_dict().items()}


def heads_state(spert: SpERT) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone()
        for k, v in spert.model.state_dict().items()
        if not k.startswith("encoder.")
    }


def pretrained_weights(bert_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(bert_dir / "model.safetensors"))


def test_random_init_has_fresh_encoder_weights(bert_dir, types, tiny_config):
    pretrained = SpERT.create(types, tiny_config, "cpu")
    torch.manual_seed(7)
    random_a = SpERT.create(types, tiny_config.replace(encoder_init="random"), "cpu")
    torch.manual_seed(7)
    random_b = SpERT.create(types, tiny_config.replace(encoder_init="random"), "cpu")
    p, a, b = encoder_state(pretrained), encoder_state(random_a), encoder_state(random_b)
    assert p.keys() == a.keys()
    weights = [k for k in p if k.endswith("weight") and "LayerNorm" not in k]
    assert weights and all(not torch.equal(p[k], a[k]) for k in weights)
    assert all(torch.equal(a[k], b[k]) for k in a)  # drawn from torch's (seeded) RNG
    # Same architecture and tokenizer as the pre-trained encoder.
    assert all(p[k].shape == a[k].shape for k in p)
    assert random_a.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    assert all(param.requires_grad for param in random_a.model.parameters())


def one_step(spert: SpERT, cfg: SpertConfig, sentences: list[Sentence], types: Types) -> None:
    rng = np.random.default_rng(0)
    encoded = spert.encode(sentences)
    samples = [sample_training(s, e, types, cfg, rng) for s, e in zip(sentences, encoded)]
    batch = collate(encoded, [s.spans for s in samples], spert.pad_token_id, samples)
    optimizer = make_optimizer(spert.model, cfg)
    spert.model.train()
    spert_loss(*spert.model(batch), batch).backward()
    optimizer.step()


def test_frozen_encoder_stays_unchanged_while_heads_train(bert_dir, sentences, types, tiny_config):
    config = tiny_config.replace(encoder_init="frozen", lr=1e-2)
    spert = SpERT.create(types, config, "cpu")
    encoder_params = {id(p) for p in spert.model.encoder.parameters()}
    assert not any(p.requires_grad for p in spert.model.encoder.parameters())
    optimizer = make_optimizer(spert.model, config)
    optimized = [p for group in optimizer.param_groups for p in group["params"]]
    assert optimized and not encoder_params & {id(p) for p in optimized}
    assert len(optimized) == sum(1 for p in spert.model.parameters() if p.requires_grad)

    encoder_before, heads_before = encoder_state(spert), heads_state(spert)
    torch.testing.assert_close(encoder_before, pretrained_weights(bert_dir))
    one_step(spert, config, sentences, types)
    assert all(p.grad is None for p in spert.model.encoder.parameters())
    after = encoder_state(spert)
    assert all(torch.equal(encoder_before[k], after[k]) for k in after)
    heads_after = heads_state(spert)
    changed = [k for k in heads_after if not torch.equal(heads_before[k], heads_after[k])]
    assert "entity_classifier.weight" in changed and "relation_classifier.weight" in changed


def test_pretrained_encoder_is_fine_tuned(bert_dir, sentences, types, tiny_config):
    """The control for the frozen test: the same step changes a fine-tuned encoder."""
    config = tiny_config.replace(lr=1e-2)
    spert = SpERT.create(types, config, "cpu")
    before = encoder_state(spert)
    one_step(spert, config, sentences, types)
    after = encoder_state(spert)
    assert any(not torch.equal(before[k], after[k]) for k in after)


@pytest.mark.parametrize("init", ["random", "frozen"])
def test_random_and_frozen_models_save_and_load(
    bert_dir, sentences, types, tiny_config, init, tmp_path
):
    config = tiny_config.replace(encoder_init=init, epochs=1)
    result = train(config, sentences, types, tmp_path / "run", device="cpu", progress=False)
    trained = result.model
    loaded = SpERT.load(tmp_path / "run" / "final", "cpu")
    assert read_run_info(tmp_path / "run")["config"]["encoder_init"] == init
    # Loading reads the saved encoder weights: the trained random ones, not a new draw.
    saved, reloaded = encoder_state(trained), encoder_state(loaded)
    assert all(torch.equal(saved[k], reloaded[k]) for k in saved)
    pretrained = pretrained_weights(bert_dir)
    same_as_pretrained = all(torch.equal(pretrained[k], reloaded[k]) for k in pretrained)
    assert same_as_pretrained == (init == "frozen")
    tokens = [s.tokens for s in sentences]
    assert [p.to_dict() for p in trained.predict(tokens)] == [
        p.to_dict() for p in loaded.predict(tokens)
    ]


# --- options -----------------------------------------------------------------------------------


def test_ablation_options_on_the_command_line(tmp_path):
    args = build_parser().parse_args(
        ["train", "--train", "t.json", "--types", "ty.json", "--out", str(tmp_path)]
        + ["--neg-relation-kind", "weak", "--encoder-init", "frozen"]
        + ["--neg-entity-count", "5", "--neg-relation-count", "0"]
        + ["--relation-context", "none", "--pooling", "mean"]
    )
    config = build_config(args)
    assert (config.neg_relation_kind, config.encoder_init) == ("weak", "frozen")
    assert (config.neg_entity_count, config.neg_relation_count) == (5, 0)
    assert (config.relation_context, config.pooling) == ("none", "mean")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"neg_relation_kind": "medium"}, "neg_relation_kind must be one of strong, weak"),
        ({"encoder_init": "scratch"}, "encoder_init must be one of pretrained, random, frozen"),
        ({"neg_entity_count": -1}, "neg_entity_count must not be negative"),
        ({"neg_relation_count": -5}, "neg_relation_count must not be negative"),
    ],
)
def test_bad_ablation_options(change, needle):
    with pytest.raises(ConfigError, match=needle):
        SpertConfig(**change)


def test_candidate_spans_cover_weak_pool(bert_dir, sentences, types):
    """Negative spans of a weak sample are real candidates (not padding or out of range)."""
    cfg = SpertConfig(neg_entity_count=15, neg_relation_count=50, neg_relation_kind="weak")
    (encoded,) = encode(bert_dir, sentences[:1])
    sample = sample_training(sentences[0], encoded, types, cfg, np.random.default_rng(3))
    candidates = {tuple(s) for s in candidate_spans(encoded, cfg.max_span_size).tolist()}
    assert {tuple(s) for s in sample.spans.tolist()} <= candidates
