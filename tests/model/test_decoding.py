"""decode_batch against a direct recomputation of every span's and pair's probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from spert.api import SpERT
from spert.config import SpertConfig
from spert.data import Entity, Relation, Types
from spert.model.candidates import Batch, candidate_spans, collate
from spert.model.decoding import decode_batch
from spert.model.modeling import RangePooler

Decoded = list[tuple[list[Entity], list[Relation]]]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_spert(types: Types, config: SpertConfig, none_bias: float | None = -100.0) -> SpERT:
    """A random model in eval mode; a very negative "none" bias keeps every candidate span."""
    torch.manual_seed(0)
    spert = SpERT.create(types, config, "cpu")
    spert.model.eval()
    if none_bias is not None:
        with torch.no_grad():
            spert.model.entity_classifier.bias[0] = none_bias
    return spert


def inference_batch(spert: SpERT, token_lists: Sequence[Sequence[str]]) -> Batch:
    encoded = spert.sentence_encoder.encode(token_lists)
    spans = [candidate_spans(e, spert.config.max_span_size) for e in encoded]
    return collate(encoded, spans, spert.pad_token_id)


def decode(spert: SpERT, batch: Batch, threshold: float, max_pairs: int = 1000) -> Decoded:
    return decode_batch(spert.model, batch, spert.types, threshold, max_pairs)


SYMMETRIC = {"Spouse"}  # the symmetric type of the `types` fixture


def reference(spert: SpERT, batch: Batch, threshold: float) -> Decoded:
    """Entities and relations computed span by span and pair by pair."""
    model, types = spert.model, spert.types
    with torch.no_grad():
        hidden = model.encode(batch)
        pooler = RangePooler(hidden, model.config.pooling)
        spans = model.span_representations(pooler, batch)
        probs = model.entity_logits(spans, hidden[:, 0], batch.span_batch).softmax(-1)
    out: Decoded = []
    for b in range(batch.num_sentences):
        index = [i for i in range(len(batch.span_batch)) if batch.span_batch[i] == b]
        kept = sorted(
            (tuple(batch.span_words[i].tolist()), i) for i in index if probs[i].argmax() > 0
        )
        entities = [
            Entity(types.entities[int(probs[i].argmax()) - 1], start, end, float(probs[i].max()))
            for (start, end), i in kept
        ]
        relations = []
        for h, (_, i) in enumerate(kept):
            for t, (_, j) in enumerate(kept):
                if h == t:
                    continue
                # The arguments' predicted types (used with relation_type_dim > 0).
                predicted = torch.stack([probs[i, 1:].argmax(), probs[j, 1:].argmax()]) + 1
                with torch.no_grad():
                    logits = model.relation_logits(
                        pooler, spans, hidden[:, 0], batch, torch.tensor([[i, j]]), predicted[None]
                    )
                for r, p in enumerate(logits.sigmoid()[0].tolist()):
                    if p > threshold:
                        relations.append(Relation(types.relation_names[r], h, t, p))
        # A symmetric relation predicted both ways is kept once, in its higher-scoring direction.
        best: dict[tuple[str, int, int], Relation] = {}
        for rel in relations:
            symmetric = rel.type in types.symmetric
            k = (
                (rel.type, *sorted((rel.head, rel.tail)))
                if symmetric
                else (rel.type, rel.head, rel.tail)
            )
            if k not in best or rel.score > best[k].score:
                best[k] = rel
        out.append((entities, list(best.values())))
    return out


def assert_same(decoded: Decoded, expected: Decoded, abs_tol: float = 2e-6) -> None:
    assert len(decoded) == len(expected)
    for (entities, relations), (ref_entities, ref_relations) in zip(decoded, expected, strict=True):
        assert [(e.type, e.start, e.end) for e in entities] == [
            (e.type, e.start, e.end) for e in ref_entities
        ]
        assert [e.score for e in entities] == pytest.approx(
            [e.score for e in ref_entities], abs=abs_tol
        )

        # Of a symmetric relation's two near-tied directions either may be kept.
        def key(r: Relation) -> tuple[int, int, str]:
            if r.type in SYMMETRIC:
                return (min(r.head, r.tail), max(r.head, r.tail), r.type)
            return (r.head, r.tail, r.type)

        # In the reference's order: pairs by head, then tail, then type (a symmetric fact where
        # its first direction stands), as decoding has always listed them.
        assert [key(r) for r in relations] == [key(r) for r in ref_relations]
        got, want = sorted(relations, key=key), sorted(ref_relations, key=key)
        assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=abs_tol)


def check_valid(
    decoded: Decoded,
    token_lists: Sequence[Sequence[str]],
    types: Types,
    config: SpertConfig,
    threshold: float,
) -> None:
    for (entities, relations), tokens in zip(decoded, token_lists, strict=True):
        spans = [(e.start, e.end) for e in entities]
        assert spans == sorted(spans) and len(set(spans)) == len(spans)
        for e in entities:
            assert e.type in types.entities
            assert 0 <= e.start < e.end <= len(tokens)
            assert e.end - e.start <= config.max_span_size
            assert e.score is not None and 0 < e.score <= 1
        for r in relations:
            assert r.type in types.relation_names
            assert 0 <= r.head < len(entities) and 0 <= r.tail < len(entities)
            assert r.head != r.tail
            assert r.score is not None and threshold < r.score <= 1


@pytest.mark.parametrize("relation_type_dim", [0, 4])
def test_decode_matches_reference(types, sentences, tiny_config, relation_type_dim):
    config = tiny_config.replace(max_span_size=2, relation_type_dim=relation_type_dim)
    spert = make_spert(types, config)
    tokens = [s.tokens for s in sentences]
    batch = inference_batch(spert, tokens)
    decoded = decode(spert, batch, 0.5)
    check_valid(decoded, tokens, types, config, 0.5)
    assert all(entities for entities, _ in decoded)
    assert any(relations for _, relations in decoded)
    # Every candidate span is kept (none bias -100): one entity per candidate.
    counts = torch.bincount(batch.span_batch, minlength=len(tokens)).tolist()
    assert [len(entities) for entities, _ in decoded] == counts
    assert_same(decoded, reference(spert, batch, 0.5))


def test_decode_matches_reference_with_some_spans_dropped(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(max_span_size=4), none_bias=None)
    with torch.no_grad():  # a "none" bias that drops some spans and keeps others
        spert.model.entity_classifier.bias[0] = 0.0
        spert.model.entity_classifier.weight[0].normal_(0, 1.0)
    tokens = [s.tokens for s in sentences]
    batch = inference_batch(spert, tokens)
    decoded = decode(spert, batch, 0.3)
    n_kept = sum(len(entities) for entities, _ in decoded)
    assert 0 < n_kept < len(batch.span_batch)
    check_valid(decoded, tokens, types, spert.config, 0.3)
    assert_same(decoded, reference(spert, batch, 0.3))


def test_threshold_one_gives_no_relations(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config)
    with torch.no_grad():  # even certain relations are not above 1.0
        spert.model.relation_classifier.bias.fill_(50.0)
    decoded = decode(spert, inference_batch(spert, [s.tokens for s in sentences]), 1.0)
    assert all(entities for entities, _ in decoded)
    assert all(not relations for _, relations in decoded)


def test_no_entities_no_relations(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config, none_bias=100.0)
    decoded = decode(spert, inference_batch(spert, [s.tokens for s in sentences]), 0.0)
    assert decoded == [([], [])] * len(sentences)


def test_chunking_does_not_change_output(types, sentences, tiny_config):
    spert = make_spert(types, tiny_config.replace(max_span_size=3))
    batch = inference_batch(spert, [s.tokens for s in sentences])
    one = decode(spert, batch, 0.5, max_pairs=1)
    many = decode(spert, batch, 0.5, max_pairs=1000)
    seven = decode(spert, batch, 0.5, max_pairs=7)
    assert sum(len(relations) for _, relations in many) > 10
    assert_same(one, many)
    assert_same(seven, many)


@pytest.mark.parametrize("max_span_size", [1, 3])
def test_long_spans_are_never_predicted(types, sentences, tiny_config, max_span_size):
    config = tiny_config.replace(max_span_size=max_span_size)
    spert = make_spert(types, config)
    tokens = [s.tokens for s in sentences]
    decoded = decode(spert, inference_batch(spert, tokens), 0.5)
    check_valid(decoded, tokens, types, config, 0.5)
    widths = {e.end - e.start for entities, _ in decoded for e in entities}
    assert widths == set(range(1, max_span_size + 1))
    for (entities, _), words in zip(decoded, tokens, strict=True):
        n = len(words)  # every word has subwords here: all spans up to the limit are kept
        assert len(entities) == sum(n - w + 1 for w in range(1, max_span_size + 1))


def test_words_without_subwords(types, tiny_config):
    """More words than subwords (zero-width words): sentences and numbering stay right."""
    spert = make_spert(types, tiny_config)
    zw = "\u200b"  # BERT's tokenizer drops it: a word with no subwords
    tokens = [
        [zw] * 12 + ["Mary"],
        [zw] * 13 + ["Mary", zw, "works"],
        ["Mary", zw, "works", "in", "Boston"],
        [zw],
    ]
    encoded = spert.sentence_encoder.encode(tokens)
    assert encoded[1].seq_len < len(tokens[1])
    batch = inference_batch(spert, tokens)
    decoded = decode(spert, batch, 0.3)
    check_valid(decoded, tokens, types, tiny_config, 0.3)
    assert decoded[3] == ([], [])
    assert all(entities for entities, _ in decoded[:3])
    for (entities, _), words in zip(decoded, tokens, strict=True):
        # No entity is made only of words without subwords.
        assert all(any(w != zw for w in words[e.start : e.end]) for e in entities)
    assert_same(decoded, reference(spert, batch, 0.3))
    # Decoding each sentence alone gives the same result as decoding them together.
    for i, words in enumerate(tokens):
        alone = decode(spert, inference_batch(spert, [words]), 0.3)
        assert_same(alone, decoded[i : i + 1])


def test_decoding_uses_the_predicted_types(types, sentences, tiny_config):
    """The same kept spans, typed otherwise: the relation scores follow the types with
    relation_type_dim, and only with it."""
    tokens = [s.tokens for s in sentences]
    for dim in (0, 4):
        spert = make_spert(types, tiny_config.replace(max_span_size=2, relation_type_dim=dim))
        batch = inference_batch(spert, tokens)
        scores = []
        for favoured in (1, 3):  # every span a Peop, then every span a Loc
            with torch.no_grad():
                spert.model.entity_classifier.bias[1:] = 0.0
                spert.model.entity_classifier.bias[favoured] = 100.0
            decoded = decode(spert, batch, 0.0)  # every pair's scores
            assert {e.type for entities, _ in decoded for e in entities} == {
                types.entities[favoured - 1]
            }
            scores.append([r.score for _, relations in decoded for r in relations])
        assert len(scores[0]) == len(scores[1]) > 0
        if dim:
            assert scores[0] != pytest.approx(scores[1])
        else:
            assert scores[0] == pytest.approx(scores[1])
