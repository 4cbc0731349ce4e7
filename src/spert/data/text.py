"""Raw text -> sentences of words with character offsets, for extraction from plain text.

Words come from spaCy's rule-based English tokenizer (``spacy.blank("en")``, no model
download), which splits punctuation off as in the training data (CoNLL04, SciERC):
``"Boston."`` -> ``"Boston", "."``, ``"(IBM)"`` -> ``"(", "IBM", ")"``. Sentence boundaries
come from spaCy's ``sentencizer`` (after ``.``, ``!``, ``?`` and the like) and from blank lines.

Guarantees, whatever the text (any Unicode, whitespace or line breaks):

* offsets point into the original text: ``text[start:end] == token`` for every word;
* words are never empty and never contain whitespace (spaCy's whitespace tokens are dropped);
* words are at most :data:`MAX_WORD_CHARS` characters (longer runs are cut into pieces);
* sentences are at most ``max_words`` words (longer ones are cut into balanced pieces);
* any text length works: the text is processed in chunks of about :data:`CHUNK_CHARS`
  characters cut at whitespace, and sentences are produced lazily.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spert.config import InferenceConfig

#: Longest word, in characters; longer runs without whitespace are cut into pieces of this size
#: (BERT's WordPiece maps longer words to [UNK] anyway). It also bounds the spaCy tokenizer's
#: work, which grows quadratically with the length of a run of punctuation or emoji.
MAX_WORD_CHARS = 100
#: Characters handed to spaCy at once (spaCy's own ``nlp.max_length`` is 1,000,000).
CHUNK_CHARS = 100_000
#: Default for the longest sentence, in words: the configuration's default.
DEFAULT_MAX_WORDS: int = InferenceConfig.max_sentence_words
#: The spaCy pipeline is rebuilt after this many characters: its string store grows with every
#: new word seen, so a long-running stream would otherwise grow without bound.
RESET_CHARS = 20_000_000

_LB = r"\r\n|\r(?!\n)|[\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]"  # one line break
_PARAGRAPH_BREAK = re.compile(rf"(?:{_LB})[^\S\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*(?:{_LB})")
_LONG_RUN = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")
_NON_SPACE = re.compile(r"\S+")
_SPACE = re.compile(r"\s")
_LAST_SPACE = re.compile(r"\s\S*\Z")


@dataclass(frozen=True)
class TextSentence:
    """One sentence of a text: its words and their character offsets in the text."""

    start: int  # character offset of the first word
    end: int  # end of the last word (exclusive)
    tokens: list[str]
    offsets: list[tuple[int, int]]  # [start, end) of each word


class _Pipeline:
    """spaCy's blank English tokenizer and sentencizer, created once (see :func:`pipeline`)."""

    def __init__(self) -> None:
        import spacy

        self.nlp = spacy.blank("en")
        self.sentencizer = self.nlp.add_pipe("sentencizer")
        self.chars = 0


_PIPELINE: _Pipeline | None = None


def _pipeline(n_chars: int = 0) -> _Pipeline:
    global _PIPELINE
    if _PIPELINE is None or _PIPELINE.chars > RESET_CHARS:
        _PIPELINE = _Pipeline()
    _PIPELINE.chars += n_chars
    return _PIPELINE


def pipeline() -> Any:
    """The cached spaCy ``Language`` (blank English + sentencizer)."""
    return _pipeline().nlp


def _segments(text: str) -> Iterator[tuple[int, int]]:
    """Pieces of ``text`` to tokenize separately: runs of over MAX_WORD_CHARS non-space
    characters are cut into pieces of that size, the rest is left whole."""
    pos = 0
    for m in _LONG_RUN.finditer(text):
        if m.start() > pos:
            yield pos, m.start()
        for s in range(m.start(), m.end(), MAX_WORD_CHARS):
            yield s, min(s + MAX_WORD_CHARS, m.end())
        pos = m.end()
    if pos < len(text):
        yield pos, len(text)


def _word_offsets(text: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Start and end offsets of the words of ``text`` (no whitespace in any word)."""
    starts: list[int] = []
    ends: list[int] = []
    for seg_start, seg_end in _segments(text):
        for token in tokenizer(text[seg_start:seg_end]):
            if token.is_space:
                continue
            word = token.text
            start = seg_start + token.idx
            if _SPACE.search(word) is None:
                starts.append(start)
                ends.append(start + len(word))
            else:  # whitespace inside a token: keep the pieces between
                for m in _NON_SPACE.finditer(word):
                    starts.append(start + m.start())
                    ends.append(start + m.end())
    return starts, ends


def _cut(text: str, pos: int) -> int:
    """End of the chunk starting at ``pos``: at whitespace (a line break if possible)."""
    end = pos + CHUNK_CHARS
    if end >= len(text):
        return len(text)
    low = pos + CHUNK_CHARS // 2
    for sep in ("\n\n", "\n"):
        cut = text.rfind(sep, low, end)
        if cut > pos:
            return cut
    cut = text.rfind(" ", low, end)
    if cut > pos:
        return cut
    last = _LAST_SPACE.search(text, low, end)
    return last.start() if last is not None else end


def _balanced_pieces(n: int, max_words: int) -> np.ndarray:
    """Boundaries that cut ``n`` words into the fewest pieces of at most ``max_words``."""
    k = math.ceil(n / max_words)
    return np.ceil(np.arange(k + 1) * (n / k)).astype(np.int64)


def _sentences_of_chunk(text: str, pipe: _Pipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word starts, word ends (offsets in ``text``) and sentence boundaries (word indices,
    first 0, last the number of words) of one chunk."""
    from spacy.tokens import Doc

    starts_list, ends_list = _word_offsets(text, pipe.nlp.tokenizer)
    n = len(starts_list)
    starts = np.asarray(starts_list, dtype=np.int64)
    ends = np.asarray(ends_list, dtype=np.int64)
    if n == 0:
        return starts, ends, np.zeros(1, dtype=np.int64)
    doc = Doc(pipe.nlp.vocab, words=[text[a:b] for a, b in zip(starts_list, ends_list)])
    doc = pipe.sentencizer(doc)
    is_start = doc.to_array("SENT_START").astype(np.int64).reshape(-1) == 1
    # The sentencizer keeps punctuation after a period in the sentence; an opening one ("(",
    # a quote) glued to the next word but not to the previous one starts the next sentence.
    b = np.flatnonzero(is_start[2:]) + 2
    j = b - 1
    punct = doc.to_array("IS_PUNCT").astype(bool).reshape(-1)
    move = punct[j] & (starts[b] == ends[j]) & (starts[j] > ends[j - 1]) & ~is_start[j]
    is_start[b[move]] = False
    is_start[j[move]] = True
    # Blank lines end sentences too (headlines, lists, paragraphs without a final period).
    breaks = [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]
    if breaks:
        after = np.searchsorted(starts, np.asarray(breaks, dtype=np.int64), side="left")
        is_start[after[after < n]] = True
    is_start[0] = True
    return starts, ends, np.append(np.flatnonzero(is_start), n)


def split_sentences(text: str, max_words: int = DEFAULT_MAX_WORDS) -> Iterator[TextSentence]:
    """The sentences of ``text``, lazily, in order; none for empty or whitespace-only text."""
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    pos = 0
    while pos < len(text):
        cut = _cut(text, pos)
        starts, ends, bounds = _sentences_of_chunk(text[pos:cut], _pipeline(cut - pos))
        starts += pos
        ends += pos
        next_pos = cut
        if cut < len(text) and len(bounds) > 2:
            # The last sentence may go on in the next chunk: redo it there.
            next_pos = int(starts[bounds[-2]])
            bounds = bounds[:-1]
        for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            pieces = _balanced_pieces(last - first, max_words) + first
            for a, b in zip(pieces[:-1].tolist(), pieces[1:].tolist()):
                s, e = starts[a:b].tolist(), ends[a:b].tolist()
                tokens = [text[i:j] for i, j in zip(s, e)]
                yield TextSentence(s[0], e[-1], tokens, list(zip(s, e)))
        pos = next_pos


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """All words of ``text`` as (word, start, end), ignoring sentence boundaries."""
    return [
        (token, a, b)
        for sentence in split_sentences(text, max_words=1_000_000)
        for token, (a, b) in zip(sentence.tokens, sentence.offsets)
    ]


def join_tokens(
    tokens: Sequence[str], max_words: int = DEFAULT_MAX_WORDS
) -> tuple[str, list[TextSentence]]:
    """Pre-tokenized input: the text (tokens joined by single spaces) and its sentences (one,
    or pieces of at most ``max_words`` words). Every token must be a non-empty string."""
    tokens = list(tokens)
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise ValueError(f"token {i} must be a non-empty string, got {token!r}")
    if not tokens:
        return "", []
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    ends = np.cumsum(lengths + 1) - 1
    starts = ends - lengths
    text = " ".join(tokens)
    sentences = []
    pieces = _balanced_pieces(len(tokens), max_words)
    for a, b in zip(pieces[:-1].tolist(), pieces[1:].tolist()):
        s, e = starts[a:b].tolist(), ends[a:b].tolist()
        sentences.append(TextSentence(s[0], e[-1], tokens[a:b], list(zip(s, e))))
    return text, sentences
