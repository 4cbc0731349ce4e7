"""Word/subword alignment and windowing of long sentences, with tiny BERT and RoBERTa tokenizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import PreTrainedTokenizerBase

from spert.model.encoding import (
    WORD_SHAPES,
    EncodedSentence,
    SentenceEncoder,
    encoder_input_limit,
    load_tokenizer,
    word_shape,
)

SENTENCE = "John Wilkes Booth , who assassinated President Lincoln , was an actor .".split()
# Words outside the tiny vocabularies' word list, split into several subwords.
SPLIT_WORDS = ["Maryon", "Bostoner", "Lincolns", "actored"]
SHORT = ["Mary", "works", "for", "Acme", "Corp", "in", "Boston", "."]
BIG = 10_000  # a max_length under which nothing is windowed
CORPUS_WORDS = "Mary works for Acme Corp in Boston and lives in Cambridge .".split()


@pytest.fixture(params=["bert_dir", "bert_uncased_dir", "roberta_dir"])
def tokenizer_case(request: pytest.FixtureRequest) -> tuple[PreTrainedTokenizerBase, bool]:
    """(tokenizer, lowercases) for each tiny encoder."""
    path: Path = request.getfixturevalue(request.param)
    return load_tokenizer(path), request.param == "bert_uncased_dir"


@pytest.fixture(params=["bert_dir", "bert_uncased_dir"])
def bert_tokenizer(request: pytest.FixtureRequest) -> PreTrainedTokenizerBase:
    return load_tokenizer(request.getfixturevalue(request.param))


def full_ids(encoded: EncodedSentence) -> list[int]:
    """The full subword sequence, read back through the window mapping."""
    where = zip(encoded.position_window.tolist(), encoded.position_offset.tolist(), strict=True)
    return [encoded.windows[w][o] for w, o in where]


def word_text(tokenizer: PreTrainedTokenizerBase, ids: list[int], word: str) -> str:
    if not word.isascii():  # byte-level pieces of a non-ASCII character: decode the bytes
        return tokenizer.decode(ids).strip()
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return "".join(p.removeprefix("##").replace("Ġ", "") for p in pieces)


def special_positions(encoded: EncodedSentence) -> list[int]:
    covered = np.zeros(encoded.seq_len, dtype=bool)
    for start, end in zip(encoded.word_starts, encoded.word_ends, strict=True):
        covered[start:end] = True
    return np.flatnonzero(~covered).tolist()


def check_alignment(
    tokenizer: PreTrainedTokenizerBase, words: list[str], encoded: EncodedSentence, lower: bool
) -> None:
    ids = full_ids(encoded)
    assert len(encoded.word_starts) == len(encoded.word_ends) == len(words)
    # Words follow one another without gaps or overlaps.
    assert np.all(encoded.word_starts <= encoded.word_ends)
    assert np.all(encoded.word_ends[:-1] <= encoded.word_starts[1:])
    for word, start, end in zip(words, encoded.word_starts, encoded.word_ends, strict=True):
        if end > start:
            expected = word.lower() if lower else word
            assert word_text(tokenizer, ids[start:end], word) == expected, word


def test_tokenizers_are_fast(tokenizer_case):
    tokenizer, _ = tokenizer_case
    assert tokenizer.is_fast


def test_each_word_decodes_to_itself(tokenizer_case):
    tokenizer, lower = tokenizer_case
    words = SENTENCE[:5] + SPLIT_WORDS + SENTENCE[5:]
    encoded = SentenceEncoder(tokenizer, BIG).encode([words])[0]
    check_alignment(tokenizer, words, encoded, lower)
    assert np.all(encoded.word_ends > encoded.word_starts)  # every word has subwords here
    assert len(encoded.windows) == 1
    assert encoded.windows[0] == tokenizer(words, is_split_into_words=True)["input_ids"]
    # Some of these words really are split into several subwords.
    assert np.any(encoded.word_ends - encoded.word_starts > 1)


def test_special_tokens_belong_to_no_word(tokenizer_case):
    tokenizer, _ = tokenizer_case
    encoded = SentenceEncoder(tokenizer, BIG).encode([SHORT])[0]
    ids = full_ids(encoded)
    specials = special_positions(encoded)
    assert specials[0] == 0 and specials[-1] == encoded.seq_len - 1
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert {ids[p] for p in specials} <= set(tokenizer.all_special_ids)
    content = [i for p, i in enumerate(ids) if p not in specials]
    assert not set(content) & set(tokenizer.all_special_ids)
    assert encoded.word_starts[0] == 1 and encoded.word_ends[-1] == encoded.seq_len - 1


def test_batch_encodes_each_sentence_alone(tokenizer_case):
    tokenizer, _ = tokenizer_case
    encoder = SentenceEncoder(tokenizer, BIG)
    batch = encoder.encode([SHORT, SENTENCE, ["Mary"]])
    for words, encoded in zip([SHORT, SENTENCE, ["Mary"]], batch, strict=True):
        alone = encoder.encode([words])[0]
        assert encoded.windows == alone.windows
        np.testing.assert_array_equal(encoded.word_starts, alone.word_starts)
        np.testing.assert_array_equal(encoded.word_ends, alone.word_ends)
    assert encoder.encode([]) == []


@pytest.mark.parametrize("empty", ["\u200b", "\x07"])
@pytest.mark.parametrize("where", [0, 3, len(SHORT)])
def test_word_without_subwords(bert_tokenizer, empty: str, where: int):
    lower = (
        bert_tokenizer("Mary", add_special_tokens=False)["input_ids"]
        == (bert_tokenizer("mary", add_special_tokens=False)["input_ids"])
    )
    encoder = SentenceEncoder(bert_tokenizer, BIG)
    words = SHORT[:where] + [empty] + SHORT[where:]
    encoded, plain = encoder.encode([words, SHORT])
    assert encoded.windows == plain.windows
    assert encoded.word_starts[where] == encoded.word_ends[where]
    # It sits where the next word starts; the other words keep their subwords.
    keep = [i for i in range(len(words)) if i != where]
    np.testing.assert_array_equal(encoded.word_starts[keep], plain.word_starts)
    np.testing.assert_array_equal(encoded.word_ends[keep], plain.word_ends)
    expected_at = plain.word_starts[where] if where < len(SHORT) else plain.word_ends[-1]
    assert encoded.word_starts[where] == expected_at
    check_alignment(bert_tokenizer, words, encoded, lower)


def test_sentence_of_only_empty_words(bert_tokenizer):
    encoded = SentenceEncoder(bert_tokenizer, BIG).encode([["\u200b", "\x07"]])[0]
    assert encoded.windows == [[bert_tokenizer.cls_token_id, bert_tokenizer.sep_token_id]]
    np.testing.assert_array_equal(encoded.word_starts, encoded.word_ends)
    assert encoded.subword_bounds(np.array([[0, 2]])).tolist() == [[1, 1]]


def long_sentence(n: int = 60) -> list[str]:
    pool = SENTENCE + SPLIT_WORDS + SHORT
    return [pool[i % len(pool)] for i in range(n)]


@pytest.mark.parametrize("max_length", [16, 9, 40])
def test_long_sentence_is_windowed(tokenizer_case, max_length: int):
    tokenizer, lower = tokenizer_case
    words = long_sentence()
    words[7] = words[31] = "\u200b"  # zero subwords for BERT, bytes for RoBERTa
    reference = SentenceEncoder(tokenizer, BIG).encode([words])[0]
    encoded = SentenceEncoder(tokenizer, max_length).encode([words])[0]
    ref_ids = reference.windows[0]
    assert len(ref_ids) > max_length
    assert len(encoded.windows) > 1

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for window in encoded.windows:
        assert len(window) <= max_length
        assert window[0] == cls and window[-1] == sep
        assert cls not in window[1:-1] and sep not in window[1:-1]

    # Same full sequence and alignment as without windows.
    assert encoded.seq_len == len(ref_ids)
    assert full_ids(encoded) == ref_ids
    np.testing.assert_array_equal(encoded.word_starts, reference.word_starts)
    np.testing.assert_array_equal(encoded.word_ends, reference.word_ends)
    for w, o in zip(encoded.position_window, encoded.position_offset, strict=True):
        assert 0 <= w < len(encoded.windows) and 0 <= o < len(encoded.windows[w])

    # Content subwords are read from inside a window, never from its special tokens.
    content = np.zeros(encoded.seq_len, dtype=bool)
    for start, end in zip(encoded.word_starts, encoded.word_ends, strict=True):
        content[start:end] = True
    assert content.sum() == encoded.seq_len - 2
    for p in np.flatnonzero(content):
        window = encoded.windows[encoded.position_window[p]]
        assert 1 <= encoded.position_offset[p] < len(window) - 1
    # Special tokens are read as such.
    assert (encoded.position_window[0], encoded.position_offset[0]) == (0, 0)
    last = len(encoded.windows) - 1
    assert encoded.position_window[-1] == last
    assert encoded.position_offset[-1] == len(encoded.windows[last]) - 1

    # No word is lost: each word's subwords are all readable and decode to the word.
    check_alignment(tokenizer, words, encoded, lower)
    n_empty = int(np.sum(encoded.word_starts == encoded.word_ends))
    assert n_empty == (2 if tokenizer.cls_token == "[CLS]" else 0)


def test_windows_overlap_and_prefer_the_middle(bert_dir):
    tokenizer = load_tokenizer(bert_dir)
    words = long_sentence()
    encoded = SentenceEncoder(tokenizer, 16).encode([words])[0]
    body_len = encoded.seq_len - 2
    size = 14
    # Windows are full (the last is moved back to end at the sentence's end) and overlap by
    # half, so a subword away from the sentence's ends is read 3 or more from a window edge.
    assert all(len(w) == 16 for w in encoded.windows)
    assert len(encoded.windows) == -(-(body_len - size) // (size // 2)) + 1
    for p in range(1 + 3, 1 + body_len - 3):
        offset = encoded.position_offset[p]
        assert min(offset - 1, size - offset) >= 3, p


def test_exact_fit_is_one_window(tokenizer_case):
    tokenizer, _ = tokenizer_case
    reference = SentenceEncoder(tokenizer, BIG).encode([SENTENCE])[0]
    n = reference.seq_len
    fits = SentenceEncoder(tokenizer, n).encode([SENTENCE])[0]
    assert fits.windows == reference.windows
    split = SentenceEncoder(tokenizer, n - 1).encode([SENTENCE])[0]
    assert len(split.windows) == 2
    assert full_ids(split) == reference.windows[0]


def test_max_length_must_leave_room(bert_dir):
    tokenizer = load_tokenizer(bert_dir)
    with pytest.raises(ValueError, match="no room"):
        SentenceEncoder(tokenizer, 3)
    SentenceEncoder(tokenizer, 4).encode([long_sentence(10)])


def test_subword_bounds(bert_dir):
    tokenizer = load_tokenizer(bert_dir)
    words = ["Maryon", "works", "\u200b", "Bostoner"]
    encoded = SentenceEncoder(tokenizer, BIG).encode([words])[0]
    starts, ends = encoded.word_starts, encoded.word_ends
    spans = np.array([[0, 1], [0, 4], [2, 3], [1, 3], [2, 4]])
    expected = [
        [starts[0], ends[0]],
        [starts[0], ends[3]],
        [starts[3], starts[3]],
        [starts[1], ends[1]],
        [starts[3], ends[3]],
    ]
    assert encoded.subword_bounds(spans).tolist() == expected


def test_encoder_input_limit(bert_dir, roberta_dir):
    bert = load_tokenizer(bert_dir)
    roberta = load_tokenizer(roberta_dir)
    assert encoder_input_limit(bert, 64, "bert") == 64
    assert encoder_input_limit(roberta, 66, "roberta") == 64
    assert encoder_input_limit(roberta, 514, "xlm-roberta") == 512
    assert encoder_input_limit(bert, 64, "bert", override=16) == 16
    assert encoder_input_limit(roberta, 66, "roberta", override=100) == 100
    bert.model_max_length = 32
    assert encoder_input_limit(bert, 64, "bert") == 32
    assert encoder_input_limit(bert, 16, "bert") == 16
    assert encoder_input_limit(bert, 64, "bert", override=48) == 48


# --- document context ------------------------------------------------------------------------

LEFT = "John Wilkes Booth , who assassinated".split()
RIGHT = SPLIT_WORDS + ["in", "Cambridge", "."]


def context_words_of(
    tokenizer: PreTrainedTokenizerBase, encoded: EncodedSentence
) -> tuple[list[int], list[int]]:
    """The subword ids encoded before and after the sentence, special tokens left out."""
    ids = full_ids(encoded)
    specials = set(tokenizer.all_special_ids)
    before = [i for i in ids[: encoded.word_starts[0]] if i not in specials]
    after = [i for i in ids[encoded.word_ends[-1] :] if i not in specials]
    return before, after


def test_context_is_encoded_around_the_sentence(tokenizer_case):
    tokenizer, lower = tokenizer_case
    encoder = SentenceEncoder(tokenizer, BIG)
    encoded, alone = encoder.encode([SHORT, SHORT], [(LEFT, RIGHT), ([], [])])
    # word_starts / word_ends point at the sentence's own subwords, shifted past the context.
    check_alignment(tokenizer, SHORT, encoded, lower)
    assert len(encoded.word_starts) == len(SHORT)
    np.testing.assert_array_equal(
        encoded.word_ends - encoded.word_starts, alone.word_ends - alone.word_starts
    )
    # The whole sequence is what the tokenizer makes of context + sentence + context.
    whole = tokenizer(LEFT + SHORT + RIGHT, is_split_into_words=True)["input_ids"]
    assert encoded.windows == [whole]
    before, after = context_words_of(tokenizer, encoded)
    assert (
        before == tokenizer(LEFT, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    )
    assert (
        after == tokenizer(RIGHT, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    )
    # The first token is the tokenizer's [CLS] / <s>, before the left context.
    assert full_ids(encoded)[0] == tokenizer.cls_token_id


def test_empty_contexts_are_the_sentence_alone(tokenizer_case):
    tokenizer, _ = tokenizer_case
    encoder = SentenceEncoder(tokenizer, 16)  # also the windowed path
    sentences = [SHORT, SENTENCE, long_sentence(30)]
    plain = encoder.encode(sentences)
    empty = encoder.encode(sentences, [([], [])] * 3)
    for a, b in zip(plain, empty, strict=True):
        assert a.windows == b.windows
        for name in ("position_window", "position_offset", "word_starts", "word_ends"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="2 contexts for 3 sentences"):
        encoder.encode(sentences, [([], [])] * 2)


def test_context_is_trimmed_farthest_words_first(bert_dir):
    tokenizer = load_tokenizer(bert_dir)
    left, right = SENTENCE, CORPUS_WORDS  # one subword per word in the tiny BERT vocabulary
    alone = SentenceEncoder(tokenizer, BIG).encode([SHORT])[0].seq_len
    for room in range(0, len(left) + len(right) + 1):
        encoder = SentenceEncoder(tokenizer, alone + room)
        encoded = encoder.encode([SHORT], [(left, right)])[0]
        assert len(encoded.windows) == 1 and encoded.seq_len == alone + room
        before, after = context_words_of(tokenizer, encoded)
        # The nearest words are kept: the end of the left, the start of the right context.
        n_before, n_after = len(before), len(after)
        assert n_before + n_after == room
        assert abs(n_before - n_after) <= 1
        assert before == tokenizer.convert_tokens_to_ids(left[len(left) - n_before :])
        assert after == tokenizer.convert_tokens_to_ids(right[:n_after])
        check_alignment(tokenizer, SHORT, encoded, False)


def test_trimming_counts_subwords_and_uneven_contexts(tokenizer_case):
    tokenizer, lower = tokenizer_case
    left, right = ["Mary"], SPLIT_WORDS * 3  # short left, long right of multi-subword words
    reference = SentenceEncoder(tokenizer, BIG).encode([SHORT], [(left, right)])[0]
    max_length = reference.seq_len - 5
    encoded = SentenceEncoder(tokenizer, max_length).encode([SHORT], [(left, right)])[0]
    assert len(encoded.windows) == 1 and encoded.seq_len <= max_length
    check_alignment(tokenizer, SHORT, encoded, lower)
    before, after = context_words_of(tokenizer, encoded)
    assert (
        before == tokenizer(left, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    )
    # The right context lost whole words from its far end; what is left is a prefix of it.
    right_ids = [
        tokenizer(right[:k], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        for k in range(len(right) + 1)
    ]
    assert after in right_ids and after != right_ids[-1]
    # As many words as fit: one more would not.
    k = right_ids.index(after)
    assert encoded.seq_len + len(right_ids[k + 1]) - len(after) > max_length


def test_sentence_too_long_alone_gets_no_context(tokenizer_case):
    tokenizer, lower = tokenizer_case
    words = long_sentence()
    encoder = SentenceEncoder(tokenizer, 16)
    with_context, alone = encoder.encode([words, words], [(LEFT, RIGHT), ([], [])])
    assert len(alone.windows) > 1
    assert with_context.windows == alone.windows
    np.testing.assert_array_equal(with_context.position_window, alone.position_window)
    np.testing.assert_array_equal(with_context.position_offset, alone.position_offset)
    np.testing.assert_array_equal(with_context.word_starts, alone.word_starts)
    check_alignment(tokenizer, words, with_context, lower)


@pytest.mark.parametrize(
    ("word", "shape"),
    [
        ("the", "lower"),
        ("John", "title"),
        ("A", "title"),
        ("IBM", "upper"),
        ("U.S.", "upper"),
        ("iPhone", "mixed"),
        ("McDonald", "mixed"),
        ("1984", "digit"),
        ("F-16", "digit"),
        (",", "other"),
        ("--", "other"),
        ("Zürich", "title"),
    ],
)
def test_word_shape(word: str, shape: str):
    assert WORD_SHAPES[word_shape(word)] == shape


def test_encoded_sentences_carry_word_shapes(bert_dir):
    encoder = SentenceEncoder(load_tokenizer(bert_dir), 64)
    (encoded,) = encoder.encode([["Mary", "saw", "IBM", "."]], [(["Before"], ["After"])])
    assert [WORD_SHAPES[s] for s in encoded.word_shapes] == ["title", "lower", "upper", "other"]


def test_lowercase_option_overrides_the_tokenizer(bert_uncased_dir):
    words = ["Mary", "saw", "IBM"]
    auto = load_tokenizer(bert_uncased_dir).tokenize(words, is_split_into_words=True)
    no = load_tokenizer(bert_uncased_dir, "no").tokenize(words, is_split_into_words=True)
    assert auto != no
    assert load_tokenizer(bert_uncased_dir, "yes").tokenize(words, is_split_into_words=True) == auto
