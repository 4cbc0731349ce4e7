"""Fitting a model's calibration on held-out data (``spert calibrate``, ``train --calibrate``).

Three passes over the data:

1. the model as it is, relations predicted down to :data:`SCORE_FLOOR`: ECE and F1 before;
   every candidate span's entity logits (with its gold label) and every candidate pair's
   relation logits (pairs of kept entities; label: the gold relation of that type between
   gold entities of the same spans and types, as strict evaluation counts it);
2. an entity temperature (cross-entropy over all candidate spans), Platt scaling of the best
   type's probability (the entity score; fitted on spans scored at least SCORE_FLOOR) and the
   entity "none" cut-off that maximizes entity micro F1 (argmax, as uncalibrated, unless a
   cut-off beats it);
   per relation type a temperature or Platt scaling (``method="auto"``: the one with the lower
   held-out cross-entropy in a two-fold split of the sentences); if the entity cut-off changed
   which spans are kept, the relation logits are collected again for the new pairs;
3. the calibrated model at the floor: per-type relation thresholds maximizing strict micro F1
   from the uncalibrated 0.4 (or the lowest meeting a target precision), ECE and F1 after.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spert.data import Sentence
from spert.evaluation import evaluate
from spert.evaluation.calibration import (
    SCORE_FLOOR,
    binary_nll,
    calibration_samples,
    f1,
    fit_binary,
    fit_temperature,
    reliability,
    tune_relation_thresholds,
)
from spert.model.calibration import RELATION_METHODS, Calibration
from spert.model.decoding import score_batch
from spert.runtime.predictor import SpERT

logger = logging.getLogger(__name__)

#: ``method`` choices: one of RELATION_METHODS, or "auto" (chosen by held-out cross-entropy).
METHODS = ("auto", *RELATION_METHODS)


@dataclass
class Collected:
    """Logits and labels of the candidates of a pass over the data."""

    entity_logits: torch.Tensor  # (N, 1 + entity types)
    entity_labels: torch.Tensor  # (N,) 0 = no gold entity with this span, else 1 + type
    entity_gold_pairs: np.ndarray  # (N, 1 + entity types) bool: (span, type) is gold
    relation_logits: torch.Tensor  # (P, relation types)
    relation_labels: torch.Tensor  # (P, relation types) 1 = strictly a gold relation
    relation_sentence: np.ndarray  # (P,) sentence index of each pair


def calibrate(
    spert: SpERT,
    data: Sequence[Sentence],
    method: str = "auto",
    target_precision: float | None = None,
    data_name: str | None = None,
    batch_size: int | None = None,
) -> Calibration:
    """Fit a calibration of ``spert`` on the gold sentences ``data`` (held out from training)
    and return it (``spert.calibration`` is left as it was). See the module docstring."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must lie in (0, 1], got {target_precision}")
    if not data:
        raise ValueError("no sentences to calibrate on")
    types = spert.types
    previous = spert.calibration
    try:
        spert.calibration = None
        logger.info("calibration: pass 1 of 3, the uncalibrated model on %d sentences", len(data))
        before = spert.predict(data, batch_size, relation_threshold=SCORE_FLOOR)
        collected = collect(spert, data, None, batch_size)

        temperature = fit_temperature(collected.entity_logits, collected.entity_labels)
        entity_platt = fit_entity_score(collected, temperature)
        entity_threshold = tune_entity_threshold(collected, temperature, entity_platt, data)
        entity_only = Calibration(
            tuple(types.entities),
            tuple(types.relation_names),
            temperature,
            entity_threshold,
            relation_scale=(1.0,) * len(types.relations),
            relation_bias=(0.0,) * len(types.relations),
            relation_thresholds=(spert.inference.relation_threshold,) * len(types.relations),
            entity_scale=entity_platt[0],
            entity_bias=entity_platt[1],
        )
        if entity_threshold is not None:  # other spans kept: other pairs
            logger.info("calibration: pass 2 of 3, relation candidates of the new entities")
            collected = collect(spert, data, entity_only, batch_size)
        chosen, scale, bias, held_out = fit_relations(collected, method)

        partial = Calibration(
            entity_only.entity_types,
            entity_only.relation_types,
            temperature,
            entity_threshold,
            chosen,
            tuple(scale),
            tuple(bias),
            (SCORE_FLOOR,) * len(types.relations),
            entity_platt[0],
            entity_platt[1],
        )
        logger.info("calibration: pass 3 of 3, the calibrated model")
        spert.calibration = partial
        after = spert.predict(data, batch_size, relation_threshold=SCORE_FLOOR)
    finally:
        spert.calibration = previous

    gold_counts = gold_relation_counts(data, spert)
    samples_before = calibration_samples(data, before, types)
    samples_after = calibration_samples(data, after, types)
    index = {name: i for i, name in enumerate(types.relation_names)}
    type_index = np.array([index[t] for t in samples_after.relation_types], dtype=np.int64)
    default = partial.calibrated_threshold(spert.inference.relation_threshold)
    thresholds = tune_relation_thresholds(
        samples_after.relation_scores,
        samples_after.relation_correct,
        type_index,
        gold_counts,
        default,
        target_precision,
    )
    before_index = np.array(
        [index[t] for t in samples_before.relation_types], dtype=np.int64
    ).reshape(-1)
    raw = spert.inference.relation_threshold
    metrics = {
        "score_floor": SCORE_FLOOR,
        "entities": {
            "ece_before": reliability(
                samples_before.entity_scores, samples_before.entity_correct
            ).ece,
            "ece_after": reliability(samples_after.entity_scores, samples_after.entity_correct).ece,
            "micro_f1_before": _entity_f1(samples_before, data),
            "micro_f1_after": _entity_f1(samples_after, data),
        },
        "relations_strict": {
            "ece_before": reliability(
                samples_before.relation_scores, samples_before.relation_correct
            ).ece,
            "ece_after": reliability(
                samples_after.relation_scores, samples_after.relation_correct
            ).ece,
            "micro_f1_default": _relation_f1(
                samples_before, before_index, [raw] * len(gold_counts), gold_counts
            ),
            "micro_f1_tuned": _relation_f1(samples_after, type_index, thresholds, gold_counts),
        },
    }
    fitted_on = {
        "data": data_name or f"{len(data)} sentences",
        "sentences": len(data),
        "target_precision": target_precision,
        "method_requested": method,
        "held_out_nll": held_out,
    }
    return Calibration(
        partial.entity_types,
        partial.relation_types,
        temperature,
        entity_threshold,
        chosen,
        tuple(scale),
        tuple(bias),
        tuple(thresholds),
        entity_platt[0],
        entity_platt[1],
        fitted_on,
        _rounded(metrics),
    )


@torch.no_grad()
def collect(
    spert: SpERT,
    data: Sequence[Sentence],
    calibration: Calibration | None,
    batch_size: int | None = None,
) -> Collected:
    """Entity logits of every candidate span and relation logits of every pair of kept spans
    (kept as ``calibration`` decides; None: argmax), with their gold labels."""
    types, settings = spert.types, spert.inference
    entity_index = {t: i + 1 for i, t in enumerate(types.entities)}
    relation_index = {r: i for i, r in enumerate(types.relation_names)}
    n_entity, n_rel = len(types.entities) + 1, len(types.relations)
    parts: dict[str, list[Any]] = {k: [] for k in Collected.__dataclass_fields__}
    was_training = spert.model.training
    spert.model.eval()
    try:
        for chunk, batch in spert.inference_batches(data, batch_size or settings.eval_batch_size):
            scored = score_batch(
                spert.model,
                batch.to(spert.device),
                settings.max_pairs,
                calibration,
                settings.max_entities_per_sentence,
            )
            # Integer keys: (sentence in batch, start, end) of spans, times entity type.
            words = max(len(data[j].tokens) for j in chunk) + 1
            span_batch = batch.span_batch.numpy()
            span_words = batch.span_words.numpy()
            span_key = (span_batch * words + span_words[:, 0]) * words + span_words[:, 1]
            gold_entities: list[tuple[int, int]] = []  # (span key, 1 + type)
            gold_relations: list[tuple[int, int, int]] = []  # (head key, tail key, type)
            for b, j in enumerate(chunk):  # gold annotations of the batch's sentences
                sentence = data[j]
                keys = [
                    ((b * words + e.start) * words + e.end) * n_entity + entity_index[e.type]
                    for e in sentence.entities
                ]
                gold_entities += [(k // n_entity, k % n_entity) for k in keys]
                for rel in sentence.relations:
                    h, t, r = keys[rel.head], keys[rel.tail], relation_index[rel.type]
                    gold_relations.append((h, t, r))
                    if rel.type in types.symmetric:
                        gold_relations.append((t, h, r))
            gold_e = np.array(gold_entities, dtype=np.int64).reshape(-1, 2)
            gold_pairs = np.zeros((len(span_key), n_entity), dtype=bool)
            labels = np.zeros(len(span_key), dtype=np.int64)
            if len(span_key) and len(gold_e):
                order = np.argsort(span_key)
                found = np.minimum(np.searchsorted(span_key[order], gold_e[:, 0]), len(order) - 1)
                hit = span_key[order][found] == gold_e[:, 0]  # gold spans among the candidates
                gold_pairs[order[found[hit]], gold_e[hit, 1]] = True
                labels[order[found[hit]]] = gold_e[hit, 1]

            kept = scored.kept.cpu().numpy()
            head = kept[scored.head_slot.cpu().numpy()]
            tail = kept[scored.tail_slot.cpu().numpy()]
            entity_type = scored.entity_labels.cpu().numpy()
            head_key = span_key[head] * n_entity + entity_type[head]
            tail_key = span_key[tail] * n_entity + entity_type[tail]
            relation_labels = np.zeros((len(head), n_rel), dtype=np.float32)
            if gold_relations and len(head):
                gold_r = np.array(gold_relations, dtype=np.int64)
                # Pair keys: (head, tail) of entity keys (each below radix).
                radix = len(chunk) * words * words * n_entity
                pair_key = head_key * radix + tail_key
                gold_pair = gold_r[:, 0] * radix + gold_r[:, 1]
                for r in range(n_rel):
                    relation_labels[:, r] = np.isin(pair_key, gold_pair[gold_r[:, 2] == r])
            parts["entity_logits"].append(scored.entity_logits.cpu())
            parts["entity_labels"].append(torch.from_numpy(labels))
            parts["entity_gold_pairs"].append(gold_pairs)
            parts["relation_logits"].append(scored.relation_logits.cpu())
            parts["relation_labels"].append(torch.from_numpy(relation_labels))
            parts["relation_sentence"].append(np.asarray(chunk)[span_batch[head]])
    finally:
        spert.model.train(was_training)
    return Collected(
        torch.cat(parts["entity_logits"]),
        torch.cat(parts["entity_labels"]),
        np.concatenate(parts["entity_gold_pairs"]),
        torch.cat(parts["relation_logits"]).reshape(-1, n_rel),
        torch.cat(parts["relation_labels"]).reshape(-1, n_rel),
        np.concatenate(parts["relation_sentence"]).astype(np.int64),
    )


def _best_types(collected: Collected, temperature: float) -> tuple[np.ndarray, ...]:
    """Per candidate span: temperature-scaled probabilities, best type's probability, and
    whether (span, best type) is a gold entity."""
    probs = (collected.entity_logits.double() / temperature).softmax(-1).numpy()
    rows = np.arange(len(probs))
    best_type = probs[:, 1:].argmax(-1) + 1
    return probs, probs[rows, best_type], collected.entity_gold_pairs[rows, best_type]


def fit_entity_score(collected: Collected, temperature: float) -> tuple[float, float]:
    """Platt scaling (scale, bias) of the best type's probability, fitted on the candidate
    spans where it is at least SCORE_FLOOR (the others are never kept, and would swamp the
    fit with easy negatives)."""
    _, best, correct = _best_types(collected, temperature)
    plausible = best >= SCORE_FLOOR
    p = torch.from_numpy(best[plausible]).clamp(1e-12, 1 - 1e-12)
    return fit_binary(torch.log(p) - torch.log1p(-p), torch.from_numpy(correct[plausible]), "platt")


def tune_entity_threshold(
    collected: Collected,
    temperature: float,
    platt: tuple[float, float],
    data: Sequence[Sentence],
) -> float | None:
    """The "none" decision maximizing entity micro F1 over the candidate spans: None (argmax)
    unless a cut-off on the calibrated entity score does strictly better."""
    probs, best, correct = _best_types(collected, temperature)
    z = np.log(np.clip(best, 1e-12, 1 - 1e-12)) - np.log1p(-np.clip(best, 1e-12, 1 - 1e-12))
    best = 1.0 / (1.0 + np.exp(-(platt[0] * z + platt[1])))
    total_gold = sum(len({(e.start, e.end, e.type) for e in s.entities}) for s in data)
    argmax_keep = probs.argmax(-1) > 0
    tp = int(np.sum(argmax_keep & correct))
    argmax_f1 = float(f1(tp, int(argmax_keep.sum()) - tp, total_gold - tp))
    order = np.argsort(-best, kind="stable")
    scores, hits = best[order], correct[order].astype(np.int64)
    if not len(scores):
        return None
    cum_tp = np.cumsum(hits)
    k = np.arange(1, len(scores) + 1)
    last_of_tie = np.ones(len(scores), dtype=bool)  # ">= t" keeps all scores tied with t
    last_of_tie[:-1] = scores[1:] < scores[:-1]
    candidates = np.where(last_of_tie, f1(cum_tp, k - cum_tp, total_gold - cum_tp), -1.0)
    i = int(np.argmax(candidates))
    if candidates[i] > argmax_f1 + 1e-12:
        # Half-way to the next lower score: float32 decoding keeps the same spans.
        return float(scores[i] + scores[i + 1]) / 2 if i + 1 < len(scores) else float(scores[i]) / 2
    return None


def fit_relations(collected: Collected, method: str) -> tuple[str, list[float], list[float], Any]:
    """Per relation type (scale, bias), by ``method``; "auto" picks temperature or Platt by the
    summed cross-entropy on held-out halves (fit on even sentences, score on odd, and back)."""
    logits, labels = collected.relation_logits, collected.relation_labels
    n_rel = logits.shape[1]
    held_out: dict[str, float] | None = None
    if method == "auto":
        half = torch.from_numpy(collected.relation_sentence % 2 == 0)
        held_out = {}
        for candidate in RELATION_METHODS:
            total = 0.0
            for fit_on, score_on in ((half, ~half), (~half, half)):
                for r in range(n_rel):
                    a, b = fit_binary(logits[fit_on, r], labels[fit_on, r], candidate)
                    total += binary_nll(logits[score_on, r], labels[score_on, r], a, b)
            held_out[candidate] = round(total / max(len(logits), 1), 6)
        method = min(RELATION_METHODS, key=lambda m: held_out[m])  # type: ignore[index]
    fitted = [fit_binary(logits[:, r], labels[:, r], method) for r in range(n_rel)]
    return method, [a for a, _ in fitted], [b for _, b in fitted], held_out


def gold_relation_counts(data: Sequence[Sentence], spert: SpERT) -> np.ndarray:
    """Gold relations per type, counted as strict evaluation counts them."""
    empty = [Sentence(list(s.tokens)) for s in data]
    per_type = evaluate(data, empty, spert.types)["relations_strict"]["per_type"]
    return np.array(
        [per_type.get(t, {}).get("support", 0) for t in spert.types.relation_names],
        dtype=np.int64,
    )


def _entity_f1(samples: Any, data: Sequence[Sentence]) -> float:
    total_gold = sum(len({(e.start, e.end, e.type) for e in s.entities}) for s in data)
    tp = int(samples.entity_correct.sum())
    return 100 * float(f1(tp, len(samples.entity_correct) - tp, total_gold - tp))


def _relation_f1(
    samples: Any, type_index: np.ndarray, thresholds: Sequence[float], gold_counts: np.ndarray
) -> float:
    """Strict relation micro F1 (percent) of the floor predictions cut at ``thresholds``."""
    keep = samples.relation_scores > np.asarray(thresholds, dtype=np.float64)[type_index]
    tp = int(np.sum(keep & samples.relation_correct))
    return 100 * float(f1(tp, int(keep.sum()) - tp, int(gold_counts.sum()) - tp))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
