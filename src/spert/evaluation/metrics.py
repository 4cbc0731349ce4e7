"""Entity and relation extraction metrics with the semantics of the original SpERT evaluator.

Three settings are scored, each per type, micro and macro averaged (all values in percent):

* ``entities``: an entity is correct if its span and type are both right;
* ``relations``: a relation is correct if its type and the spans of both arguments are right
  (the argument entity types are ignored);
* ``relations_strict``: as ``relations``, and both argument entity types must be right too.

For symmetric relation types the order of head and tail does not matter. Per sentence, the union
of gold and predicted items is taken (duplicates collapse); an item only in gold is a false
negative of its type, one only in the predictions a false positive. Macro averages are the
unweighted means of the per-type precision, recall and F1 over the types that occur in gold or
predictions (like scikit-learn's ``average='macro'``); a zero denominator gives 0. Items are
matched, and counts turned into precision, recall and F1, by :mod:`spert.data.matching`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from spert.data import Sentence, Types
from spert.data.matching import EntityKey, entity_key, precision_recall_f1, relation_key

SpanKey = tuple[int, int]  # (start, end)

SECTIONS = ("entities", "relations", "relations_strict")

_TITLES = {
    "entities": (
        "Entities (named entity recognition, NER)",
        "An entity is correct if its type and span are predicted correctly.",
    ),
    "relations": (
        "Relations without named entity classification (NEC)",
        "A relation is correct if its type and the spans of both related entities are predicted "
        "correctly (entity types are not considered).",
    ),
    "relations_strict": (
        "Relations with named entity classification (NEC)",
        "A relation is correct if its type and both related entities are predicted correctly "
        "(in span and entity type).",
    ),
}


def _overlaps(e1: EntityKey, e2: EntityKey) -> bool:
    """The original ``_check_overlap``: distinct tuples whose spans share a word."""
    return not (e1 == e2 or e1[1] <= e2[0] or e2[1] <= e1[0])


def _sentence_items(
    sentence: Sentence, symmetric: frozenset[str], no_overlap: bool, where: str
) -> tuple[set[EntityKey], set[tuple], set[tuple]]:
    """The entity, relation and strict-relation tuples of one sentence."""
    keys = [entity_key(e) for e in sentence.entities]
    entities = keys
    if no_overlap:
        entities = [e for e in keys if not any(_overlaps(e, other) for other in keys)]

    relations: set[tuple] = set()
    strict: set[tuple] = set()
    for i, rel in enumerate(sentence.relations):
        for name, index in (("head", rel.head), ("tail", rel.tail)):
            if not 0 <= index < len(keys):
                raise ValueError(
                    f"{where}, relations[{i}].{name}: {index} is not an entity index "
                    f"(the sentence has {len(keys)} entities)"
                )
        head, tail = keys[rel.head], keys[rel.tail]
        if no_overlap and _overlaps(head, tail):
            continue
        key = relation_key(head, tail, rel, symmetric)
        strict.add(key)
        relations.add((key[0][:2], key[1][:2], rel.type))
    return set(entities), relations, strict


def _check_aligned(gold: Sequence[Sentence], predicted: Sequence[Sentence]) -> None:
    if len(gold) != len(predicted):
        raise ValueError(
            f"gold and predicted must be aligned: {len(gold)} gold sentences but "
            f"{len(predicted)} predicted sentences"
        )
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g.tokens) != len(p.tokens):
            raise ValueError(
                f"sentence {i}: gold has {len(g.tokens)} tokens but the prediction has "
                f"{len(p.tokens)}; gold and predicted sentences must be aligned"
            )


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 in percent."""
    p, r, f = precision_recall_f1(tp, fp, fn, scale=100.0)
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def _score(
    gold: Iterable[set[tuple]], predicted: Iterable[set[tuple]], order: Sequence[str]
) -> dict[str, Any]:
    """The original ``_score``: per type tp/fp/fn over the per-sentence union of items.

    The type of an item is its last element; ``order`` lists the known types, in the order the
    per-type entries should appear (unknown types that occur follow, sorted).
    """
    counts: dict[str, list[int]] = {}  # type -> [tp, fp, fn]
    for sample_gold, sample_pred in zip(gold, predicted, strict=True):
        for item in sample_gold | sample_pred:
            c = counts.setdefault(item[-1], [0, 0, 0])
            if item in sample_gold and item in sample_pred:
                c[0] += 1
            elif item in sample_pred:
                c[1] += 1
            else:
                c[2] += 1

    names = [t for t in order if t in counts]
    names += sorted(t for t in counts if t not in set(order))
    per_type: dict[str, dict[str, float]] = {}
    for name in names:
        tp, fp, fn = counts[name]
        per_type[name] = {**_prf(tp, fp, fn), "support": tp + fn}

    totals = [sum(c[k] for c in counts.values()) for k in range(3)]
    n = len(per_type)
    macro = {
        key: (sum(m[key] for m in per_type.values()) / n if n else 0.0)
        for key in ("precision", "recall", "f1")
    }
    return {"micro": _prf(*totals), "macro": macro, "per_type": per_type}


def evaluate(
    gold: Sequence[Sentence],
    predicted: Sequence[Sentence],
    types: Types,
    no_overlap: bool = False,
) -> dict[str, Any]:
    """Score predictions against gold sentences (aligned lists) like the original SpERT.

    ``no_overlap`` (the ADE "without overlap" setting) first drops, on both sides, every entity
    that overlaps another entity of its sentence and every relation whose arguments overlap.
    Returns ``{section: {"micro": {precision, recall, f1}, "macro": {...},
    "per_type": {type: {precision, recall, f1, support}}}}`` for the sections ``entities``,
    ``relations`` and ``relations_strict``; values are percentages.
    """
    _check_aligned(gold, predicted)
    symmetric = types.symmetric
    sides: dict[str, list[tuple[set, set, set]]] = {"gold": [], "predicted": []}
    for side, sentences in (("gold", gold), ("predicted", predicted)):
        for i, sentence in enumerate(sentences):
            where = f"{side} sentence {i}"
            sides[side].append(_sentence_items(sentence, symmetric, no_overlap, where))

    orders = (types.entities, types.relation_names, types.relation_names)
    return {
        section: _score(
            (items[k] for items in sides["gold"]),
            (items[k] for items in sides["predicted"]),
            order,
        )
        for k, (section, order) in enumerate(zip(SECTIONS, orders, strict=True))
    }


def _table(section: dict[str, Any]) -> list[str]:
    row = "{:>20} {:>12} {:>12} {:>12} {:>12}"
    lines = [row.format("type", "precision", "recall", "f1-score", "support")]
    total = 0
    for name, m in section["per_type"].items():
        total += m["support"]
        values = (f"{m[k]:.2f}" for k in ("precision", "recall", "f1"))
        lines.append(row.format(name, *values, m["support"]))
    lines.append("")
    for average in ("micro", "macro"):
        m = section[average]
        values = (f"{m[k]:.2f}" for k in ("precision", "recall", "f1"))
        lines.append(row.format(average, *values, total))
    return lines


def format_metrics(metrics: dict[str, Any]) -> str:
    """Readable tables of an ``evaluate`` result, one per section, like the original's output."""
    lines: list[str] = []
    for section in SECTIONS:
        if section not in metrics:
            continue
        title, note = _TITLES[section]
        if lines:
            lines.append("")
        lines += [f"--- {title} ---", note, ""]
        lines += _table(metrics[section])
    return "\n".join(lines)


__all__ = ["evaluate", "format_metrics", "entity_key", "relation_key", "SECTIONS"]
