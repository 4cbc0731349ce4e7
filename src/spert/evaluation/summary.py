"""The headline figures of a metrics dict, and their mean and spread over runs or folds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: Summary figures: name -> (metrics section, average).
SUMMARY = {
    "entity_micro_f1": ("entities", "micro"),
    "entity_macro_f1": ("entities", "macro"),
    "relation_micro_f1": ("relations", "micro"),
    "relation_macro_f1": ("relations", "macro"),
    "relation_strict_micro_f1": ("relations_strict", "micro"),
    "relation_strict_macro_f1": ("relations_strict", "macro"),
}
#: Column titles of the summary figures in reports.
TITLES = {
    "entity_micro_f1": "entity micro F1",
    "entity_macro_f1": "entity macro F1",
    "relation_micro_f1": "relation micro F1",
    "relation_macro_f1": "relation macro F1",
    "relation_strict_micro_f1": "relation strict micro F1",
    "relation_strict_macro_f1": "relation strict macro F1",
}


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """The F1 figures of an ``evaluate`` result (``relation``: spans only; ``strict``: with
    argument entity types)."""
    return {name: float(metrics[sec][avg]["f1"]) for name, (sec, avg) in SUMMARY.items()}


def relation_f1(metrics: dict[str, Any]) -> float:
    """The model-selection score: relation strict micro F1."""
    return summarize(metrics)["relation_strict_micro_f1"]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 denominator; None for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None
