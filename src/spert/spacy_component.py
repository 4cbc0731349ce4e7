"""SpERT as a spaCy pipeline component: ``nlp.add_pipe("spert", config={"model": DIR})``.

The factory is registered through spaCy's ``spacy_factories`` entry point, so any pipeline
(``spacy.blank("en")`` included) finds it once spert is installed. Per Doc the component sets:

* ``doc.spans["spert"]``: every predicted entity (nested and overlapping ones included), each
  labelled with its type; ``doc.spans["spert"].attrs["scores"]`` holds their scores, in order;
* ``doc.ents``: the entities without overlaps, the higher score first (``set_ents``); entities
  set by an earlier component are kept and only non-overlapping ones are added, unless
  ``overwrite_ents`` is true;
* ``doc._.relations``: a list of :class:`SpacyRelation` (head and tail Span, label, score);
  a symmetric relation type (``symmetric`` is true) holds in both directions and is listed once.

Sentences come from the pipeline's own segmentation when it has one (parser, senter,
sentencizer); else the component splits the text as ``spert extract`` does. Whitespace tokens
are not words; sentences longer than the model's ``max_sentence_words`` are cut into pieces.
``nlp.pipe(texts, batch_size=N)`` predicts the sentences of N documents together.

Importing this module is light (spaCy imports it for every new pipeline): the model, and
torch with it, loads on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span

from spert.data import Sentence
from spert.data.text import split_sentences
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

#: The spaCy factory name.
FACTORY = "spert"
#: ``doc.spans`` key of the predicted entities.
SPANS_KEY = "spert"
#: The folder of the model inside a serialized pipeline's component directory.
MODEL_DIR = "model"


@dataclass(frozen=True)
class SpacyRelation:
    """A predicted relation between two entity Spans of one Doc."""

    head: Span
    tail: Span
    label: str
    score: float
    symmetric: bool = False


#: Where a Doc keeps its relations: plain values in ``doc.user_data``, so that the Doc still
#: serializes (``doc.to_bytes``, DocBin, ``nlp.pipe(n_process=...)``); ``doc._.relations``
#: builds the Spans from them.
_RELATIONS = ("spert", "relations")


def _get_relations(doc: Doc) -> list[SpacyRelation]:
    return [
        SpacyRelation(
            Span(doc, hs, he, label=hl), Span(doc, ts, te, label=tl), label, score, symmetric
        )
        for hs, he, hl, ts, te, tl, label, score, symmetric in doc.user_data.get(_RELATIONS, [])
    ]


def _set_relations(doc: Doc, relations: list[SpacyRelation]) -> None:
    doc.user_data[_RELATIONS] = [
        (r.head.start, r.head.end, r.head.label_, r.tail.start, r.tail.end, r.tail.label_)
        + (r.label, r.score, r.symmetric)
        for r in relations
    ]


if not Doc.has_extension("relations"):
    Doc.set_extension("relations", getter=_get_relations, setter=_set_relations)


@Language.factory(
    FACTORY,
    default_config={
        "model": None,
        "batch_size": None,
        "device": None,
        "spans_key": SPANS_KEY,
        "set_ents": True,
        "overwrite_ents": False,
    },
)
def make_spert(
    nlp: Language,
    name: str,
    model: str | None,
    batch_size: int | None,
    device: str | None,
    spans_key: str,
    set_ents: bool,
    overwrite_ents: bool,
) -> SpertComponent:
    """The ``spert`` component: ``model`` is a model directory (None: the default model of
    ``spert demo``); ``batch_size`` sentences per encoder pass (None: the model's)."""
    return SpertComponent(nlp, name, model, batch_size, device, spans_key, set_ents, overwrite_ents)


class SpertComponent:
    """Entities into ``doc.spans`` and ``doc.ents``, relations into ``doc._.relations``."""

    def __init__(
        self,
        nlp: Language,
        name: str = FACTORY,
        model: str | Path | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        spans_key: str = SPANS_KEY,
        set_ents: bool = True,
        overwrite_ents: bool = False,
    ) -> None:
        self.name = name
        self.model_path = model
        self.batch_size = batch_size
        self.device = device
        self.spans_key = spans_key
        self.set_ents = set_ents
        self.overwrite_ents = overwrite_ents
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The SpERT model, loaded on first use."""
        if self._model is None:
            # torch loads here, not when spaCy imports the factory.
            from spert.api import SpERT

            self._model = SpERT.load(self.model_path, device=self.device)
        return self._model

    # -- prediction ----------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        """Predict the sentences of ``batch_size`` Docs at a time, in one model call."""
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._predict(batch)
                batch = []
        if batch:
            yield from self._predict(batch)

    def _predict(self, docs: list[Doc]) -> list[Doc]:
        model = self.model
        max_words = model.inference.max_sentence_words
        units = [(d, words) for d, doc in enumerate(docs) for words in _sentences(doc, max_words)]
        inputs = [Sentence([docs[d][i].text for i in words], doc_id=d) for d, words in units]
        predicted = model.predict(inputs, batch_size=self.batch_size) if inputs else []
        found: list[list[tuple[Span, float]]] = [[] for _ in docs]
        relations: list[list[SpacyRelation]] = [[] for _ in docs]
        symmetric = model.types.symmetric
        for (d, words), sentence in zip(units, predicted):
            doc = docs[d]
            spans = [
                (Span(doc, words[e.start], words[e.end - 1] + 1, label=e.type), _score(e.score))
                for e in sentence.entities
            ]
            found[d].extend(spans)
            relations[d].extend(
                SpacyRelation(
                    spans[r.head][0],
                    spans[r.tail][0],
                    r.type,
                    _score(r.score),
                    r.type in symmetric,
                )
                for r in sentence.relations
            )
        for doc, spans, doc_relations in zip(docs, found, relations):
            _annotate(doc, spans, doc_relations, self.spans_key, self.set_ents, self.overwrite_ents)
        return docs

    # -- serialization (nlp.to_disk / spacy.load) ----------------------------------------
    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        self.model.save(Path(path) / MODEL_DIR)

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> SpertComponent:
        self.model_path = Path(path) / MODEL_DIR
        self._model = None
        return self


def _annotate(
    doc: Doc,
    spans: list[tuple[Span, float]],
    relations: list[SpacyRelation],
    spans_key: str,
    set_ents: bool,
    overwrite_ents: bool,
) -> None:
    """Set the entities (with their scores) and relations on ``doc``, as the component does."""
    doc.spans[spans_key] = [span for span, _ in spans]
    doc.spans[spans_key].attrs["scores"] = [score for _, score in spans]
    doc._.relations = relations
    if set_ents:
        by_score = [span for span, _ in sorted(spans, key=lambda item: -item[1])]
        doc.ents = _no_overlaps([] if overwrite_ents else list(doc.ents), by_score)


def _score(score: float | None) -> float:
    return float(score) if score is not None else 1.0


def _no_overlaps(first: list[Span], candidates: list[Span]) -> list[Span]:
    """``first`` and then each candidate that overlaps none kept so far, sorted by position."""
    kept = list(first)
    taken = {i for span in first for i in range(span.start, span.end)}
    for span in candidates:
        if not taken.intersection(range(span.start, span.end)):
            kept.append(span)
            taken.update(range(span.start, span.end))
    return sorted(kept, key=lambda span: span.start)


def _sentences(doc: Doc, max_words: int) -> Iterator[list[int]]:
    """The token indices of each sentence's words (whitespace tokens left out), pieces of at
    most ``max_words``: the Doc's own sentences if it has them, else split as spert does."""
    if doc.has_annotation("SENT_START"):
        groups: Iterable[list[int]] = ([t.i for t in sent] for sent in doc.sents)
    else:
        groups = _split_like_spert(doc)
    for group in groups:
        words = [i for i in group if not doc[i].is_space]
        for start in range(0, len(words), max_words):
            yield words[start : start + max_words]


def _split_like_spert(doc: Doc) -> Iterator[list[int]]:
    """The Doc's tokens grouped by the sentences ``spert extract`` finds in its text."""
    bounds = [s.end for s in split_sentences(doc.text, max_words=1_000_000)]
    group: list[int] = []
    b = 0
    for token in doc:
        while b < len(bounds) and token.idx >= bounds[b]:
            if group:
                yield group
                group = []
            b += 1
        group.append(token.i)
    if group:
        yield group


# -- spaCy Doc <-> spert results -------------------------------------------------------------
def document_to_doc(vocab: Any, document: Document, spans_key: str = SPANS_KEY) -> Doc:
    """A :class:`spert.results.Document` (``SpERT.extract``'s result) as a spaCy Doc with the
    annotations the component sets: sentences, ``doc.spans``, ``doc.ents``, ``doc._.relations``."""
    words, spaces, sent_starts = [], [], []
    offsets = [o for s in document.sentences for o in s.token_offsets]
    for s in document.sentences:
        for k, token in enumerate(s.tokens):
            words.append(token)
            sent_starts.append(k == 0)
    for (_, end), (start, _) in zip(offsets, offsets[1:]):
        spaces.append(start > end)
    spaces.append(False)
    doc = Doc(vocab, words=words, spaces=spaces[: len(words)], sent_starts=sent_starts)
    spans: list[tuple[Span, float]] = []
    relations: list[SpacyRelation] = []
    first = 0
    for s in document.sentences:
        local = [
            (Span(doc, first + e.token_start, first + e.token_end, label=e.type), e.score)
            for e in s.entities
        ]
        spans.extend(local)
        relations.extend(
            SpacyRelation(local[r.head][0], local[r.tail][0], r.type, r.score) for r in s.relations
        )
        first += len(s.tokens)
    _annotate(doc, spans, relations, spans_key, set_ents=True, overwrite_ents=True)
    return doc


def doc_to_document(doc: Doc, spans_key: str = SPANS_KEY) -> Document:
    """A processed Doc as a :class:`spert.results.Document` (one sentence per Doc sentence
    holding entities), e.g. for ``spert visualize``'s pages with relation arcs."""
    spans = list(doc.spans[spans_key]) if spans_key in doc.spans else []
    scores = doc.spans[spans_key].attrs.get("scores", []) if spans_key in doc.spans else []
    score_of = {(s.start, s.end, s.label_): float(x) for s, x in zip(spans, scores)}
    sentences = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
    out = Document(doc.text)
    relations = doc._.relations
    for sent in sentences:
        words = [t for t in sent if not t.is_space]
        index = {t.i: k for k, t in enumerate(words)}
        ents = [s for s in spans if sent.start <= s.start and s.end <= sent.end]
        position = {(s.start, s.end, s.label_): k for k, s in enumerate(ents)}
        entities = [
            ExtractedEntity(
                s.label_,
                s.text,
                s.start_char,
                s.end_char,
                index[s.start],
                index[s.end - 1] + 1,
                score_of.get((s.start, s.end, s.label_), 1.0),
            )
            for s in ents
        ]
        rels = [
            ExtractedRelation(
                r.label,
                position[(r.head.start, r.head.end, r.head.label_)],
                position[(r.tail.start, r.tail.end, r.tail.label_)],
                r.score,
            )
            for r in relations
            if (r.head.start, r.head.end, r.head.label_) in position
            and (r.tail.start, r.tail.end, r.tail.label_) in position
        ]
        out.sentences.append(
            ExtractedSentence(
                sent.text,
                sent.start_char,
                sent.end_char,
                [t.text for t in words],
                [(t.idx, t.idx + len(t.text)) for t in words],
                entities,
                rels,
            )
        )
    return out
