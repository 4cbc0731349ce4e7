"""Raw text to predicted documents: documents in, sentences split (with their document
context), predicted in chunks, and put back together with character offsets.

:func:`extract_stream` is the streaming loop behind ``SpERT.extract``, ``spert extract`` and
the HTTP server's request preparation (:func:`document_input`, :func:`sentences_in_context`,
:func:`extracted_sentence`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from spert.data import Context, DataError, Sentence
from spert.data.text import TextSentence, join_tokens, split_sentences
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

#: What ``extract`` takes per document: a text, a token list (pre-tokenized), an ``(id, text)``
#: or ``(id, tokens)`` tuple, or a mapping with "text" or "tokens" and optionally "id".
DocumentInput = str | Sequence[str] | tuple[Any, str | Sequence[str]] | Mapping[str, Any]
#: Predicts tokenized sentences, with their document contexts (None: without context).
Predict = Callable[[Sequence[Sequence[str]], Sequence[Context] | None], list[Sentence]]
#: Sentences predicted at once by :func:`extract_stream`, in batches: the bound on what it holds.
BATCHES_PER_CHUNK = 32

_SURROGATE = re.compile("[\ud800-\udfff]")


def document_input(
    item: Any, index: int, max_words: int, doc_id: Any = None
) -> tuple[Any, str, Iterable[TextSentence]]:
    """(id, text, sentences) of one input document (see :data:`DocumentInput`); sentences
    longer than ``max_words`` words are cut. A DataError names the input by ``index``."""
    if isinstance(item, str):
        if _SURROGATE.search(item):
            raise DataError(f"input {index}: unpaired surrogates in the text (not Unicode)")
        return doc_id, item, split_sentences(item, max_words)
    if isinstance(item, Mapping):
        content = item.get("text", item.get("tokens"))
        if content is None:
            raise DataError(f"input {index}: a record needs a 'text' or 'tokens' field")
        if not isinstance(content, (str, list)):
            raise DataError(f"input {index}: 'text' must be a string, 'tokens' a list")
        return document_input(content, index, max_words, item.get("id"))
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], (str, list)):
            raise DataError(f"input {index}: a tuple must be (id, text) or (id, tokens)")
        return document_input(item[1], index, max_words, item[0])
    if isinstance(item, Sequence):
        try:
            text, sentences = join_tokens(item, max_words)
        except ValueError as e:
            raise DataError(f"input {index}: {e}") from None
        if _SURROGATE.search(text):
            raise DataError(f"input {index}: unpaired surrogates in the tokens (not Unicode)")
        return doc_id, text, sentences
    raise DataError(
        f"input {index}: expected a text, a token list or an (id, text) tuple, "
        f"got {type(item).__name__}"
    )


def sentences_in_context(
    sentences: Iterable[TextSentence], words: int
) -> Iterator[tuple[TextSentence, Context]]:
    """The sentences of one document, each with up to ``words`` words before and after it from
    its neighbours (none for ``words == 0``). Lazy: reads ahead only as far as the words after
    the sentence need."""
    ahead: deque[TextSentence] = deque()
    before: list[str] = []  # the last words before ahead[0]
    source = iter(sentences)
    exhausted = False
    while True:
        # Read until the sentences after ahead[0] hold enough words (or there are no more).
        while not exhausted and (
            not ahead or sum(len(s.tokens) for s in ahead) - len(ahead[0].tokens) < words
        ):
            sentence = next(source, None)
            if sentence is None:
                exhausted = True
            else:
                ahead.append(sentence)
        if not ahead:
            return
        sentence = ahead.popleft()
        if words <= 0:
            yield sentence, ([], [])
            continue
        after = list(islice((w for s in ahead for w in s.tokens), words))
        yield sentence, (before, after)
        before = (before + list(sentence.tokens))[-words:]


def extracted_sentence(text: str, sentence: TextSentence, predicted: Sentence) -> ExtractedSentence:
    """A predicted sentence with character offsets into the document ``text``."""
    offsets = sentence.offsets
    entities = []
    for e in predicted.entities:
        start, end = offsets[e.start][0], offsets[e.end - 1][1]
        score = float(e.score) if e.score is not None else 1.0
        entities.append(ExtractedEntity(e.type, text[start:end], start, end, e.start, e.end, score))
    relations = [
        ExtractedRelation(r.type, r.head, r.tail, float(r.score) if r.score is not None else 1.0)
        for r in predicted.relations
    ]
    return ExtractedSentence(
        text[sentence.start : sentence.end],
        sentence.start,
        sentence.end,
        list(sentence.tokens),
        list(offsets),
        entities,
        relations,
    )


def extract_stream(
    texts: Iterable[DocumentInput],
    predict: Predict,
    batch_size: int,
    max_words: int,
    context_words: int,
) -> Iterator[Document]:
    """Documents of ``texts``, lazily: reads ``texts`` as it goes and yields each Document, in
    input order, once all its sentences are predicted. Sentences are predicted in chunks of
    ``BATCHES_PER_CHUNK * batch_size`` (and at most that many documents are held), so memory
    does not grow with the input (beyond the Document being built)."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    chunk = BATCHES_PER_CHUNK * batch_size
    pending: deque[Document] = deque()  # read, not yet yielded; in input order
    # Sentences awaiting prediction, with their document context.
    buffer: list[tuple[Document, TextSentence, Context]] = []

    def flush() -> None:
        contexts = [c for _, _, c in buffer] if context_words > 0 else None
        predictions = predict([s.tokens for _, s, _ in buffer], contexts)
        for (doc, sentence, _), predicted in zip(buffer, predictions):
            doc.sentences.append(extracted_sentence(doc.text, sentence, predicted))
        buffer.clear()

    for index, item in enumerate(texts):
        doc_id, text, sentences = document_input(item, index, max_words)
        pending.append(Document(text, [], doc_id))
        for sentence, context in sentences_in_context(sentences, context_words):
            buffer.append((pending[-1], sentence, context))
            if len(buffer) >= chunk:
                flush()
                while len(pending) > 1:  # all but the one still being read are done
                    yield pending.popleft()
        if buffer and len(pending) >= chunk:  # many short or empty documents
            flush()
        if not buffer:
            while pending:
                yield pending.popleft()
    if buffer:
        flush()
    while pending:
        yield pending.popleft()
