"""Span enumeration, training samples (gold + negatives) and batch collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spert.config import SpertConfig
from spert.data import Entity, Relation, Sentence, Types
from spert.model.candidates import (
    TrainingSample,
    candidate_spans,
    collate,
    enumerate_spans,
    sample_training,
)
from spert.model.encoding import EncodedSentence, SentenceEncoder, load_tokenizer

BIG = 10_000


def encode(bert_dir: Path, sentences: list[Sentence], max_length: int = BIG):
    return SentenceEncoder(load_tokenizer(bert_dir), max_length).encode(
        [s.tokens for s in sentences]
    )


def config(bert_dir: Path, **overrides) -> SpertConfig:
    values = {"neg_entity_count": 20, "neg_relation_count": 20, "max_span_size": 10}
    values.update(overrides)
    return SpertConfig(encoder=str(bert_dir), **values)


def as_set(spans: np.ndarray) -> set[tuple[int, int]]:
    return {(int(a), int(b)) for a, b in spans.reshape(-1, 2)}


# --- enumerate_spans / candidate_spans -------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 1), (5, 1), (5, 3), (5, 5), (4, 10), (12, 10)])
def test_enumerate_spans(n: int, m: int):
    spans = enumerate_spans(n, m)
    assert spans.shape == (sum(n - w + 1 for w in range(1, min(n, m) + 1)), 2)
    assert spans.dtype.kind == "i"
    widths = spans[:, 1] - spans[:, 0]
    assert set(widths.tolist()) == set(range(1, min(n, m) + 1))
    assert widths.max() <= m
    assert np.all(spans[:, 0] >= 0) and np.all(spans[:, 1] <= n)
    assert len(as_set(spans)) == len(spans)  # no duplicates
    # Exactly every span of up to m words.
    assert as_set(spans) == {(s, s + w) for w in range(1, min(n, m) + 1) for s in range(n - w + 1)}
    # Ordered by width, then start.
    assert spans.tolist() == sorted(spans.tolist(), key=lambda s: (s[1] - s[0], s[0]))


def test_enumerate_spans_includes_nested_and_overlapping():
    spans = as_set(enumerate_spans(4, 3))
    assert {(0, 3), (0, 1), (1, 2), (1, 3)} <= spans  # nested in (0, 3)
    assert {(0, 2), (1, 3)} <= spans  # overlapping
    assert (0, 4) not in spans  # longer than m


def test_enumerate_spans_of_empty_sentence():
    assert enumerate_spans(0, 5).shape == (0, 2)


def test_candidate_spans_drop_spans_without_subwords(bert_dir):
    words = ["\u200b", "Mary", "\x07", "\u200b", "works", "\u200b"]
    (encoded,) = SentenceEncoder(load_tokenizer(bert_dir), BIG).encode([words])
    spans = as_set(candidate_spans(encoded, 3))
    empty = {0, 2, 3, 5}
    every = as_set(enumerate_spans(len(words), 3))
    expected = {(s, e) for s, e in every if not set(range(s, e)) <= empty}
    assert spans == expected
    assert (2, 4) not in spans and (0, 1) not in spans and (5, 6) not in spans
    assert {(0, 2), (1, 3), (2, 5), (3, 6)} <= spans
    # All kept spans have subwords.
    bounds = encoded.subword_bounds(candidate_spans(encoded, 3))
    assert np.all(bounds[:, 1] > bounds[:, 0])


def test_candidate_spans_of_plain_sentence(bert_dir, sentences):
    (encoded,) = encode(bert_dir, sentences[:1])
    np.testing.assert_array_equal(candidate_spans(encoded, 4), enumerate_spans(12, 4))


# --- sample_training -------------------------------------------------------------------------


def gold_pairs(sentence: Sentence) -> dict[tuple[int, int], set[str]]:
    out: dict[tuple[int, int], set[str]] = {}
    for r in sentence.relations:
        out.setdefault((r.head, r.tail), set()).add(r.type)
    return out


def check_sample(
    sample: TrainingSample,
    sentence: Sentence,
    types: Types,
    cfg: SpertConfig,
    encoded: EncodedSentence,
) -> None:
    n_gold = len(sentence.entities)
    gold = [e.span for e in sentence.entities]
    # Gold entities first, labelled 1 + type index; then negatives labelled 0.
    assert [tuple(s) for s in sample.spans[:n_gold].tolist()] == gold
    assert sample.entity_labels[:n_gold].tolist() == [
        1 + types.entities.index(e.type) for e in sentence.entities
    ]
    negatives = sample.spans[n_gold:]
    assert np.all(sample.entity_labels[n_gold:] == 0)
    available = as_set(candidate_spans(encoded, cfg.max_span_size)) - set(gold)
    assert len(negatives) == min(cfg.neg_entity_count, len(available))
    assert as_set(negatives) <= available
    assert len(as_set(negatives)) == len(negatives)
    assert sample.spans.shape == (len(sample.entity_labels), 2)

    # Relations: positives (multi-hot) then negatives (all zero).
    assert sample.relation_labels.shape == (len(sample.pairs), len(types.relations))
    assert set(np.unique(sample.relation_labels).tolist()) <= {0.0, 1.0}
    positive = sample.relation_labels.sum(axis=1) > 0
    n_pos = int(positive.sum())
    assert positive[:n_pos].all() and not positive[n_pos:].any()
    pos_pairs = [tuple(p) for p in sample.pairs[:n_pos].tolist()]
    neg_pairs = [tuple(p) for p in sample.pairs[n_pos:].tolist()]
    assert len(set(pos_pairs)) == n_pos and len(set(neg_pairs)) == len(neg_pairs)
    assert len(neg_pairs) <= cfg.neg_relation_count
    assert not set(pos_pairs) & set(neg_pairs)
    for head, tail in pos_pairs + neg_pairs:
        assert 0 <= head < n_gold and 0 <= tail < n_gold  # pairs of gold entities only
        assert gold[head] != gold[tail]


def test_sample_all_negatives_when_few(bert_dir, sentences, types):
    sentence = sentences[0]
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_entity_count=1000, neg_relation_count=1000)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    check_sample(sample, sentence, types, cfg, encoded)
    # 75 spans of up to 10 of the 12 words, less the 4 gold ones.
    assert len(sample.spans) == 4 + 71
    assert sample.pairs[:2].tolist() == [[0, 1], [0, 3]]
    assert sample.relation_labels[:2].tolist() == [[1, 0, 0], [0, 1, 0]]
    # Every other ordered pair of the 4 gold entities is a negative, reverses included.
    negatives = {tuple(p) for p in sample.pairs[2:].tolist()}
    expected = {(a, b) for a in range(4) for b in range(4) if a != b} - {(0, 1), (0, 3)}
    assert negatives == expected
    assert (1, 0) in negatives and (3, 0) in negatives  # not symmetric: reverse is negative


def test_sample_bounded_negatives(bert_dir, sentences, types):
    sentence = sentences[0]
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_entity_count=7, neg_relation_count=4)
    for seed in range(5):
        sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(seed))
        check_sample(sample, sentence, types, cfg, encoded)
        assert len(sample.spans) == 4 + 7
        assert len(sample.pairs) == 2 + 4


def test_sample_without_negatives(bert_dir, sentences, types):
    sentence = sentences[0]
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_entity_count=0, neg_relation_count=0)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    check_sample(sample, sentence, types, cfg, encoded)
    assert len(sample.spans) == 4 and len(sample.pairs) == 2


def test_symmetric_relation_is_positive_both_ways(bert_dir, sentences, types):
    sentence = sentences[1]  # Spouse(0, 1), Spouse is symmetric
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    check_sample(sample, sentence, types, cfg, encoded)
    assert sample.pairs.tolist() == [[0, 1], [1, 0]]
    assert sample.relation_labels.tolist() == [[0, 0, 1], [0, 0, 1]]


def test_symmetric_reverse_never_sampled_as_negative(bert_dir, types):
    sentence = Sentence(
        "Mary works for Acme Corp in Boston and lives in Cambridge .".split(),
        [Entity("Peop", 0, 1), Entity("Org", 3, 5), Entity("Loc", 6, 7), Entity("Peop", 10, 11)],
        [Relation("Spouse", 3, 0), Relation("Work_For", 0, 1)],
    )
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_relation_count=3)
    for seed in range(20):
        sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(seed))
        check_sample(sample, sentence, types, cfg, encoded)
        pos = [tuple(p) for p in sample.pairs[:3].tolist()]
        assert pos == [(3, 0), (0, 3), (0, 1)]
        negatives = {tuple(p) for p in sample.pairs[3:].tolist()}
        assert len(negatives) == 3
        assert not {(0, 3), (3, 0), (0, 1)} & negatives
    cfg = config(bert_dir, neg_relation_count=100)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    negatives = {tuple(p) for p in sample.pairs[3:].tolist()}
    assert (1, 0) in negatives  # Work_For is not symmetric
    assert len(negatives) == 12 - 3


def test_multi_hot_and_shared_spans(bert_dir, types):
    # Two relation types on one pair; two entities on one span count as one argument.
    sentence = Sentence(
        "Mary works for Acme Corp in Boston and lives in Cambridge .".split(),
        [Entity("Peop", 0, 1), Entity("Org", 3, 5), Entity("Loc", 3, 5), Entity("Loc", 10, 11)],
        [Relation("Work_For", 0, 1), Relation("Live_In", 0, 1), Relation("Live_In", 0, 2)],
    )
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_relation_count=100)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    check_sample(sample, sentence, types, cfg, encoded)
    assert sample.entity_labels[:4].tolist() == [1, 2, 3, 3]
    assert sample.pairs[0].tolist() == [0, 1]
    assert sample.relation_labels[0].tolist() == [1, 1, 0]
    assert (sample.relation_labels.sum(axis=1) > 0).sum() == 1
    negatives = {tuple(p) for p in sample.pairs[1:].tolist()}
    # Slot 2 shares slot 1's span: it is never an argument of its own.
    assert negatives == {(1, 0), (0, 3), (3, 0), (1, 3), (3, 1)}


def test_sentence_without_entities(bert_dir, sentences, types):
    sentence = sentences[2]
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir)
    sample = sample_training(sentence, encoded, types, cfg, np.random.default_rng(0))
    check_sample(sample, sentence, types, cfg, encoded)
    assert len(sample.spans) == 20 and sample.pairs.shape == (0, 2)
    assert sample.relation_labels.shape == (0, 3)


def test_seeded_samples_are_identical(bert_dir, sentences, types):
    sentence = sentences[0]
    (encoded,) = encode(bert_dir, [sentence])
    cfg = config(bert_dir, neg_entity_count=10, neg_relation_count=3)
    a = sample_training(sentence, encoded, types, cfg, np.random.default_rng(7))
    b = sample_training(sentence, encoded, types, cfg, np.random.default_rng(7))
    for field in ("spans", "entity_labels", "pairs", "relation_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    others = [
        sample_training(sentence, encoded, types, cfg, np.random.default_rng(seed))
        for seed in range(8, 12)
    ]
    assert any(not np.array_equal(a.spans, o.spans) for o in others)


# --- collate ---------------------------------------------------------------------------------


def long_sentence() -> Sentence:
    words = ("Mary works for Acme Corp in Boston and lives in Cambridge . " * 4).split()
    return Sentence(
        words,
        [Entity("Peop", 36, 37), Entity("Org", 39, 41), Entity("Loc", 2, 4)],
        [Relation("Work_For", 0, 1)],
    )


def test_collate_mixes_windowed_and_short_sentences(bert_dir, sentences, types):
    batch_sentences = [sentences[0], long_sentence(), sentences[1]]
    tokenizer = load_tokenizer(bert_dir)
    encoded = SentenceEncoder(tokenizer, 16).encode([s.tokens for s in batch_sentences])
    reference = SentenceEncoder(tokenizer, BIG).encode([s.tokens for s in batch_sentences])
    assert [len(e.windows) for e in encoded] == [1, 6, 1]  # 48 subwords, 14 a window

    cfg = config(bert_dir, neg_entity_count=6, neg_relation_count=3)
    rng = np.random.default_rng(0)
    samples = [
        sample_training(s, e, types, cfg, rng)
        for s, e in zip(batch_sentences, encoded, strict=True)
    ]
    spans = [s.spans for s in samples]
    batch = collate(encoded, spans, tokenizer.pad_token_id, samples)

    # Windows, padded.
    windows = [w for e in encoded for w in e.windows]
    assert batch.window_input_ids.shape == (len(windows), 16)
    for row, ids in enumerate(windows):
        assert batch.window_input_ids[row, : len(ids)].tolist() == ids
        assert batch.window_attention_mask[row].tolist() == [1] * len(ids) + [0] * (16 - len(ids))
        assert set(batch.window_input_ids[row, len(ids) :].tolist()) <= {tokenizer.pad_token_id}

    # token_index gathers each sentence's full sequence from the flat encoder outputs.
    flat = batch.window_input_ids.reshape(-1)
    assert batch.num_sentences == 3
    assert batch.token_index.shape == (3, max(r.seq_len for r in reference))
    for b, ref in enumerate(reference):
        ids = ref.windows[0]
        assert flat[batch.token_index[b, : len(ids)]].tolist() == ids
    # Same with stand-in hidden states: row r of the outputs holds r.
    hidden = torch.arange(flat.numel()).reshape(batch.window_input_ids.shape)
    gathered = hidden.reshape(-1)[batch.token_index[1]]
    assert len(set(gathered[: reference[1].seq_len].tolist())) == reference[1].seq_len

    # Spans are flat across the batch.
    sizes = [len(s) for s in spans]
    assert batch.span_batch.tolist() == [b for b, n in enumerate(sizes) for _ in range(n)]
    assert batch.span_words.tolist() == np.concatenate(spans).tolist()
    assert (
        batch.span_widths.tolist()
        == (np.concatenate(spans)[:, 1] - np.concatenate(spans)[:, 0]).tolist()
    )
    expected_bounds = np.concatenate(
        [e.subword_bounds(s) for e, s in zip(encoded, spans, strict=True)]
    )
    assert batch.span_bounds.tolist() == expected_bounds.tolist()
    assert (
        batch.entity_labels.tolist() == np.concatenate([s.entity_labels for s in samples]).tolist()
    )

    # Pairs point at the right sentence's spans.
    assert batch.pairs.shape == (sum(len(s.pairs) for s in samples), 2)
    assert batch.relation_labels.shape == (len(batch.pairs), 3)
    row = 0
    for b, sample in enumerate(samples):
        for (head, tail), labels in zip(sample.pairs, sample.relation_labels, strict=True):
            flat_head, flat_tail = batch.pairs[row].tolist()
            assert batch.span_batch[flat_head] == b and batch.span_batch[flat_tail] == b
            assert batch.span_words[flat_head].tolist() == sample.spans[head].tolist()
            assert batch.span_words[flat_tail].tolist() == sample.spans[tail].tolist()
            assert batch.relation_labels[row].tolist() == labels.tolist()
            row += 1
    assert row == len(batch.pairs)

    # A span's subword bounds index its own sentence's tokens.
    for i in range(len(batch.span_batch)):
        b = int(batch.span_batch[i])
        start, end = batch.span_bounds[i].tolist()
        s, e = batch.span_words[i].tolist()
        words = batch_sentences[b].tokens[s:e]
        pieces = tokenizer.convert_ids_to_tokens(flat[batch.token_index[b, start:end]].tolist())
        assert "".join(p.removeprefix("##") for p in pieces) == "".join(words)


def test_collate_for_inference(bert_dir, sentences):
    tokenizer = load_tokenizer(bert_dir)
    encoded = SentenceEncoder(tokenizer, BIG).encode([s.tokens for s in sentences])
    spans = [candidate_spans(e, 3) for e in encoded]
    batch = collate(encoded, spans, tokenizer.pad_token_id)
    assert batch.entity_labels is None and batch.pairs is None and batch.relation_labels is None
    assert len(batch.span_batch) == sum(len(s) for s in spans)
    assert batch.window_input_ids.shape[0] == 3
    assert batch.window_attention_mask.sum().item() == sum(e.seq_len for e in encoded)
    moved = batch.to(torch.device("cpu"))
    assert torch.equal(moved.span_bounds, batch.span_bounds) and moved.pairs is None
