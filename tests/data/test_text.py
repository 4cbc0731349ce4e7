"""Raw text -> sentences and words with exact character offsets (spert.text)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.data import text as T
from spert.data.text import (
    MAX_WORD_CHARS,
    TextSentence,
    join_tokens,
    pipeline,
    split_sentences,
    tokenize,
)


def check(text: str, sentences: list[TextSentence], max_words: int = T.DEFAULT_MAX_WORDS) -> None:
    """Every offset points at its word in ``text``; words and sentences are ordered."""
    previous_end = 0
    for s in sentences:
        assert s.tokens and len(s.tokens) == len(s.offsets) <= max_words
        assert s.start == s.offsets[0][0] and s.end == s.offsets[-1][1]
        for token, (start, end) in zip(s.tokens, s.offsets):
            assert token and text[start:end] == token
            assert not any(c.isspace() for c in token)
            assert len(token) <= MAX_WORD_CHARS
            assert previous_end <= start < end <= len(text)
            previous_end = end


def words(text: str) -> list[str]:
    return [w for w, _, _ in tokenize(text)]


def test_pipeline_is_created_once():
    assert pipeline() is pipeline()
    assert pipeline().pipe_names == ["sentencizer"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("He moved to Boston.", ["He", "moved", "to", "Boston", "."]),
        ("(IBM) said so, twice!", ["(", "IBM", ")", "said", "so", ",", "twice", "!"]),
        ('She said "no".', ["She", "said", '"', "no", '"', "."]),
        ("Smith's car", ["Smith", "'s", "car"]),
        # Abbreviations keep their period, as in CoNLL04 ("Dr.", "U.S.", "Corp.").
        ("Dr. Smith of Acme Corp. in the U.S.", ["Dr.", "Smith", "of", "Acme", "Corp.", "in"]),
    ],
)
def test_punctuation_is_split_off_as_in_conll04(text, expected):
    assert words(text)[: len(expected)] == expected


def test_whitespace_never_makes_words():
    text = "  a\u00a0b\tc\u2003d\u3000e\u2028f\x85g \n\n\r\n h  "
    assert words(text) == list("abcdefgh")
    check(text, list(split_sentences(text)))


@pytest.mark.parametrize(
    "text",
    [
        "Caf\u00e9 cafe\u0301 na\u0308ive \u00c5ngstr\u00f6m.",  # precomposed and combining
        "Emoji \U0001f600\U0001f44d\U0001f3fd and \U0001f468\u200d\U0001f469\u200d\U0001f467 ok.",
        "Zero\u200bwidth \u200b joiner\u200d and \ufeffBOM \u2060 word.",
        "\u6211\u662f\u4e2d\u56fd\u4eba\u3002\u4f60\u597d\uff01 Tokyo \u6771\u4eac.",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd. \u0645\u0631\u062d\u0628\u0627 "
        "\u202eabc\u202c!",  # right-to-left, bidi controls
        "Line one\r\nline two\rline three\nline four\u2029end",
        "\t\t Tabs\tand   many    spaces .  ",
        "\x00\x01 control \x7f chars \ufffd here",
        "\U0001d400\U0001d401 math \U00010348 gothic",
    ],
)
def test_offsets_exact_on_varied_unicode(text):
    sentences = list(split_sentences(text))
    check(text, sentences)
    assert sentences
    # Nothing but whitespace is lost between the words.
    covered = set()
    for s in sentences:
        for a, b in s.offsets:
            covered.update(range(a, b))
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


def test_sentence_splitting():
    text = 'Mary works for Acme. She lives in Boston! Does she? (Yes.) "Quite." Done'
    got = [" ".join(s.tokens) for s in split_sentences(text)]
    assert got == [
        "Mary works for Acme .",
        "She lives in Boston !",
        "Does she ?",
        "( Yes . )",
        '" Quite . "',
        "Done",
    ]


def test_sentence_text_spans_its_words():
    text = "First sentence here.   Second one\nwraps a line.\n\nHeadline without period\n\nBody."
    sentences = list(split_sentences(text))
    assert [text[s.start : s.end] for s in sentences] == [
        "First sentence here.",
        "Second one\nwraps a line.",  # a single line break does not end a sentence
        "Headline without period",  # a blank line does
        "Body.",
    ]


@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\u00a0\u3000\u2028", "\r\n" * 50])
def test_empty_or_whitespace_only_text_has_no_sentences(text):
    assert list(split_sentences(text)) == []
    assert tokenize(text) == []


def test_long_sentence_is_cut_into_balanced_pieces():
    text = " ".join(f"w{i}" for i in range(250))  # no sentence end at all
    sentences = list(split_sentences(text, max_words=100))
    assert [len(s.tokens) for s in sentences] == [84, 83, 83]
    assert [t for s in sentences for t in s.tokens] == text.split()
    check(text, sentences, 100)
    with pytest.raises(ValueError):
        list(split_sentences(text, max_words=0))


def test_very_long_document():
    unit = "Mary Smith works for Acme Corp. in Boston, Mass.\n"
    unit += "She (IBM) said: \u00e9t\u00e9 \U0001f600!\n"
    text = unit * (200_000 // len(unit) + 1)
    assert len(text) > 200_000 > T.CHUNK_CHARS
    sentences = list(split_sentences(text))
    check(text, sentences)
    # Chunking (every CHUNK_CHARS characters) does not cut sentences: all are alike.
    first = list(split_sentences(unit))
    assert len(sentences) == len(first) * (len(text) // len(unit))
    assert {tuple(s.tokens) for s in sentences} == {tuple(s.tokens) for s in first}


def test_very_long_document_without_whitespace_or_punctuation_runs():
    for text in ("x" * 300_000, "(" * 20_000, "\U0001f600" * 20_000, "a." * 100_000):
        sentences = list(split_sentences(text))
        check(text, sentences)
        assert "".join(t for s in sentences for t in s.tokens) == text


def test_very_long_word_is_cut_into_pieces():
    word = "Supercalifragilistic" * 30  # 600 characters
    text = f"A {word} here."
    tokens = words(text)
    assert tokens[0] == "A" and tokens[-2:] == ["here", "."]
    assert "".join(tokens[1:-2]) == word
    assert all(len(t) <= MAX_WORD_CHARS for t in tokens)
    check(text, list(split_sentences(text)))


def test_join_tokens():
    text, sentences = join_tokens(["John", "Smith", "(", "IBM", ")", "."])
    assert text == "John Smith ( IBM ) ."
    assert len(sentences) == 1
    check(text, sentences)
    text, sentences = join_tokens([f"t{i}" for i in range(5)], max_words=2)
    assert [s.tokens for s in sentences] == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    check(text, sentences, max_words=2)
    assert join_tokens([]) == ("", [])
    with pytest.raises(ValueError, match="token 1"):
        join_tokens(["a", ""])


# -- property-based ------------------------------------------------------------------------
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WHITESPACE = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u2028", "\u3000"])
WORDISH = st.sampled_from(
    [
        "Boston.",
        "(IBM)",
        "Dr.",
        "U.S.",
        "e\u0301",
        "\U0001f600",
        "\u200b",
        "\u6211\u662f",
        "!?",
        '"',
    ]
)


@PROPERTY
@given(st.text())
def test_property_random_unicode(text):
    sentences = list(split_sentences(text))
    check(text, sentences)
    if not text.strip():
        assert sentences == []


@PROPERTY
@given(st.lists(st.one_of(WHITESPACE, WORDISH, st.text(min_size=1, max_size=5)), max_size=60))
def test_property_mixed_words_and_whitespace(parts):
    text = "".join(parts)
    sentences = list(split_sentences(text, max_words=7))
    check(text, sentences, max_words=7)
    joined = "".join(t for s in sentences for t in s.tokens)
    assert joined == "".join(c for c in text if not c.isspace())


@PROPERTY
@given(st.lists(st.text(min_size=1), max_size=20), st.integers(1, 8))
def test_property_join_tokens(tokens, max_words):
    text, sentences = join_tokens(tokens, max_words)
    assert text == " ".join(tokens)
    assert [t for s in sentences for t in s.tokens] == tokens
    for s in sentences:
        assert len(s.tokens) <= max_words
        assert all(text[a:b] == t for t, (a, b) in zip(s.tokens, s.offsets))
