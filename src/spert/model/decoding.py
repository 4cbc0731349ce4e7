"""Decoding: classify every candidate span, drop "none", pair the rest, threshold relations."""

from __future__ import annotations

import torch

from spert.data import Entity, Relation, Types
from spert.model.candidates import Batch
from spert.model.modeling import RangePooler, SpertModel


@torch.no_grad()
def decode_batch(
    model: SpertModel,
    batch: Batch,
    types: Types,
    relation_threshold: float,
    max_pairs: int,
) -> list[tuple[list[Entity], list[Relation]]]:
    """Entities and relations of each sentence of an inference batch (candidate spans only)."""
    hidden = model.encode(batch)  # (B, T, H)
    sentence = hidden[:, 0]
    pooler = RangePooler(hidden, model.config.pooling)
    spans = model.span_representations(pooler, batch)  # (N, H + width)
    entity_probs = model.entity_logits(spans, sentence, batch.span_batch).float().softmax(-1)
    entity_scores, entity_labels = entity_probs.max(-1)  # (N,)

    # Kept spans, ordered by sentence, then start, then end.
    kept = torch.nonzero(entity_labels > 0).squeeze(1)  # (M,)
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
    relation_probs = torch.cat(
        [
            model.relation_logits(pooler, spans, sentence, batch, pairs[i : i + max_pairs])
            .float()
            .sigmoid()
            for i in range(0, len(pairs), max_pairs)
        ]
        or [spans.new_zeros(0, len(types.relations))]
    )  # (P, R)
    hit_pair, hit_type = torch.nonzero(relation_probs > relation_threshold, as_tuple=True)

    # Per-sentence entity numbering: rank of each kept span within its sentence.
    first_of_sentence = torch.searchsorted(
        kept_batch, torch.arange(batch.num_sentences, device=kept.device)
    )
    slot_in_sentence = torch.arange(len(kept), device=kept.device) - first_of_sentence[kept_batch]

    results: list[tuple[list[Entity], list[Relation]]] = [
        ([], []) for _ in range(batch.num_sentences)
    ]
    entity_names = types.entities
    for b, (start, end), label, score in zip(
        kept_batch.tolist(),
        batch.span_words[kept].tolist(),
        entity_labels[kept].tolist(),
        entity_scores[kept].tolist(),
    ):
        results[b][0].append(Entity(entity_names[label - 1], start, end, round(score, 6)))
    relation_names, symmetric = types.relation_names, types.symmetric
    slots, sentence_of = slot_in_sentence.tolist(), kept_batch.tolist()
    heads, tails = head_slot.tolist(), tail_slot.tolist()
    # A symmetric relation is one fact: of its two directions keep the higher-scoring one.
    chosen: dict[tuple[int, int, int, int], tuple[float, int, int]] = {}
    for p, t, score in zip(
        hit_pair.tolist(), hit_type.tolist(), relation_probs[hit_pair, hit_type].tolist()
    ):
        h, tl = slots[heads[p]], slots[tails[p]]
        key = (
            sentence_of[heads[p]],
            *((min(h, tl), max(h, tl)) if relation_names[t] in symmetric else (h, tl)),
            t,
        )
        if key not in chosen or score > chosen[key][0]:
            chosen[key] = (score, h, tl)
    for (b, _, _, t), (score, h, tl) in chosen.items():
        results[b][1].append(Relation(relation_names[t], h, tl, round(score, 6)))
    return results
