"""Candidates: the spans a sentence offers (inference) and the samples it trains on.

Spans are kept flat across a batch (``span_batch`` says which sentence each belongs to), so
no sentence pays for another's padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spert.config import SpertConfig
from spert.data import Sentence, Types
from spert.model.encoding import EncodedSentence


def enumerate_spans(n_words: int, max_span_size: int) -> np.ndarray:
    """All word spans [start, end) of 1..max_span_size words, by width then start. (N, 2)."""
    widths = np.arange(1, min(max_span_size, n_words) + 1)
    starts = np.concatenate([np.arange(n_words - w + 1) for w in widths]) if n_words else []
    width_of = np.repeat(widths, n_words - widths + 1)
    starts = np.asarray(starts, dtype=np.int64)
    return np.stack([starts, starts + width_of], axis=1).reshape(-1, 2)


def candidate_spans(encoded: EncodedSentence, max_span_size: int) -> np.ndarray:
    """Inference candidates: every span up to max_span_size words that has subwords."""
    spans = enumerate_spans(len(encoded.word_starts), max_span_size)
    bounds = encoded.subword_bounds(spans)
    return spans[bounds[:, 1] > bounds[:, 0]]


@dataclass
class TrainingSample:
    """Entity and relation samples of one sentence."""

    spans: np.ndarray  # (S, 2) word spans: gold entities first, then negatives
    entity_labels: np.ndarray  # (S,) 0 = none, else 1 + entity type index
    pairs: np.ndarray  # (R, 2) indices into spans (head, tail)
    relation_labels: np.ndarray  # (R, n_relation_types) multi-hot


def sample_training(
    sentence: Sentence,
    encoded: EncodedSentence,
    types: Types,
    config: SpertConfig,
    rng: np.random.Generator,
) -> TrainingSample:
    """All gold entities and relations plus random negatives, as in the SpERT paper."""
    entity_index = {t: i + 1 for i, t in enumerate(types.entities)}
    relation_index = {r: i for i, r in enumerate(types.relation_names)}
    symmetric = types.symmetric
    n_rel = len(types.relations)

    gold_spans = [(e.start, e.end) for e in sentence.entities]
    gold_labels = [entity_index[e.type] for e in sentence.entities]
    # Relations point at the first entity with a span: the same span is one argument.
    slot_of_span: dict[tuple[int, int], int] = {}
    for slot, span in enumerate(gold_spans):
        slot_of_span.setdefault(span, slot)
    slot_of = [slot_of_span[span] for span in gold_spans]

    # Positive pairs, multi-hot over types; symmetric types hold in both directions.
    positive: dict[tuple[int, int], np.ndarray] = {}
    for rel in sentence.relations:
        head, tail = slot_of[rel.head], slot_of[rel.tail]
        directions = [(head, tail), (tail, head)] if rel.type in symmetric else [(head, tail)]
        for pair in directions:
            positive.setdefault(pair, np.zeros(n_rel, dtype=np.float32))[
                relation_index[rel.type]
            ] = 1

    slots = sorted(set(slot_of))
    negative_pairs: list[tuple[int, int]] = []
    if config.neg_relation_kind == "strong":
        # Strong negatives: ordered pairs of gold entity spans that hold no relation.
        negative_pairs = [
            (a, b)
            for a in slots
            for b in slots
            if gold_spans[a] != gold_spans[b] and (a, b) not in positive
        ]
        if len(negative_pairs) > config.neg_relation_count:
            chosen = rng.choice(len(negative_pairs), config.neg_relation_count, replace=False)
            negative_pairs = [negative_pairs[i] for i in sorted(chosen)]

    # Negative entities: random candidate spans that are no gold entity.
    candidates = candidate_spans(encoded, config.max_span_size)
    n_words = len(sentence.tokens)
    gold_keys = np.asarray(gold_spans, dtype=np.int64).reshape(-1, 2) @ np.array([n_words + 1, 1])
    negatives = candidates[~np.isin(candidates @ np.array([n_words + 1, 1]), gold_keys)]
    if len(negatives) > config.neg_entity_count:
        negatives = negatives[
            np.sort(rng.choice(len(negatives), config.neg_entity_count, replace=False))
        ]

    if config.neg_relation_kind == "weak":
        negative_pairs = _weak_negative_pairs(
            slots, len(gold_spans), len(negatives), positive, config.neg_relation_count, rng
        )

    spans = np.concatenate(
        [np.asarray(gold_spans, dtype=np.int64).reshape(-1, 2), negatives.reshape(-1, 2)]
    )
    entity_labels = np.concatenate(
        [np.asarray(gold_labels, dtype=np.int64), np.zeros(len(negatives), dtype=np.int64)]
    )
    pairs = list(positive) + negative_pairs
    relation_labels = np.zeros((len(pairs), n_rel), dtype=np.float32)
    for i, pair in enumerate(positive):
        relation_labels[i] = positive[pair]
    return TrainingSample(
        spans, entity_labels, np.asarray(pairs, dtype=np.int64).reshape(-1, 2), relation_labels
    )


def _weak_negative_pairs(
    slots: list[int],
    n_gold: int,
    n_negatives: int,
    positive: dict[tuple[int, int], np.ndarray],
    count: int,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """Weak negatives: random ordered pairs of a sample's distinct spans, no gold pair.

    The spans are the gold entities (the first of each span, ``slots``, which relations point
    at) and the ``n_negatives`` negative entity spans that follow them. Gold pairs are left
    out: they are already in the sample with their labels.
    """
    nodes = np.concatenate([np.asarray(slots, dtype=np.int64), n_gold + np.arange(n_negatives)])
    heads, tails = (a.ravel() for a in np.meshgrid(nodes, nodes, indexing="ij"))
    stride = n_gold + n_negatives
    keys = heads * stride + tails
    gold_keys = np.asarray([h * stride + t for h, t in positive], dtype=np.int64)
    keep = (heads != tails) & ~np.isin(keys, gold_keys)
    heads, tails = heads[keep], tails[keep]
    if len(heads) > count:
        chosen = np.sort(rng.choice(len(heads), count, replace=False))
        heads, tails = heads[chosen], tails[chosen]
    return list(zip(heads.tolist(), tails.tolist()))


@dataclass
class Batch:
    """Tensors of one batch; spans and pairs are flat across its sentences."""

    window_input_ids: torch.Tensor  # (W, L) every encoder pass of the batch
    window_attention_mask: torch.Tensor  # (W, L)
    token_index: torch.Tensor  # (B, T) flat index into the (W * L) encoder outputs
    span_batch: torch.Tensor  # (N,) sentence of each span
    span_bounds: torch.Tensor  # (N, 2) subword [start, end) in the full sequence
    span_widths: torch.Tensor  # (N,) width in words
    span_words: torch.Tensor  # (N, 2) word [start, end)
    word_shapes: torch.Tensor | None = None  # (B, max words) casing class per word, 0 pads
    entity_labels: torch.Tensor | None = None  # (N,) 0 = none, else 1 + entity type index
    # (P, 2) indices into the N spans; entity_labels[pairs] are their arguments' gold types
    pairs: torch.Tensor | None = None
    relation_labels: torch.Tensor | None = None  # (P, n_relation_types)

    def to(self, device: torch.device) -> Batch:
        moved = {
            name: (
                value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            )
            for name, value in vars(self).items()
        }
        return Batch(**moved)

    @property
    def num_sentences(self) -> int:
        return self.token_index.shape[0]


def collate(
    encoded: Sequence[EncodedSentence],
    spans: Sequence[np.ndarray],
    pad_token_id: int,
    samples: Sequence[TrainingSample] | None = None,
) -> Batch:
    """Pad encoder windows and flatten spans (and training samples) of several sentences."""
    windows = [w for e in encoded for w in e.windows]
    width = max(len(w) for w in windows)
    window_ids = np.full((len(windows), width), pad_token_id, dtype=np.int64)
    window_mask = np.zeros((len(windows), width), dtype=np.int64)
    for row, ids in enumerate(windows):
        window_ids[row, : len(ids)] = ids
        window_mask[row, : len(ids)] = 1

    seq_len = max(e.seq_len for e in encoded)
    token_index = np.zeros((len(encoded), seq_len), dtype=np.int64)
    first_window = 0
    for b, e in enumerate(encoded):
        token_index[b, : e.seq_len] = (first_window + e.position_window) * width + e.position_offset
        first_window += len(e.windows)

    span_batch = np.concatenate([np.full(len(s), b) for b, s in enumerate(spans)]).astype(np.int64)
    span_words = np.concatenate([s.reshape(-1, 2) for s in spans]).astype(np.int64)
    span_bounds = np.concatenate(
        [e.subword_bounds(s.reshape(-1, 2)) for e, s in zip(encoded, spans)]
    ).reshape(-1, 2)
    batch = Batch(
        window_input_ids=torch.from_numpy(window_ids),
        window_attention_mask=torch.from_numpy(window_mask),
        token_index=torch.from_numpy(token_index),
        span_batch=torch.from_numpy(span_batch),
        span_bounds=torch.from_numpy(span_bounds.astype(np.int64)),
        span_widths=torch.from_numpy(span_words[:, 1] - span_words[:, 0]),
        span_words=torch.from_numpy(span_words),
    )
    if all(e.word_shapes is not None for e in encoded):
        n_words = max(1, max(len(e.word_starts) for e in encoded))
        shapes = np.zeros((len(encoded), n_words), dtype=np.int64)
        for b, e in enumerate(encoded):
            shapes[b, : len(e.word_starts)] = e.word_shapes
        batch.word_shapes = torch.from_numpy(shapes)
    if samples is not None:
        offsets = np.cumsum([0] + [len(s) for s in spans[:-1]])
        batch.entity_labels = torch.from_numpy(np.concatenate([s.entity_labels for s in samples]))
        batch.pairs = torch.from_numpy(
            np.concatenate([s.pairs + off for s, off in zip(samples, offsets)]).reshape(-1, 2)
        )
        n_rel = samples[0].relation_labels.shape[1]
        batch.relation_labels = torch.from_numpy(
            np.concatenate([s.relation_labels for s in samples]).reshape(-1, n_rel)
        )
    return batch
