"""The spaCy component: entities in doc.spans and doc.ents, relations in doc._.relations,
sentences, batching across documents, serialization, displaCy, and Doc <-> results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy import displacy
from spacy.tokens import Doc

from spert.api import SpERT
from spert.config import SpertConfig
from spert.data import RelationType, Types
from spert.render.pages import render_documents
from spert.spacy_component import SPANS_KEY, doc_to_document, document_to_doc

TYPES = Types(
    entities=("Peop", "Org", "Loc"),
    relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
)
TEXTS = [
    "Mary Jones works for Acme Corp in Boston. She lives in Cambridge.",
    "John Smith met Anna in Paris.",
    "The Ministry of Health hired Dr. Smith last year.",
    "Berlin is big.",
    "Nothing to see here.",
    "Acme Corp moved to Denver. Its chief executive lives in Boulder.",
    "Peter and Paul went to Rome.",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path) -> Path:
    """An untrained tiny model that keeps a few entities and relations (the "none" class and
    the relation scores are pushed so that some, not all, spans and pairs are kept)."""
    torch.manual_seed(0)
    config = SpertConfig(encoder=str(bert_dir), max_span_size=3, max_sentence_words=8)
    model = SpERT.create(TYPES, config, "cpu")
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = 1.0
        model.model.relation_classifier.bias.fill_(0.5)
    path = tmp_path_factory.mktemp("spacy") / "model"
    model.save(path)
    return path


def pipeline(model_dir: Path, sentencizer: bool = False, **config) -> spacy.Language:
    nlp = spacy.blank("en")
    if sentencizer:
        nlp.add_pipe("sentencizer")
    nlp.add_pipe("spert", config={"model": str(model_dir), **config})
    return nlp


def spans_of(doc) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.label_) for s in doc.spans[SPANS_KEY]]


def test_the_factory_is_found_through_the_entry_point() -> None:
    """A fresh interpreter that never imported spert finds "spert" (spaCy loads it)."""
    code = "import spacy; nlp = spacy.blank('en'); print(nlp.has_factory('spert'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_entities_nested_scores_and_ents_without_overlaps(model_dir: Path) -> None:
    nlp = pipeline(model_dir)
    doc = nlp(TEXTS[0])
    spans = list(doc.spans[SPANS_KEY])
    scores = doc.spans[SPANS_KEY].attrs["scores"]
    assert spans and len(scores) == len(spans)
    assert all(s.label_ in TYPES.entities and 0.0 <= x <= 1.0 for s, x in zip(spans, scores))
    overlapping = [
        (a, b) for a in spans for b in spans if a is not b and a.start < b.end and b.start < a.end
    ]
    assert overlapping  # nested and overlapping spans are all kept in doc.spans
    ents = list(doc.ents)
    assert ents
    for a, b in zip(ents, ents[1:]):
        assert a.end <= b.start
    assert {(e.start, e.end, e.label_) for e in ents} <= set(spans_of(doc))
    # Every entity left out of doc.ents overlaps one kept with at least its score.
    score_of = {(s.start, s.end, s.label_): x for s, x in zip(spans, scores)}
    kept = {(e.start, e.end, e.label_) for e in ents}
    for key, score in score_of.items():
        if key not in kept:
            assert any(k[0] < key[1] and key[0] < k[1] and score_of[k] >= score for k in kept)


def test_relations_hold_spans_of_the_doc(model_dir: Path) -> None:
    doc = pipeline(model_dir)(TEXTS[0])
    assert doc._.relations
    spans = set(spans_of(doc))
    for r in doc._.relations:
        assert r.label in TYPES.relation_names
        assert (r.head.start, r.head.end, r.head.label_) in spans
        assert (r.tail.start, r.tail.end, r.tail.label_) in spans
        assert r.symmetric == (r.label == "Spouse")


def test_relations_survive_doc_serialization(model_dir: Path) -> None:
    nlp = pipeline(model_dir)
    doc = nlp(TEXTS[0])
    again = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    relations = [(r.head.text, r.tail.text, r.label, r.score) for r in doc._.relations]
    assert (
        relations
        and [(r.head.text, r.tail.text, r.label, r.score) for r in again._.relations] == relations
    )
    assert spans_of(again) == spans_of(doc)


def test_sentences_come_from_the_pipeline_when_it_has_them(model_dir: Path) -> None:
    text = TEXTS[0]
    with_sentencizer = pipeline(model_dir, sentencizer=True)(text)
    sentences = [(s.start, s.end) for s in with_sentencizer.sents]
    assert len(sentences) == 2
    for start, end, _ in spans_of(with_sentencizer):
        assert any(a <= start and end <= b for a, b in sentences)
    for r in with_sentencizer._.relations:  # relations stay inside a sentence
        assert any(a <= r.head.start and r.tail.end <= b for a, b in sentences) or any(
            a <= r.tail.start and r.head.end <= b for a, b in sentences
        )
    # Without a segmenter the component splits as spert extract does: the same sentences.
    plain = pipeline(model_dir)(text)
    assert spans_of(plain) == spans_of(with_sentencizer)


def test_pipe_keeps_order_and_batches_across_documents(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    load = SpERT.load.__func__

    def counting_load(cls, path=None, *args, **kwargs):
        loads.append(path)
        return load(cls, path, *args, **kwargs)

    monkeypatch.setattr(SpERT, "load", classmethod(counting_load))
    nlp = pipeline(model_dir)
    one_by_one = [spans_of(nlp(text)) for text in TEXTS]
    calls: list[int] = []
    predict = SpERT.predict

    def counting(self, sentences, *args, **kwargs):
        calls.append(len(sentences))
        return predict(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SpERT, "predict", counting)
    docs = list(nlp.pipe(TEXTS, batch_size=3))
    assert [spans_of(d) for d in docs] == one_by_one
    assert [d.text for d in docs] == TEXTS
    assert len(calls) == 3  # 7 documents in batches of 3: one model call per batch
    assert len(loads) == 1  # the model is loaded once, for the first document


def test_ents_of_an_earlier_component_are_kept_unless_overwritten(model_dir: Path) -> None:
    def nlp_with_ruler(overwrite: bool) -> spacy.Language:
        nlp = spacy.blank("en")
        ruler = nlp.add_pipe("entity_ruler")
        ruler.add_patterns([{"label": "CITY", "pattern": "Boston"}])
        nlp.add_pipe("spert", config={"model": str(model_dir), "overwrite_ents": overwrite})
        return nlp

    kept = nlp_with_ruler(False)(TEXTS[0])
    assert any(e.label_ == "CITY" and e.text == "Boston" for e in kept.ents)
    assert any(e.label_ in TYPES.entities for e in kept.ents)
    replaced = nlp_with_ruler(True)(TEXTS[0])
    assert all(e.label_ in TYPES.entities for e in replaced.ents)


def test_to_disk_and_spacy_load_round_trip(model_dir: Path, tmp_path: Path) -> None:
    nlp = pipeline(model_dir, sentencizer=True)
    before = [spans_of(d) for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["sentencizer", "spert"]
    assert [spans_of(d) for d in loaded.pipe(TEXTS)] == before


def test_displacy_shows_the_entities(model_dir: Path) -> None:
    doc = pipeline(model_dir)(TEXTS[0])
    ent_html = displacy.render(doc, style="ent")
    assert all(e.label_ in ent_html for e in doc.ents)
    span_html = displacy.render(doc, style="span", options={"spans_key": SPANS_KEY})
    assert all(s.label_ in span_html for s in doc.spans[SPANS_KEY])


def test_doc_to_results_and_back(model_dir: Path) -> None:
    nlp = pipeline(model_dir, sentencizer=True)
    doc = nlp(TEXTS[0])
    document = doc_to_document(doc)
    assert sum(len(s.entities) for s in document.sentences) == len(doc.spans[SPANS_KEY])
    assert sum(len(s.relations) for s in document.sentences) == len(doc._.relations)
    for sentence in document.sentences:
        for e in sentence.entities:
            assert document.text[e.start : e.end] == e.text
    page = render_documents([document])
    assert page.count('class="rel-item') == len(doc._.relations)  # arcs for the relations
    back = document_to_doc(nlp.vocab, document)
    assert [t.text for t in back] == [t.text for t in doc]
    assert spans_of(back) == spans_of(doc)
    assert [(r.head.start, r.tail.start, r.label) for r in back._.relations] == [
        (r.head.start, r.tail.start, r.label) for r in doc._.relations
    ]
    # SpERT.extract's own result converts the same way.
    extracted = SpERT.load(model_dir).extract(TEXTS[0])
    converted = document_to_doc(nlp.vocab, extracted)
    assert converted.text == extracted.text
    assert [(s.start_char, s.end_char, s.label_) for s in converted.spans[SPANS_KEY]] == [
        (e.start, e.end, e.type) for e in extracted.entities
    ]
