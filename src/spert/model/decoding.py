"""Decoding: classify every candidate span, drop "none", pair the rest, threshold relations.

With a :class:`~spert.model.calibration.Calibration`, entity logits are divided by its
temperature before the softmax, the "none" decision may use its cut-off, and relation logits
are calibrated per type before the per-type thresholds. The caps of the inference settings
(:class:`~spert.config.InferenceConfig`: ``max_entities_per_sentence``,
``max_relations_per_sentence``) bound what one sentence may produce: entities are capped by
score before pairing, so the number of pairs is bounded too. An ensemble
(:class:`~spert.model.modeling.SpertEnsemble`) is decoded as one model whose probabilities are
its members' means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spert.data import Entity, Relation, Types
from spert.model.calibration import Calibration
from spert.model.candidates import Batch
from spert.model.modeling import RangePooler, SpertEnsemble, SpertModel, members


@dataclass
class ScoredBatch:
    """What decoding computes before thresholding relations (see :func:`score_batch`)."""

    kept: torch.Tensor  # (M,) span indices of kept entities, by sentence, start, end
    kept_batch: torch.Tensor  # (M,) sentence of each kept span
    entity_labels: torch.Tensor  # (N,) best type other than "none" (1-based), per span
    entity_scores: torch.Tensor  # (N,) its (calibrated) probability
    # (N, 1 + entity types) raw logits of every candidate span (an ensemble's: log mean probs)
    entity_logits: torch.Tensor
    head_slot: torch.Tensor  # (P,) position in ``kept`` of each pair's head
    tail_slot: torch.Tensor  # (P,) ... and tail
    relation_logits: torch.Tensor  # (P, relation types) raw logits (ensemble: of mean probs)


def top_per_group(group: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` highest-scoring items of each group (ties: the earlier item); all
    items for ``k`` <= 0."""
    if k <= 0 or len(group) == 0:
        return torch.ones_like(group, dtype=torch.bool)
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]  # by group, then score descending
    grouped = group[order]
    first = torch.searchsorted(grouped, grouped)  # first position of each item's group
    rank = torch.arange(len(order), device=group.device) - first
    mask = torch.zeros_like(group, dtype=torch.bool)
    mask[order[rank < k]] = True
    return mask


@dataclass
class _MemberPass:
    """One model's encoder pass over a batch: what its relation head reads."""

    model: SpertModel
    pooler: RangePooler
    spans: torch.Tensor  # (N, S) span representations
    sentence: torch.Tensor  # (B, H)


def _member_pass(model: SpertModel, batch: Batch) -> tuple[_MemberPass, torch.Tensor]:
    """Encode the batch with one model: its pass and its entity logits (N, 1 + entity types)."""
    hidden = model.encode(batch)  # (B, T, H)
    sentence = hidden[:, 0]
    pooler = RangePooler(hidden, model.config.pooling)
    spans = model.span_representations(pooler, batch)  # (N, S) S: span dims
    logits = model.entity_logits(spans, sentence, batch.span_batch).float()
    return _MemberPass(model, pooler, spans, sentence), logits


@torch.no_grad()
def score_batch(
    model: SpertModel | SpertEnsemble,
    batch: Batch,
    max_pairs: int,
    calibration: Calibration | None = None,
    max_entities: int = 0,
) -> ScoredBatch:
    """Entity decisions for every candidate span and raw relation logits for every ordered
    pair of kept spans of a sentence (at most ``max_entities`` kept per sentence, by score;
    0 = no cap).

    An ensemble's members score the same spans and pairs; their mean entity probabilities
    and mean relation probabilities stand in for one model's, as log-probabilities and
    log-odds (which the softmax and the sigmoid turn back into the means).
    """
    passes, member_logits = zip(*(_member_pass(m, batch) for m in members(model)))
    if len(passes) == 1:
        logits = member_logits[0]
    else:
        # log of the mean probability, computed from log-probabilities: no underflow to -inf
        log_probs = torch.stack([m.log_softmax(-1) for m in member_logits])  # (K, N, E+1)
        logits = torch.logsumexp(log_probs, 0) - math.log(len(member_logits))
    if calibration is None:
        entity_probs = logits.softmax(-1)
    else:
        entity_probs = calibration.entity_probabilities(logits)
    entity_scores, best = entity_probs[:, 1:].max(-1)  # (N,) best type other than "none"
    entity_labels = best + 1
    if calibration is not None:
        entity_scores = calibration.entity_score(entity_scores)
    if calibration is None or calibration.entity_threshold is None:
        keep = entity_probs.argmax(-1) > 0  # the argmax is not "none"
    else:
        keep = entity_scores >= calibration.entity_threshold
    kept = torch.nonzero(keep).squeeze(1)  # (M,)
    if max_entities > 0:
        kept = kept[top_per_group(batch.span_batch[kept], entity_scores[kept], max_entities)]

    # Kept spans, ordered by sentence, then start, then end.
    words = batch.span_words[kept]
    # Bound by word indices, not subword length: words with no subwords can outnumber subwords.
    seq = int(words.max()) + 1 if len(words) else 1
    order = torch.argsort((batch.span_batch[kept] * seq + words[:, 0]) * seq + words[:, 1])
    kept = kept[order]
    kept_batch = batch.span_batch[kept]

    # Every ordered pair of distinct kept spans of the same sentence, scored in chunks.
    same_sentence = kept_batch[:, None] == kept_batch[None, :]  # (M, M)
    same_sentence.fill_diagonal_(False)
    head_slot, tail_slot = torch.nonzero(same_sentence, as_tuple=True)  # (P,)
    pairs = torch.stack([kept[head_slot], kept[tail_slot]], dim=1)  # (P, 2) span indices
    pair_types = entity_labels[pairs]  # (P, 2) the predicted types (relation_type_dim)
    relation_logits = _relation_logits(passes, batch, pairs, pair_types, max_pairs)  # (P, R)
    return ScoredBatch(
        kept,
        kept_batch,
        entity_labels,
        entity_scores,
        logits,
        head_slot,
        tail_slot,
        relation_logits,
    )


def _relation_logits(
    passes: Sequence[_MemberPass],
    batch: Batch,
    pairs: torch.Tensor,
    pair_types: torch.Tensor,
    max_pairs: int,
) -> torch.Tensor:
    """pairs (P, 2) -> relation logits (P, R), scored in chunks of ``max_pairs``; for an
    ensemble, the log-odds of its members' mean probabilities."""
    chunks = [slice(i, i + max_pairs) for i in range(0, len(pairs), max_pairs)]
    member_logits = []
    for p in passes:
        n_relations = p.model.relation_classifier.out_features
        member_logits.append(
            torch.cat(
                [
                    p.model.relation_logits(
                        p.pooler, p.spans, p.sentence, batch, pairs[c], pair_types[c]
                    ).float()
                    for c in chunks
                ]
                or [p.spans.new_zeros(0, n_relations, dtype=torch.float32)]
            )
        )
    if len(member_logits) == 1:
        return member_logits[0]
    # In float64, so that confident members (logits above ~17) do not all round to 1.
    mean = torch.stack([m.double().sigmoid() for m in member_logits]).mean(0)
    return torch.logit(mean, eps=1e-15).float()


@torch.no_grad()
def decode_batch(
    model: SpertModel | SpertEnsemble,
    batch: Batch,
    types: Types,
    relation_threshold: float | Sequence[float],
    max_pairs: int,
    calibration: Calibration | None = None,
    max_entities: int = 0,
    max_relations: int = 0,
) -> list[tuple[list[Entity], list[Relation]]]:
    """Entities and relations of each sentence of an inference batch (candidate spans only).

    ``relation_threshold``: one cut-off for every relation type, or one per type; a relation
    is kept when its (calibrated) probability exceeds it. At most ``max_entities`` entities and
    ``max_relations`` relations per sentence are kept, the highest-scoring (0 = no cap).
    """
    scored = score_batch(model, batch, max_pairs, calibration, max_entities)
    kept, kept_batch = scored.kept, scored.kept_batch
    head_slot, tail_slot = scored.head_slot, scored.tail_slot
    if calibration is None:
        relation_probs = scored.relation_logits.sigmoid()
    else:
        relation_probs = calibration.relation_probabilities(scored.relation_logits)
    thresholds = torch.as_tensor(relation_threshold, dtype=relation_probs.dtype)
    hit_pair, hit_type = torch.nonzero(
        relation_probs > thresholds.to(relation_probs.device), as_tuple=True
    )
    hit_score = relation_probs[hit_pair, hit_type]

    # Per-sentence entity numbering: rank of each kept span within its sentence.
    device = kept.device
    first_of_sentence = torch.searchsorted(
        kept_batch, torch.arange(batch.num_sentences, device=device)
    )
    slot_in_sentence = torch.arange(len(kept), device=device) - first_of_sentence[kept_batch]

    # A symmetric relation is one fact: of its two directions keep the higher-scoring one.
    head = slot_in_sentence[head_slot[hit_pair]]
    tail = slot_in_sentence[tail_slot[hit_pair]]
    hit_sentence = kept_batch[head_slot[hit_pair]]
    symmetric = torch.tensor(
        [name in types.symmetric for name in types.relation_names], dtype=torch.bool, device=device
    )
    flip = symmetric[hit_type] & (tail < head)
    key = torch.stack(
        [hit_sentence, torch.where(flip, tail, head), torch.where(flip, head, tail), hit_type], 1
    )
    chosen = torch.arange(len(hit_score), device=device)
    if bool(symmetric.any()) and len(hit_score):
        _, group = torch.unique(key, dim=0, return_inverse=True)
        leaders = torch.nonzero(top_per_group(group, hit_score, 1)).squeeze(1)
        # Listed where the fact's first hit stands (in either direction), as decoding always did.
        first_hit = group.new_full((int(group.max()) + 1,), len(group))
        first_hit = first_hit.scatter_reduce(0, group, chosen, "amin")
        chosen = leaders[torch.argsort(first_hit[group[leaders]])]
    if max_relations > 0:
        chosen = chosen[top_per_group(hit_sentence[chosen], hit_score[chosen], max_relations)]

    results: list[tuple[list[Entity], list[Relation]]] = [
        ([], []) for _ in range(batch.num_sentences)
    ]
    entity_names = types.entities
    for b, (start, end), label, score in zip(
        kept_batch.tolist(),
        batch.span_words[kept].tolist(),
        scored.entity_labels[kept].tolist(),
        scored.entity_scores[kept].tolist(),
    ):
        results[b][0].append(Entity(entity_names[label - 1], start, end, round(score, 6)))
    relation_names = types.relation_names
    for b, h, tl, t, score in zip(
        hit_sentence[chosen].tolist(),
        head[chosen].tolist(),
        tail[chosen].tolist(),
        hit_type[chosen].tolist(),
        hit_score[chosen].tolist(),
    ):
        results[b][1].append(Relation(relation_names[t], h, tl, round(score, 6)))
    return results
