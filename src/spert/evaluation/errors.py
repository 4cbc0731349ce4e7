"""Where the errors come from: each false positive and false negative in exactly one category.

Items are matched as the strict metrics match them (:func:`spert.data.matching.entity_key`,
``relation_key``): an entity by span and type, a relation by its type and both arguments (span
and entity type), the arguments unordered for symmetric relation types; duplicates collapse.
A false positive (FP) is a predicted item that is not in gold, a false negative (FN) a gold item
that is not predicted, so the categories of one side add up to that side's count in the
``entities`` and ``relations_strict`` sections of :func:`spert.evaluation.metrics.evaluate`.

Entities (``e`` a false positive or false negative, the *other side* gold for an FP and the
predictions for an FN; the first rule that applies decides):

* ``wrong_type``: the other side has an entity with the same span (so another type);
* ``wrong_boundary``: the other side has an entity of the same type whose span overlaps ``e``'s
  (shares a word) without being equal;
* ``spurious`` (FP) / ``missed`` (FN): anything else, including an overlap with an entity of
  another type only.

Relations (``r`` with arguments ``h`` and ``t`` and type ``T``):

* FN ``missed_argument``: ``h`` or ``t`` (span and type) is not among the predicted entities,
  so ``r`` could not be predicted;
* ``wrong_direction``: ``T`` is not symmetric and the other side has ``(t, h, T)``;
* ``wrong_type``: the other side relates the same two entities (in either order) with another
  type;
* FP ``wrong_argument``: ``h`` or ``t`` is not a gold entity (wrong span or type; the error
  comes from the entity), and gold has no relation between ``h`` and ``t``;
* ``spurious`` (FP): both arguments are gold entities, but gold does not relate them;
* ``missed`` (FN): both arguments were predicted, but no relation between them.

The entity confusion matrix counts, per span of a gold or predicted entity, its gold type
against its predicted type, "none" where one side has no entity at that span (a span with
several types on a side pairs equal types first, then the rest in name order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from spert.data import DataError, Sentence, Types
from spert.data.matching import EntityKey, RelationKey
from spert.evaluation.metrics import _sentence_items

Side = Literal["fp", "fn"]

#: The categories of each side, in the order reports list them.
ENTITY_KINDS: dict[str, tuple[str, ...]] = {
    "fp": ("wrong_boundary", "wrong_type", "spurious"),
    "fn": ("wrong_boundary", "wrong_type", "missed"),
}
RELATION_KINDS: dict[str, tuple[str, ...]] = {
    "fp": ("wrong_direction", "wrong_type", "wrong_argument", "spurious"),
    "fn": ("missed_argument", "wrong_direction", "wrong_type", "missed"),
}
#: What each category means, for reports.
KIND_HELP: dict[str, str] = {
    "entities fp wrong_boundary": "predicted entity overlaps a gold entity of the same type, "
    "with other boundaries",
    "entities fp wrong_type": "predicted entity has the span of a gold entity, another type",
    "entities fp spurious": "predicted entity with no gold entity of its type at or over its span",
    "entities fn wrong_boundary": "gold entity overlapped by a predicted entity of the same "
    "type, with other boundaries",
    "entities fn wrong_type": "gold entity predicted at its span with another type",
    "entities fn missed": "gold entity with no predicted entity of its type at or over its span",
    "relations fp wrong_direction": "predicted relation whose reverse is in gold",
    "relations fp wrong_type": "predicted relation between two entities that gold relates with "
    "another type",
    "relations fp wrong_argument": "predicted relation with an argument that is not a gold "
    "entity (span or type wrong)",
    "relations fp spurious": "predicted relation between two gold entities that gold does not "
    "relate",
    "relations fn missed_argument": "gold relation with an argument entity that was not predicted",
    "relations fn wrong_direction": "gold relation predicted in the other direction",
    "relations fn wrong_type": "gold relation whose entities are related with another type",
    "relations fn missed": "gold relation between two predicted entities, not predicted",
}
SIDE_NAMES = {"fp": "false positives", "fn": "false negatives"}
NONE_LABEL = "none"


@dataclass(frozen=True)
class EntityError:
    """One false positive or false negative entity and its category."""

    side: Side
    kind: str
    entity: EntityKey
    other: EntityKey | None = None  # the entity of the other side that explains it, if any


@dataclass(frozen=True)
class RelationError:
    """One false positive or false negative relation (strict) and its category."""

    side: Side
    kind: str
    relation: RelationKey
    other: RelationKey | None = None  # the relation of the other side that explains it, if any


@dataclass
class SentenceErrors:
    """The errors of one sentence (its index in the evaluated data)."""

    index: int
    entities: list[EntityError] = field(default_factory=list)
    relations: list[RelationError] = field(default_factory=list)

    def count(self, section: str, side: str, kind: str) -> int:
        """Errors of one category in this sentence (section "entities" or "relations")."""
        items = self.entities if section == "entities" else self.relations
        return sum(1 for e in items if e.side == side and e.kind == kind)


@dataclass(frozen=True)
class ConfusionMatrix:
    """Entity spans by gold type (rows) and predicted type (columns); the last label is
    "none" (no entity at that span on that side); the none/none cell is always 0."""

    labels: list[str]
    counts: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        labels, counts = self.labels, self.counts
        return {"labels": labels, "rows": "gold", "columns": "predicted", "counts": counts}


@dataclass
class ErrorBreakdown:
    """Category counts, per type counts, the confusion matrix and every sentence's errors."""

    counts: dict[str, dict[str, dict[str, int]]]  # section -> side -> kind -> n
    totals: dict[str, dict[str, int]]  # section -> {"tp", "fp", "fn"}
    per_type: dict[str, dict[str, dict[str, int]]]  # section -> type -> {tp, fp, fn, fp_<kind>..}
    confusion: ConfusionMatrix
    sentences: list[SentenceErrors]

    def kinds(self) -> list[tuple[str, str, str]]:
        """Every (section, side, kind), in report order."""
        return [
            (section, side, kind)
            for section, by_side in (("entities", ENTITY_KINDS), ("relations", RELATION_KINDS))
            for side, kinds in by_side.items()
            for kind in kinds
        ]

    def worst_sentences(self, section: str, side: str, kind: str, n: int) -> list[int]:
        """Indices of the (at most ``n``) sentences with the most errors of one category,
        most first (ties: the earlier sentence first)."""
        scored = [(s.count(section, side, kind), s.index) for s in self.sentences]
        scored = sorted((item for item in scored if item[0] > 0), key=lambda x: (-x[0], x[1]))
        return [index for _, index in scored[:n]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "totals": self.totals,
            "per_type": self.per_type,
            "confusion": self.confusion.to_dict(),
        }


def _same_span(a: EntityKey, b: EntityKey) -> bool:
    return a[:2] == b[:2]


def _overlap_same_type(a: EntityKey, b: EntityKey) -> bool:
    return a[2] == b[2] and a[:2] != b[:2] and a[0] < b[1] and b[0] < a[1]


def classify_entity(side: Side, entity: EntityKey, others: Sequence[EntityKey]) -> EntityError:
    """The category of a false positive (``others`` = gold entities) or false negative
    (``others`` = predicted entities) entity; see the module docstring."""
    for other in others:
        if _same_span(entity, other):
            return EntityError(side, "wrong_type", entity, other)
    for other in others:
        if _overlap_same_type(entity, other):
            return EntityError(side, "wrong_boundary", entity, other)
    return EntityError(side, "spurious" if side == "fp" else "missed", entity)


def classify_relation(
    side: Side,
    relation: RelationKey,
    others: set[RelationKey],
    other_entities: set[EntityKey],
    symmetric: frozenset[str],
) -> RelationError:
    """The category of a false positive (``others`` = gold relations, ``other_entities`` = gold
    entities) or false negative (the predicted ones) relation; see the module docstring."""
    head, tail, rtype = relation
    if side == "fn" and not (head in other_entities and tail in other_entities):
        return RelationError(side, "missed_argument", relation)
    if rtype not in symmetric and (tail, head, rtype) in others:
        return RelationError(side, "wrong_direction", relation, (tail, head, rtype))
    pair = {head, tail}
    for other in sorted(others):
        if {other[0], other[1]} == pair and other[2] != rtype:
            return RelationError(side, "wrong_type", relation, other)
    if side == "fp":
        if not (head in other_entities and tail in other_entities):
            return RelationError(side, "wrong_argument", relation)
        return RelationError(side, "spurious", relation)
    return RelationError(side, "missed", relation)


def _items(
    sentence: Sentence, symmetric: frozenset[str], where: str
) -> tuple[set[EntityKey], set[RelationKey]]:
    """The entity keys and strict relation keys of a sentence, as the metrics count them."""
    try:
        entities, _, strict = _sentence_items(sentence, symmetric, False, where)
    except ValueError as e:
        raise DataError(str(e)) from None
    return entities, strict


def _confusion_cells(gold: set[EntityKey], predicted: set[EntityKey]) -> list[tuple[str, str]]:
    """(gold type, predicted type) per span, "none" where a side has no entity there."""
    by_span: dict[tuple[int, int], tuple[set[str], set[str]]] = {}
    for side, keys in ((0, gold), (1, predicted)):
        for start, end, etype in keys:
            by_span.setdefault((start, end), (set(), set()))[side].add(etype)
    cells: list[tuple[str, str]] = []
    for gold_types, pred_types in by_span.values():
        cells += [(t, t) for t in sorted(gold_types & pred_types)]
        rest_gold, rest_pred = sorted(gold_types - pred_types), sorted(pred_types - gold_types)
        for k in range(max(len(rest_gold), len(rest_pred))):
            g = rest_gold[k] if k < len(rest_gold) else None
            p = rest_pred[k] if k < len(rest_pred) else None
            cells.append((g or "", p or ""))  # "" stands for no entity until labels are known
    return cells


def error_breakdown(
    gold: Sequence[Sentence], predicted: Sequence[Sentence], types: Types
) -> ErrorBreakdown:
    """Categorize every false positive and false negative of ``predicted`` against ``gold``
    (aligned lists of the same sentences); see the module docstring for the categories."""
    if len(gold) != len(predicted):
        raise DataError(
            f"gold has {len(gold)} sentences but the predictions have {len(predicted)}; "
            "they must be the same sentences in the same order"
        )
    symmetric = types.symmetric
    counts = {
        "entities": {side: dict.fromkeys(kinds, 0) for side, kinds in ENTITY_KINDS.items()},
        "relations": {side: dict.fromkeys(kinds, 0) for side, kinds in RELATION_KINDS.items()},
    }
    totals = {section: {"tp": 0, "fp": 0, "fn": 0} for section in counts}
    per_type: dict[str, dict[str, dict[str, int]]] = {s: {} for s in counts}
    cells: list[tuple[str, str]] = []
    sentences: list[SentenceErrors] = []

    def add_to_type(section: str, name: str, side: str, kind: str | None = None) -> None:
        """Count one item of a type: side "tp", or "fp"/"fn" with its category."""
        if name not in per_type[section]:
            kinds = ENTITY_KINDS if section == "entities" else RELATION_KINDS
            per_type[section][name] = {"tp": 0, "fp": 0, "fn": 0} | {
                f"{s}_{k}": 0 for s, names in kinds.items() for k in names
            }
        row = per_type[section][name]
        row[side] += 1
        if kind is not None:
            row[f"{side}_{kind}"] += 1

    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g.tokens) != len(p.tokens):
            raise DataError(
                f"sentence {i + 1}: gold has {len(g.tokens)} tokens but the prediction has "
                f"{len(p.tokens)}; gold and predicted sentences must be aligned"
            )
        errors = SentenceErrors(i)
        gold_ents, gold_rels = _items(g, symmetric, f"gold sentence {i + 1}")
        pred_ents, pred_rels = _items(p, symmetric, f"predicted sentence {i + 1}")
        for side, own, others in (("fp", pred_ents, gold_ents), ("fn", gold_ents, pred_ents)):
            ordered_others = sorted(others)
            for key in sorted(own - others):
                errors.entities.append(classify_entity(side, key, ordered_others))
        for key in gold_ents & pred_ents:
            add_to_type("entities", key[2], "tp")
        cells += _confusion_cells(gold_ents, pred_ents)

        for side, own, others, other_ents in (
            ("fp", pred_rels, gold_rels, gold_ents),
            ("fn", gold_rels, pred_rels, pred_ents),
        ):
            for key in sorted(own - others):
                errors.relations.append(classify_relation(side, key, others, other_ents, symmetric))
        for key in gold_rels & pred_rels:
            add_to_type("relations", key[2], "tp")

        totals["entities"]["tp"] += len(gold_ents & pred_ents)
        totals["relations"]["tp"] += len(gold_rels & pred_rels)
        for section, items in (("entities", errors.entities), ("relations", errors.relations)):
            for err in items:
                counts[section][err.side][err.kind] += 1
                totals[section][err.side] += 1
                item_type = err.entity[2] if isinstance(err, EntityError) else err.relation[2]
                add_to_type(section, item_type, err.side, err.kind)
        sentences.append(errors)

    return ErrorBreakdown(
        counts, totals, _ordered(per_type, types), _confusion(cells, types), sentences
    )


def _ordered(
    per_type: dict[str, dict[str, dict[str, int]]], types: Types
) -> dict[str, dict[str, dict[str, int]]]:
    """Per type counts with the known types first, in the types file's order."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for section, order in (("entities", types.entities), ("relations", types.relation_names)):
        found = per_type[section]
        names = [t for t in order if t in found] + sorted(t for t in found if t not in order)
        out[section] = {name: found[name] for name in names}
    return out


def _confusion(cells: list[tuple[str, str]], types: Types) -> ConfusionMatrix:
    seen = {t for cell in cells for t in cell if t}
    labels = list(types.entities) + sorted(seen - set(types.entities))
    none = NONE_LABEL if NONE_LABEL not in labels else f"({NONE_LABEL})"
    labels.append(none)
    index = {name: k for k, name in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for g, p in cells:
        counts[index[g or none]][index[p or none]] += 1
    return ConfusionMatrix(labels, counts)


def kind_title(section: str, side: str, kind: str) -> str:
    """A heading for one category, e.g. "Relations, false negatives: missed argument"."""
    return f"{section.capitalize()}, {SIDE_NAMES[side]}: {kind.replace('_', ' ')}"


__all__ = [
    "ENTITY_KINDS",
    "KIND_HELP",
    "RELATION_KINDS",
    "ConfusionMatrix",
    "EntityError",
    "ErrorBreakdown",
    "RelationError",
    "SentenceErrors",
    "classify_entity",
    "classify_relation",
    "error_breakdown",
    "kind_title",
]
