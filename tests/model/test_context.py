"""Document context (``context_words``): encoding, prediction, extraction and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spert.api import SpERT, sentences_in_context
from spert.config import ConfigError, SpertConfig
from spert.data import DataError, Entity, Relation, Sentence, Types, document_contexts
from spert.data.text import split_sentences
from spert.model.candidates import candidate_spans, collate, enumerate_spans
from spert.model.encoding import SentenceEncoder
from spert.results import Document
from spert.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def documents() -> list[Sentence]:
    """Three documents (A, B, 3) and a sentence without one; sentences of several lengths."""
    a = [
        "Mary works for Acme Corp in Boston .",
        "Booth was an actor .",
        "Mary lives in Cambridge .",
    ]
    rows = [(s, "A") for s in a]
    rows += [("The Ministry of Health in Paris hired Dr. Smith last year .", "B")]
    rows += [("Mary works for Acme Corp .", None)]
    rows += [("Smith lives in Paris .", 3), ("John Wilkes Booth , who assassinated Lincoln .", 3)]
    return [Sentence(text.split(), orig_id=i, doc_id=d) for i, (text, d) in enumerate(rows)]


def make_spert(types: Types, bert_dir: Path, context_words: int, **config: object) -> SpERT:
    torch.manual_seed(0)
    spert = SpERT.create(
        types, SpertConfig(encoder=str(bert_dir), context_words=context_words, **config), "cpu"
    )
    with torch.no_grad():
        spert.model.entity_classifier.bias[0] = -3.0  # predict some entities
    return spert


def with_words(spert: SpERT, context_words: int) -> SpERT:
    """The same model (shared weights) with another ``context_words``."""
    config = spert.config.replace(context_words=context_words)
    return SpERT(spert.model, spert.tokenizer, spert.types, config, "cpu")


def ids_of(spert: SpERT, words: list[str]) -> list[int]:
    return spert.tokenizer(words, is_split_into_words=True)["input_ids"]


def scores(sentence: Sentence) -> list[float | None]:
    return [e.score for e in sentence.entities] + [r.score for r in sentence.relations]


def same_predictions(a: list[Sentence], b: list[Sentence]) -> bool:
    def key(s: Sentence) -> tuple:
        return (
            [e.span + (e.type,) for e in s.entities],
            [(r.type, r.head, r.tail) for r in s.relations],
        )

    return all(
        key(x) == key(y) and np.allclose(scores(x), scores(y), atol=1e-5)
        for x, y in zip(a, b, strict=True)
    )


def test_context_words_must_not_be_negative():
    with pytest.raises(ConfigError, match="context_words must not be negative"):
        SpertConfig(context_words=-1)
    assert SpertConfig().context_words == 0


def test_encode_reads_contexts_from_doc_ids(types, bert_dir):
    spert = make_spert(types, bert_dir, 3)
    data = documents()
    encoded = spert.encode(data)
    contexts = document_contexts(data, 3)
    assert contexts[1] == (["in", "Boston", "."], ["Mary", "lives", "in"])
    for e, s, (left, right) in zip(encoded, data, contexts, strict=True):
        assert e.windows == [ids_of(spert, left + s.tokens + right)]
        # The sentence's words are where they are in that sequence.
        assert e.word_starts[0] == 1 + len(left) and len(e.word_starts) == len(s.tokens)
    assert encoded[3].windows == [ids_of(spert, data[3].tokens)]  # a one-sentence document
    assert encoded[4].windows == [ids_of(spert, data[4].tokens)]  # no doc_id
    # context_words = 0: the sentences alone, doc_ids or not (the paper's).
    plain = with_words(spert, 0).encode(data)
    assert [e.windows for e in plain] == [[ids_of(spert, s.tokens)] for s in data]


def test_first_token_sees_the_context(types, bert_dir):
    spert = make_spert(types, bert_dir, 3)
    spert.model.eval()
    data = documents()[:3]
    with_context = spert.encode(data)
    alone = spert.sentence_encoder.encode([s.tokens for s in data])
    hidden = {}
    for name, encoded in (("context", with_context), ("alone", alone)):
        spans = [candidate_spans(e, 3) for e in encoded]
        batch = collate(encoded, spans, spert.pad_token_id)
        with torch.no_grad():
            hidden[name] = spert.model.encode(batch)
    # [CLS] (the sentence representation) and the sentence's own subwords differ with context.
    for b, (c, a) in enumerate(zip(with_context, alone, strict=True)):
        assert not torch.allclose(hidden["context"][b, 0], hidden["alone"][b, 0], atol=1e-4)
        word = int(c.word_starts[0]), int(a.word_starts[0])
        assert not torch.allclose(
            hidden["context"][b, word[0]], hidden["alone"][b, word[1]], atol=1e-4
        )


def test_predict_takes_contexts_before_length_bucketing(types, bert_dir):
    spert = make_spert(types, bert_dir, 4)
    data = documents()
    contexts = document_contexts(data, 4)
    seen = []
    for chunk, batch in spert.inference_batches(data, 2):
        for row, j in enumerate(chunk):
            ids = batch.window_input_ids[row][batch.window_attention_mask[row] > 0].tolist()
            left, right = contexts[j]
            assert ids == ids_of(spert, left + data[j].tokens + right), j
            seen.append(j)
    assert seen != sorted(seen)  # the batches did reorder the sentences
    assert sorted(seen) == list(range(len(data)))

    # Any batch size, and each document alone, give the same predictions: context comes from
    # the documents, not from the batches.
    predictions = spert.predict(data, batch_size=2)
    assert same_predictions(predictions, spert.predict(data, batch_size=8))
    per_document = [
        p for a, b in [(0, 3), (3, 4), (4, 5), (5, 7)] for p in spert.predict(data[a:b], 1)
    ]
    assert same_predictions(predictions, per_document)
    # ... and not the same as without context (same weights).
    plain = with_words(spert, 0).predict(data, batch_size=2)
    assert same_predictions(plain[3:5], predictions[3:5])  # sentences without context
    assert not same_predictions(plain[:3], predictions[:3])


def test_predict_a_share_with_the_contexts_of_the_whole(types, bert_dir):
    """As a process of a distributed evaluation does: every other sentence of the input."""
    spert = make_spert(types, bert_dir, 3)
    data = documents()
    whole = spert.predict(data)
    contexts = spert.document_contexts(data)
    assert contexts == document_contexts(data, 3)
    share = spert.predict(data[1::2], contexts=contexts[1::2])
    assert same_predictions(share, whole[1::2])
    # Without them the share's documents lack sentences: other contexts, other predictions.
    assert not same_predictions(spert.predict(data[1::2]), whole[1::2])
    # Longer contexts are cut to context_words; a model without context ignores them.
    longer = document_contexts(data, 6)
    assert longer != contexts
    assert same_predictions(spert.predict(data, contexts=longer), whole)
    plain = with_words(spert, 0)
    assert plain.document_contexts(data) is None
    assert same_predictions(plain.predict(data, contexts=contexts), plain.predict(data))
    with pytest.raises(DataError, match="2 contexts for 7 sentences"):
        spert.predict(data, contexts=contexts[:2])


def test_predict_with_context_keeps_spans_and_ids_inside_the_sentence(types, bert_dir):
    spert = make_spert(types, bert_dir, 8, relation_threshold=1.0, max_span_size=4)
    with torch.no_grad():
        spert.model.entity_classifier.bias[0] = -100.0  # every candidate span is an entity
    data = documents()
    as_dicts = [s.to_dict() for s in data]
    for inputs in (data, as_dicts):
        predictions = spert.predict(inputs, batch_size=3)
        for sentence, predicted in zip(data, predictions, strict=True):
            n = len(sentence.tokens)
            assert predicted.tokens == sentence.tokens
            assert (predicted.orig_id, predicted.doc_id) == (sentence.orig_id, sentence.doc_id)
            spans = sorted(e.span for e in predicted.entities)
            assert spans == sorted(map(tuple, enumerate_spans(n, 4).tolist()))
            assert all(0 <= e.start < e.end <= n for e in predicted.entities)


def test_predict_refuses_a_document_split_by_another(types, bert_dir):
    data = documents()
    shuffled = [data[0], data[3], data[1]]
    with pytest.raises(DataError, match="doc_id 'A' of sentence 2 .* must be consecutive"):
        make_spert(types, bert_dir, 2).predict(shuffled)
    with pytest.raises(DataError, match="record 0, field 'doc_id'"):
        make_spert(types, bert_dir, 2).predict([{"tokens": ["a"], "doc_id": 1.5}])
    assert len(make_spert(types, bert_dir, 0).predict(shuffled)) == 3  # no context: no check


def test_sentences_in_context_reads_ahead_lazily():
    text = "Mary works for Acme . Booth was an actor . Smith lives in Paris . He left ."
    sentences = list(split_sentences(text))
    assert len(sentences) == 4
    read = []

    def source():
        for s in sentences:
            read.append(s)
            yield s

    stream = sentences_in_context(source(), 3)
    first, context = next(stream)
    assert first is sentences[0] and context == ([], ["Booth", "was", "an"])
    assert len(read) == 2  # the next sentence held enough words
    second, context = next(stream)
    assert context == (["for", "Acme", "."], ["Smith", "lives", "in"])
    assert len(read) == 3
    rest = list(stream)
    assert [c for _, c in rest] == [
        (["an", "actor", "."], ["He", "left", "."]),
        (["in", "Paris", "."], []),
    ]
    assert [s for s, _ in sentences_in_context(sentences, 0)] == sentences
    assert all(c == ([], []) for _, c in sentences_in_context(sentences, 0))


def as_sentences(doc: Document) -> list[Sentence]:
    """Extracted sentences as predicted Sentences (token offsets, scores)."""
    return [
        Sentence(
            s.tokens,
            [Entity(e.type, e.token_start, e.token_end, e.score) for e in s.entities],
            [Relation(r.type, r.head, r.tail, r.score) for r in s.relations],
        )
        for s in doc.sentences
    ]


def test_extract_encodes_sentences_in_their_document(types, bert_dir):
    spert = make_spert(types, bert_dir, 5)
    # 40 sentences: with batch size 1, predicted in chunks of 32, so a chunk ends mid-document.
    text = " ".join(["Mary works for Acme Corp in Boston .", "Smith lives in Paris ."] * 20)
    other = "Booth was an actor . Mary lives in Cambridge ."
    docs = spert.extract([text, other], batch_size=1)
    assert len(docs[0].sentences) == 40
    for doc in docs:
        # As predicting the document's sentences with a doc_id.
        expected = spert.predict([Sentence(s.tokens, doc_id=0) for s in doc.sentences])
        assert same_predictions(as_sentences(doc), expected)
    # Without context the predictions differ (same weights).
    plain = with_words(spert, 0).extract(other)
    assert not same_predictions(as_sentences(plain), as_sentences(docs[1]))


def test_training_with_context_saves_loads_and_predicts(types, bert_dir, tmp_path, monkeypatch):
    data = [
        Sentence(
            "Mary works for Acme Corp in Boston .".split(),
            [Entity("Peop", 0, 1), Entity("Org", 3, 5), Entity("Loc", 6, 7)],
            [Relation("Work_For", 0, 1)],
            doc_id="d1",
        ),
        Sentence(
            "Mary lives in Cambridge .".split(),
            [Entity("Peop", 0, 1), Entity("Loc", 3, 4)],
            [Relation("Live_In", 0, 1)],
            doc_id="d1",
        ),
        Sentence(
            "John Wilkes Booth , who assassinated President Lincoln , was an actor .".split(),
            [Entity("Peop", 0, 3), Entity("Peop", 6, 8)],
            doc_id="d2",
        ),
        Sentence("Smith lives in Paris .".split(), [Entity("Peop", 0, 1)], doc_id="d2"),
    ]
    config = SpertConfig(
        encoder=str(bert_dir), epochs=1, neg_entity_count=10, context_words=2, lr=1e-3
    )
    calls = []
    encode = SentenceEncoder.encode

    def recording_encode(self, sentences, contexts=None):
        calls.append(([list(s) for s in sentences], contexts))
        return encode(self, sentences, contexts)

    monkeypatch.setattr(SentenceEncoder, "encode", recording_encode)
    result = train(config, data, types, tmp_path / "run", dev_data=data, progress=False)
    # Training encoded the training set (first call) with each sentence's neighbours' words.
    assert calls[0] == ([s.tokens for s in data], document_contexts(data, 2))
    assert calls[0][1][0] == ([], ["Mary", "lives"])
    # ... and so did the dev evaluation.
    assert all(c is not None for _, c in calls)
    loaded = SpERT.load(tmp_path / "run" / "final", device="cpu")
    assert loaded.config.context_words == 2
    predictions = loaded.predict(data)
    assert [p.doc_id for p in predictions] == ["d1", "d1", "d2", "d2"]
    assert same_predictions(predictions, result.model.predict(data))
