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

``thresholds`` limits which cut-offs are tuned: "entity" keeps the relations' uncalibrated
threshold, "relations" the entities' argmax (both are still calibrated). On a dev set as small
as CoNLL04's, per-type relation thresholds fit the data they were tuned on more than the test.

The numbers are fitted by :mod:`spert.calibration.fitting`; the model is asked for calibrated
or raw predictions with ``SpERT.predict(calibration=...)``, its own calibration untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, get_args

import numpy as np
import torch

from spert.calibration.fitting import (
    binary_nll,
    fit_binary,
    fit_temperature,
    tune_entity_threshold,
    tune_relation_thresholds,
)
from spert.config import CalibrateThresholds
from spert.data import Sentence, Types
from spert.data.matching import entity_key, precision_recall_f1
from spert.evaluation import evaluate
from spert.evaluation.reliability import (
    SCORE_FLOOR,
    CalibrationSamples,
    calibration_samples,
    reliability,
)
from spert.model.calibration import RELATION_METHODS, Calibration
from spert.model.candidates import Batch
from spert.model.decoding import ScoredBatch, score_batch
from spert.runtime.predictor import SpERT

logger = logging.getLogger(__name__)

#: ``method`` choices: one of RELATION_METHODS, or "auto" (chosen by held-out cross-entropy).
METHODS = ("auto", *RELATION_METHODS)

#: ``thresholds`` choices: which cut-offs are tuned on the data. "entity": only the entity
#: "none" cut-off (relations keep the uncalibrated threshold, expressed after calibration);
#: "relations": only the per-type relation thresholds (entities keep the argmax).
THRESHOLDS: tuple[str, ...] = get_args(CalibrateThresholds)


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
    thresholds: str = "both",
) -> Calibration:
    """Fit a calibration of ``spert`` on the gold sentences ``data`` (held out from training)
    and return it (``spert.calibration`` is neither used nor changed). ``thresholds``: which
    cut-offs are tuned (:data:`THRESHOLDS`). See the module docstring."""
    _check_arguments(data, method, target_precision, thresholds)
    types, raw_threshold = spert.types, spert.inference.relation_threshold
    logger.info("calibration: pass 1 of 3, the uncalibrated model on %d sentences", len(data))
    before = _floor_predictions(spert, data, None, batch_size)
    collected = collect(spert, data, None, batch_size)
    identity = Calibration.identity(types.entities, types.relation_names, raw_threshold)
    calibration = fit_entities(identity, collected, data)
    if thresholds == "relations":
        calibration = replace(calibration, entity_threshold=None)
    if calibration.entity_threshold is not None:  # other spans kept: other pairs
        logger.info("calibration: pass 2 of 3, relation candidates of the new entities")
        collected = collect(spert, data, calibration, batch_size)
    calibration, held_out = fit_relations(calibration, collected, method)
    logger.info("calibration: pass 3 of 3, the calibrated model")
    after = _floor_predictions(spert, data, calibration, batch_size)
    measured = Measured.judge(data, before, after, types)
    if thresholds == "entity":
        kept = calibration.calibrated_threshold(raw_threshold)
        calibration = replace(calibration, relation_thresholds=tuple(kept))
    else:
        calibration = fit_thresholds(calibration, measured, raw_threshold, target_precision)
    fitted_on = {
        "data": data_name or f"{len(data)} sentences",
        "sentences": len(data),
        "thresholds": thresholds,
        "target_precision": target_precision,
        "method_requested": method,
        "held_out_nll": held_out,
    }
    metrics = measured.metrics(raw_threshold, calibration.relation_thresholds)
    return replace(calibration, fitted_on=fitted_on, metrics=_rounded(metrics))


def _check_arguments(
    data: Sequence[Sentence], method: str, target_precision: float | None, thresholds: str
) -> None:
    if thresholds not in THRESHOLDS:
        raise ValueError(f"thresholds must be one of {', '.join(THRESHOLDS)}, got {thresholds!r}")
    if target_precision is not None and thresholds == "entity":
        raise ValueError(
            "a target precision sets relation thresholds: not with thresholds='entity'"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must lie in (0, 1], got {target_precision}")
    if not data:
        raise ValueError("no sentences to calibrate on")


def _floor_predictions(
    spert: SpERT,
    data: Sequence[Sentence],
    calibration: Calibration | None,
    batch_size: int | None,
) -> list[Sentence]:
    """Predictions with ``calibration`` (None: raw scores), relations down to SCORE_FLOOR."""
    return spert.predict(data, batch_size, relation_threshold=SCORE_FLOOR, calibration=calibration)


@torch.no_grad()
def collect(
    spert: SpERT,
    data: Sequence[Sentence],
    calibration: Calibration | None,
    batch_size: int | None = None,
) -> Collected:
    """Entity logits of every candidate span and relation logits of every pair of kept spans
    (kept as ``calibration`` decides; None: argmax), with their gold labels."""
    settings = spert.inference
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
            _collect_batch(parts, [data[j] for j in chunk], chunk, batch, scored, spert.types)
    finally:
        spert.model.train(was_training)
    n_rel = len(spert.types.relations)
    return Collected(
        torch.cat(parts["entity_logits"]),
        torch.cat(parts["entity_labels"]),
        np.concatenate(parts["entity_gold_pairs"]),
        torch.cat(parts["relation_logits"]).reshape(-1, n_rel),
        torch.cat(parts["relation_labels"]).reshape(-1, n_rel),
        np.concatenate(parts["relation_sentence"]).astype(np.int64),
    )


def _collect_batch(
    parts: dict[str, list[Any]],
    sentences: Sequence[Sentence],
    chunk: Sequence[int],
    batch: Batch,
    scored: ScoredBatch,
    types: Types,
) -> None:
    """Append the logits of a batch (of ``sentences``, at ``chunk`` in the data) and their gold
    labels to ``parts``."""
    n_entity = len(types.entities) + 1
    # Integer keys: (sentence in batch, start, end) of spans, times entity type.
    words = max(len(s.tokens) for s in sentences) + 1
    span_batch = batch.span_batch.numpy()
    span_words = batch.span_words.numpy()
    span_key = (span_batch * words + span_words[:, 0]) * words + span_words[:, 1]
    gold_entities, gold_relations = _gold_keys(sentences, words, types)
    labels, gold_pairs = _entity_labels(span_key, gold_entities, n_entity)

    kept = scored.kept.cpu().numpy()
    head = kept[scored.head_slot.cpu().numpy()]
    tail = kept[scored.tail_slot.cpu().numpy()]
    entity_type = scored.entity_labels.cpu().numpy()
    head_key = span_key[head] * n_entity + entity_type[head]
    tail_key = span_key[tail] * n_entity + entity_type[tail]
    radix = len(sentences) * words * words * n_entity  # entity keys are below it
    relation_labels = _relation_labels(
        head_key * radix + tail_key, gold_relations, radix, len(types.relations)
    )
    parts["entity_logits"].append(scored.entity_logits.cpu())
    parts["entity_labels"].append(torch.from_numpy(labels))
    parts["entity_gold_pairs"].append(gold_pairs)
    parts["relation_logits"].append(scored.relation_logits.cpu())
    parts["relation_labels"].append(torch.from_numpy(relation_labels))
    parts["relation_sentence"].append(np.asarray(chunk)[span_batch[head]])


def _gold_keys(
    sentences: Sequence[Sentence], words: int, types: Types
) -> tuple[np.ndarray, np.ndarray]:
    """The gold annotations of a batch's sentences: entities as (span key, 1 + type), relations
    as (head key, tail key, type), with entity keys ``span key * (1 + entity types) + 1 +
    type``; a symmetric relation both ways."""
    entity_index = {t: i + 1 for i, t in enumerate(types.entities)}
    relation_index = {r: i for i, r in enumerate(types.relation_names)}
    n_entity = len(types.entities) + 1
    entities: list[tuple[int, int]] = []
    relations: list[tuple[int, int, int]] = []
    for b, sentence in enumerate(sentences):
        keys = [
            ((b * words + e.start) * words + e.end) * n_entity + entity_index[e.type]
            for e in sentence.entities
        ]
        entities += [(k // n_entity, k % n_entity) for k in keys]
        for rel in sentence.relations:
            h, t, r = keys[rel.head], keys[rel.tail], relation_index[rel.type]
            relations.append((h, t, r))
            if rel.type in types.symmetric:
                relations.append((t, h, r))
    return (
        np.array(entities, dtype=np.int64).reshape(-1, 2),
        np.array(relations, dtype=np.int64).reshape(-1, 3),
    )


def _entity_labels(
    span_key: np.ndarray, gold: np.ndarray, n_entity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate span: its gold label (0: no gold entity with this span, else 1 + type) and
    per label whether (span, label) is gold."""
    gold_pairs = np.zeros((len(span_key), n_entity), dtype=bool)
    labels = np.zeros(len(span_key), dtype=np.int64)
    if len(span_key) and len(gold):
        order = np.argsort(span_key)
        found = np.minimum(np.searchsorted(span_key[order], gold[:, 0]), len(order) - 1)
        hit = span_key[order][found] == gold[:, 0]  # gold spans among the candidates
        gold_pairs[order[found[hit]], gold[hit, 1]] = True
        labels[order[found[hit]]] = gold[hit, 1]
    return labels, gold_pairs


def _relation_labels(pair_key: np.ndarray, gold: np.ndarray, radix: int, n_rel: int) -> np.ndarray:
    """Per candidate pair (``head key * radix + tail key``) and relation type: 1 where it is a
    gold relation."""
    labels = np.zeros((len(pair_key), n_rel), dtype=np.float32)
    if len(gold) and len(pair_key):
        gold_pair = gold[:, 0] * radix + gold[:, 1]
        for r in range(n_rel):
            labels[:, r] = np.isin(pair_key, gold_pair[gold[:, 2] == r])
    return labels


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


def fit_entities(
    calibration: Calibration, collected: Collected, data: Sequence[Sentence]
) -> Calibration:
    """``calibration`` with the entity temperature, the Platt scaling of the entity score and
    the entity cut-off fitted on the candidate spans of ``collected``."""
    temperature = fit_temperature(collected.entity_logits, collected.entity_labels)
    scale, bias = fit_entity_score(collected, temperature)
    calibration = replace(
        calibration, entity_temperature=temperature, entity_scale=scale, entity_bias=bias
    )
    probs, best, correct = _best_types(collected, temperature)
    scores = calibration.entity_score(torch.from_numpy(best)).numpy()
    threshold = tune_entity_threshold(
        scores, correct, probs.argmax(-1) > 0, gold_entity_count(data)
    )
    return replace(calibration, entity_threshold=threshold)


def fit_relations(
    calibration: Calibration, collected: Collected, method: str
) -> tuple[Calibration, dict[str, float] | None]:
    """``calibration`` with per relation type (scale, bias) fitted by ``method``, and the
    held-out cross-entropy per method where ``method`` is "auto": it picks temperature or Platt
    by the summed cross-entropy on held-out halves (fit on even sentences, score on odd, and
    back)."""
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
    scale = tuple(a for a, _ in fitted)
    bias = tuple(b for _, b in fitted)
    calibration = replace(
        calibration, relation_method=method, relation_scale=scale, relation_bias=bias
    )
    return calibration, held_out


def fit_thresholds(
    calibration: Calibration,
    measured: Measured,
    raw_threshold: float,
    target_precision: float | None,
) -> Calibration:
    """``calibration`` with per-type relation thresholds tuned on its floor predictions
    (``measured.after``): maximizing strict micro F1 from the uncalibrated ``raw_threshold``, or
    the lowest meeting ``target_precision``."""
    after = measured.after
    thresholds = tune_relation_thresholds(
        after.relation_scores,
        after.relation_correct,
        measured.type_index(after),
        measured.gold_relations,
        calibration.calibrated_threshold(raw_threshold),
        target_precision,
    )
    return replace(calibration, relation_thresholds=tuple(thresholds))


def gold_entity_count(data: Sequence[Sentence]) -> int:
    """Gold entities, counted as evaluation counts them (duplicates collapse)."""
    return sum(len({entity_key(e) for e in s.entities}) for s in data)


def gold_relation_counts(data: Sequence[Sentence], types: Types) -> np.ndarray:
    """Gold relations per type, counted as strict evaluation counts them."""
    empty = [Sentence(list(s.tokens)) for s in data]
    per_type = evaluate(data, empty, types)["relations_strict"]["per_type"]
    return np.array(
        [per_type.get(t, {}).get("support", 0) for t in types.relation_names],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class Measured:
    """The floor predictions before and after calibration, judged against gold."""

    before: CalibrationSamples
    after: CalibrationSamples
    gold_entities: int
    gold_relations: np.ndarray  # per relation type
    types: Types

    @classmethod
    def judge(
        cls,
        data: Sequence[Sentence],
        before: Sequence[Sentence],
        after: Sequence[Sentence],
        types: Types,
    ) -> Measured:
        """The predictions ``before`` and ``after`` calibration against the gold ``data``."""
        return cls(
            calibration_samples(data, before, types),
            calibration_samples(data, after, types),
            gold_entity_count(data),
            gold_relation_counts(data, types),
            types,
        )

    def type_index(self, samples: CalibrationSamples) -> np.ndarray:
        """Each predicted relation's type as an index into the relation types."""
        index = {name: i for i, name in enumerate(self.types.relation_names)}
        return np.array([index[t] for t in samples.relation_types], dtype=np.int64)

    def metrics(self, raw_threshold: float, thresholds: Sequence[float]) -> dict[str, Any]:
        """ECE and micro F1 before and after; relations at the uncalibrated ``raw_threshold``
        before, at the tuned per-type ``thresholds`` after."""
        before, after = self.before, self.after
        default = [raw_threshold] * len(self.gold_relations)
        return {
            "score_floor": SCORE_FLOOR,
            "entities": {
                "ece_before": reliability(before.entity_scores, before.entity_correct).ece,
                "ece_after": reliability(after.entity_scores, after.entity_correct).ece,
                "micro_f1_before": self.entity_f1(before),
                "micro_f1_after": self.entity_f1(after),
            },
            "relations_strict": {
                "ece_before": reliability(before.relation_scores, before.relation_correct).ece,
                "ece_after": reliability(after.relation_scores, after.relation_correct).ece,
                "micro_f1_default": self.relation_f1(before, default),
                "micro_f1_tuned": self.relation_f1(after, thresholds),
            },
        }

    def entity_f1(self, samples: CalibrationSamples) -> float:
        """Entity micro F1 (percent) of the predictions."""
        tp = int(samples.entity_correct.sum())
        fp = len(samples.entity_correct) - tp
        return 100 * float(precision_recall_f1(tp, fp, self.gold_entities - tp)[2])

    def relation_f1(self, samples: CalibrationSamples, thresholds: Sequence[float]) -> float:
        """Strict relation micro F1 (percent) of the floor predictions cut at ``thresholds``."""
        cut = np.asarray(thresholds, dtype=np.float64)[self.type_index(samples)]
        keep = samples.relation_scores > cut
        tp = int(np.sum(keep & samples.relation_correct))
        gold = int(self.gold_relations.sum())
        return 100 * float(precision_recall_f1(tp, int(keep.sum()) - tp, gold - tp)[2])


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
