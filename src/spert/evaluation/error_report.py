"""The error report of ``spert eval --report DIR``: how far to trust the scores, and where
the errors come from.

:func:`write_report` writes into ``DIR``:

* ``reliability.png``: reliability diagrams (mean score against the fraction correct, 10 equal
  bins) for entities and relations, before and after calibration when the model has one, with
  the expected calibration error (ECE); measured on the predictions made with relations kept
  down to a low floor (:data:`spert.evaluation.reliability.SCORE_FLOOR`), so that every
  relation the model gives some chance is counted (see
  :func:`spert.evaluation.reliability.calibration_samples`);
* ``pr_relations.png`` and ``pr_entities.png``: precision-recall curves per type from the same
  floor predictions (the score as cut-off), with the model's operating point (its actual
  predictions) marked;
* ``confusion.png``: the entity confusion matrix (gold type against predicted type by span);
* ``errors.png``: the error breakdown (:mod:`spert.evaluation.errors`);
* ``errors.html``: the worst sentences per error kind, drawn like ``spert visualize`` draws gold
  against predictions;
* ``report.md``: a summary of all numbers that links the images, and ``report.json``: the
  numbers (metrics, reliability bins, ECE, curves, operating points, breakdown).

Plots need matplotlib (the ``experiments`` extra); :mod:`spert.render.figures` draws them.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spert.data import Sentence, Types
from spert.data.matching import EntityKey, precision_recall_f1
from spert.evaluation.errors import (
    KIND_HELP,
    EntityError,
    ErrorBreakdown,
    RelationError,
    error_breakdown,
    kind_title,
)
from spert.evaluation.reliability import Reliability, calibration_samples, reliability
from spert.render.figures import new_figure, save_png
from spert.render.pages import SentenceGroup, render_comparison_groups, write_html
from spert.utils import atomic_write_text

#: Sentences per error kind on the errors page.
WORST_SENTENCES = 5
#: Equal-width score bins of the reliability diagrams and the ECE.
RELIABILITY_BINS = 10
REPORT_FILES = (
    "report.md",
    "report.json",
    "reliability.png",
    "pr_relations.png",
    "pr_entities.png",
    "confusion.png",
    "errors.png",
    "errors.html",
)


class ReportError(RuntimeError):
    """The report cannot be written (matplotlib is missing)."""


def report_available() -> bool:
    """Whether matplotlib, which draws the report's plots, is installed."""
    return importlib.util.find_spec("matplotlib") is not None


# -------------------------------------------------------------------------------- numbers


def precision_recall(scores: np.ndarray, correct: np.ndarray, gold: int) -> dict[str, Any]:
    """Precision and recall when items scoring at least each distinct score are kept
    (highest cut-off first), and the average precision (area under the step curve); ``gold``
    is the number of gold items (recall's denominator, including those never predicted)."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, correct = scores[order], correct[order]
    tp = np.cumsum(correct)
    kept = np.arange(1, len(scores) + 1)
    # Tied scores are kept or dropped together: use the last position of each distinct score.
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if len(scores) else kept[:0]
    tp, kept = tp[last], kept[last]
    precision, recall, _ = precision_recall_f1(tp, kept - tp, gold - tp)
    # As scikit-learn's average_precision_score: sum of precision times the recall gained at
    # each distinct cut-off, so tied scores do not depend on their order.
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if gold else 0.0
    return {
        "thresholds": _rounded(scores[last]),
        "precision": _rounded(precision),
        "recall": _rounded(recall),
        "average_precision": round(ap, 6),
        "gold": int(gold),
        "predicted": int(len(scores)),
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


def _reliability_dict(r: Reliability) -> dict[str, Any]:
    def clean(values: Sequence[float]) -> list[float | None]:
        return [None if math.isnan(v) else round(v, 6) for v in values]

    return {
        "ece": round(r.ece, 6),
        "edges": _rounded(np.asarray(r.edges)),
        "counts": r.counts,
        "mean_score": clean(r.mean_score),
        "accuracy": clean(r.accuracy),
    }


def _operating_point(row: Mapping[str, int], threshold: float | None) -> dict[str, Any]:
    tp, fp, fn = row["tp"], row["fp"], row["fn"]
    precision, recall, _ = precision_recall_f1(tp, fp, fn)
    return {
        "threshold": threshold,
        "precision": round(float(precision), 6),
        "recall": round(float(recall), 6),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _by_type(names: Sequence[str], order: Sequence[str]) -> list[str]:
    seen = set(names)
    return [t for t in order if t in seen] + sorted(seen - set(order))


def _curves(
    scores: np.ndarray,
    correct: np.ndarray,
    names: np.ndarray,
    per_type: Mapping[str, Mapping[str, int]],
    order: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """A precision-recall curve per type (gold counts from the breakdown's per type rows)."""
    names = np.asarray(names, dtype=object)
    out = {}
    for name in _by_type(list(names) + list(per_type), order):
        mask = names == name
        row = per_type.get(name, {"tp": 0, "fn": 0})
        out[name] = precision_recall(scores[mask], correct[mask], row["tp"] + row["fn"])
    return out


@dataclass(frozen=True)
class ReportInput:
    """What a report is computed from.

    ``predictions`` are the model's (at its thresholds), ``floor_predictions`` the same model's
    with relations kept down to the score floor; ``floor_uncalibrated`` those of the model
    without its calibration, where it has one ("before" in the reliability numbers).
    ``relation_thresholds`` (per type) and ``entity_threshold`` are the cut-offs the
    predictions were made with (None for the entity argmax), for the record.
    """

    gold: Sequence[Sentence]
    predictions: Sequence[Sentence]
    types: Types
    floor_predictions: Sequence[Sentence]
    floor_uncalibrated: Sequence[Sentence] | None = None
    relation_thresholds: Mapping[str, float] | None = None
    entity_threshold: float | None = None
    metrics: Mapping[str, Any] | None = None
    info: Mapping[str, Any] | None = None


def report_numbers(report: ReportInput) -> tuple[dict[str, Any], ErrorBreakdown]:
    """Everything ``report.json`` holds, and the error breakdown it was computed from."""
    gold, predictions, types = report.gold, report.predictions, report.types
    floor_predictions, floor_uncalibrated = report.floor_predictions, report.floor_uncalibrated
    breakdown = error_breakdown(gold, predictions, types)
    variants = {"before": floor_uncalibrated, "after": floor_predictions}
    if floor_uncalibrated is None:
        variants = {"before": floor_predictions, "after": None}
    calibration: dict[str, dict[str, Any]] = {"entities": {}, "relations": {}}
    for variant, floor in variants.items():
        if floor is None:
            for section in calibration:
                calibration[section][variant] = None
            continue
        measured = calibration_samples(gold, floor, types)
        for section, scores, correct in (
            ("entities", measured.entity_scores, measured.entity_correct),
            ("relations", measured.relation_scores, measured.relation_correct),
        ):
            r = reliability(scores, correct, RELIABILITY_BINS)
            calibration[section][variant] = {**_reliability_dict(r), "samples": int(len(scores))}
    samples = calibration_samples(gold, floor_predictions, types)  # the model as it is used
    curves = {
        "entities": _curves(
            samples.entity_scores,
            samples.entity_correct,
            samples.entity_types,
            breakdown.per_type["entities"],
            types.entities,
        ),
        "relations": _curves(
            samples.relation_scores,
            samples.relation_correct,
            samples.relation_types,
            breakdown.per_type["relations"],
            types.relation_names,
        ),
    }
    thresholds = dict(report.relation_thresholds or {})
    operating = {
        "entities": {
            name: _operating_point(row, report.entity_threshold)
            for name, row in breakdown.per_type["entities"].items()
        },
        "relations": {
            name: _operating_point(row, thresholds.get(name))
            for name, row in breakdown.per_type["relations"].items()
        },
    }
    numbers = {
        "info": dict(report.info or {}),
        "sentences": len(gold),
        "calibrated": floor_uncalibrated is not None,
        "metrics": dict(report.metrics or {}),
        "reliability": calibration,
        "precision_recall": curves,
        "operating_points": operating,
        "errors": breakdown.to_dict(),
    }
    return numbers, breakdown


# -------------------------------------------------------------------------------- writing


def write_report(
    out_dir: str | Path, report: ReportInput, worst: int = WORST_SENTENCES
) -> dict[str, Any]:
    """Write the report (see the module docstring) into ``out_dir``; returns the numbers of
    ``report.json``. ``worst`` sentences per error kind go into ``errors.html``."""
    if not report_available():
        raise ReportError("the report's plots need matplotlib: pip install 'spert[experiments]'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers, breakdown = report_numbers(report)
    plot_reliability(numbers["reliability"], out / "reliability.png")
    for section in ("relations", "entities"):
        plot_precision_recall(
            numbers["precision_recall"][section],
            numbers["operating_points"][section],
            section,
            out / f"pr_{section}.png",
        )
    plot_confusion(numbers["errors"]["confusion"], out / "confusion.png")
    plot_errors(numbers["errors"]["counts"], out / "errors.png")
    page = errors_page(report.gold, report.predictions, report.types, breakdown, worst)
    write_html(out / "errors.html", page)
    atomic_write_text(out / "report.json", json.dumps(numbers, indent=2) + "\n")
    atomic_write_text(out / "report.md", summary_markdown(numbers, worst))
    return numbers


def _describe_entity(key: EntityKey, tokens: Sequence[str]) -> str:
    start, end, etype = key
    return f"{etype} \u201c{' '.join(tokens[start:end])}\u201d [{start}, {end})"


def _describe(error: EntityError | RelationError, tokens: Sequence[str]) -> str:
    if isinstance(error, EntityError):
        text = _describe_entity(error.entity, tokens)
        if error.other is not None:
            side = "gold" if error.side == "fp" else "predicted"
            text += f" ({side}: {_describe_entity(error.other, tokens)})"
        return text
    head, tail, rtype = error.relation
    text = f"{rtype}({_describe_entity(head, tokens)} \u2192 {_describe_entity(tail, tokens)})"
    if error.other is not None:
        side = "gold" if error.side == "fp" else "predicted"
        text += f" ({side}: {error.other[2]}, other direction or type)"
    return text


def errors_page(
    gold: Sequence[Sentence],
    predictions: Sequence[Sentence],
    types: Types,
    breakdown: ErrorBreakdown,
    worst: int = WORST_SENTENCES,
) -> str:
    """The HTML page of the ``worst`` sentences per error kind (kinds without errors left out)."""
    groups = []
    for section, side, kind in breakdown.kinds():
        total = breakdown.counts[section][side][kind]
        if not total:
            continue
        indices = breakdown.worst_sentences(section, side, kind, worst)
        lines = {}
        for i in indices:
            errors = breakdown.sentences[i]
            items = errors.entities if section == "entities" else errors.relations
            found = [e for e in items if e.side == side and e.kind == kind]
            described = "; ".join(_describe(e, gold[i].tokens) for e in found)
            lines[i] = f"{len(found)} \u00d7 {kind.replace('_', ' ')}: {described}"
        title = f"{kind_title(section, side, kind)} ({total})"
        note = KIND_HELP[f"{section} {side} {kind}"] + f"; the {len(indices)} sentences with most."
        groups.append(SentenceGroup(title, note, indices, lines))
    intro = (
        f"{len(gold)} sentences. The sentences with the most errors of each kind (strict "
        "matching, as in the metrics); TP, FP and FN marks as in spert visualize."
    )
    return render_comparison_groups(
        gold, predictions, types, groups, title="SpERT: errors by kind", intro=intro
    )


# -------------------------------------------------------------------------------- plots


def plot_reliability(numbers: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Reliability diagrams, entities and relations side by side, before/after calibration."""
    fig, axes = new_figure(ncols=2)
    for ax, section in zip(axes[0], ("entities", "relations")):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
        for variant, style in (("before", "o-"), ("after", "s-")):
            r = numbers[section].get(variant)
            if r is None:
                continue
            points = [(m, a) for m, a in zip(r["mean_score"], r["accuracy"]) if m is not None]
            if points:
                xs, ys = zip(*points)
                name = "uncalibrated" if variant == "before" else "calibrated"
                ax.plot(xs, ys, style, markersize=4, label=f"{name} (ECE {r['ece']:.3f})")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="mean score in bin",
            ylabel="fraction correct",
            title=f"{section.capitalize()}",
        )
        ax.legend(fontsize=8, loc="upper left")
    return save_png(fig, path, dpi=110)


def plot_precision_recall(
    curves: Mapping[str, Mapping[str, Any]],
    operating: Mapping[str, Mapping[str, Any]],
    section: str,
    path: Path,
) -> Path:
    """A precision-recall curve per type with the operating point (the actual predictions)."""
    names = list(curves) or ["(none)"]
    ncols = min(len(names), 3)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=3.8, height=3.4)
    flat = [ax for row in axes for ax in row]
    for ax, name in zip(flat, names):
        curve = curves.get(name)
        if curve and curve["recall"]:
            ax.step(curve["recall"], curve["precision"], where="post", label="by score")
        point = operating.get(name)
        if point is not None:
            t = point["threshold"]
            label = "operating point" + (f" (t={t:.2f})" if t is not None else "")
            ax.plot(point["recall"], point["precision"], "r*", markersize=11, label=label)
        ap = curve["average_precision"] if curve else 0.0
        ax.set(
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            xlabel="recall",
            ylabel="precision",
            title=f"{name} (AP {ap:.2f})",
        )
        ax.legend(fontsize=7, loc="lower left")
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"{section.capitalize()}: precision-recall by score")
    return save_png(fig, path, dpi=110)


def plot_confusion(confusion: Mapping[str, Any], path: Path) -> Path:
    """The entity confusion matrix with a count in every cell."""
    labels, counts = confusion["labels"], np.asarray(confusion["counts"])
    size = 1.0 + 0.7 * len(labels)
    fig, axes = new_figure(width=size + 1.5, height=size)
    ax = axes[0][0]
    image = ax.imshow(np.log1p(counts), cmap="Blues")
    top = counts.max() if counts.size else 0
    for (i, j), n in np.ndenumerate(counts):
        colour = "white" if top and n > top / 3 else "black"
        ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted type", ylabel="gold type", title="Entities by span")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    return save_png(fig, path, dpi=110)


def plot_errors(counts: Mapping[str, Mapping[str, Mapping[str, int]]], path: Path) -> Path:
    """Horizontal bars: errors per category, false positives and false negatives."""
    fig, axes = new_figure(ncols=2, width=5, height=3.2)
    for ax, section in zip(axes[0], ("entities", "relations")):
        labels, values, colours = [], [], []
        for side, colour in (("fp", "#d62728"), ("fn", "#1f77b4")):
            for kind, n in counts[section][side].items():
                labels.append(f"{side.upper()} {kind.replace('_', ' ')}")
                values.append(n)
                colours.append(colour)
        ax.barh(range(len(values)), values, color=colours)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        for k, n in enumerate(values):
            ax.text(n, k, f" {n}", va="center", fontsize=8)
        ax.set(xlabel="errors", title=section.capitalize())
    return save_png(fig, path, dpi=110)


# -------------------------------------------------------------------------------- markdown


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def summary_markdown(numbers: Mapping[str, Any], worst: int = WORST_SENTENCES) -> str:
    """``report.md``: the numbers of ``report.json`` in tables, linking the images."""
    info = numbers["info"]
    lines = ["# SpERT evaluation report", ""]
    for key, value in info.items():
        lines.append(f"- {key}: {value}")
    lines += [f"- sentences: {numbers['sentences']}", ""]
    metrics = numbers["metrics"]
    if metrics:
        lines += ["## Metrics (micro averages, %)", "", "| setting | precision | recall | F1 |"]
        lines.append("|---|---|---|---|")
        for section, m in metrics.items():
            if isinstance(m, dict) and "micro" in m:
                micro = m["micro"]
                lines.append(
                    f"| {section} | {micro['precision']:.2f} | {micro['recall']:.2f} | "
                    f"{micro['f1']:.2f} |"
                )
        lines.append("")

    lines += _reliability_section(numbers)
    lines += _operating_section(numbers)
    lines += _errors_section(numbers, worst)
    return "\n".join(lines) + "\n"


def _reliability_section(numbers: Mapping[str, Any]) -> list[str]:
    reliability_numbers = numbers["reliability"]
    lines = [
        "## Calibration",
        "",
        "Expected calibration error (ECE, 10 equal-width bins) of the scores of the model's "
        "outputs, relations kept down to the score floor: an entity is correct when its span "
        "and type are in gold, a relation when it is strictly correct (both entities and the "
        "type). "
        + (
            "Before: the model without its calibration; after: with it."
            if numbers["calibrated"]
            else "The model has no calibration (`spert calibrate`), so there is no after."
        ),
        "",
        "| | samples before | ECE before | samples after | ECE after |",
        "|---|---|---|---|---|",
    ]
    for section in ("entities", "relations"):
        before, after = (
            reliability_numbers[section]["before"],
            reliability_numbers[section]["after"],
        )
        cells = [
            str(before["samples"]),
            f"{before['ece']:.4f}",
            str(after["samples"]) if after else "-",
            f"{after['ece']:.4f}" if after else "-",
        ]
        lines.append(f"| {section} | " + " | ".join(cells) + " |")
    lines += ["", "![reliability diagrams](reliability.png)", ""]
    for section in ("entities", "relations"):
        lines += [
            f"Reliability bins, {section} (mean score / fraction correct / count):",
            "",
            "| bin | " + " | ".join(v for v in ("before", "after")) + " |",
            "|---|---|---|",
        ]
        before, after = (
            reliability_numbers[section]["before"],
            reliability_numbers[section]["after"],
        )
        edges = before["edges"]
        for k in range(len(edges) - 1):
            cells = []
            for r in (before, after):
                if r is None or r["mean_score"][k] is None:
                    cells.append("-")
                else:
                    cells.append(
                        f"{r['mean_score'][k]:.3f} / {r['accuracy'][k]:.3f} / {r['counts'][k]}"
                    )
            lines.append(f"| ({edges[k]:.1f}, {edges[k + 1]:.1f}] | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _operating_section(numbers: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Precision and recall by type",
        "",
        "The operating point is what the model predicts at its thresholds (calibrated per type "
        "where it has a calibration); the curves show what other cut-offs on the score would "
        "give (from the floor predictions; AP is the average precision).",
        "",
    ]
    for section in ("relations", "entities"):
        lines += [
            f"![{section} precision-recall](pr_{section}.png)",
            "",
            f"| {section} type | threshold | precision | recall | TP | FP | FN | AP |",
            "|---|---|---|---|---|---|---|---|",
        ]
        curves = numbers["precision_recall"][section]
        for name, p in numbers["operating_points"][section].items():
            t = "argmax" if p["threshold"] is None else f"{p['threshold']:.3f}"
            ap = curves.get(name, {}).get("average_precision", 0.0)
            lines.append(
                f"| {name} | {t} | {_pct(p['precision'])} | {_pct(p['recall'])} | {p['tp']} | "
                f"{p['fp']} | {p['fn']} | {ap:.3f} |"
            )
        lines.append("")
    return lines


def _errors_section(numbers: Mapping[str, Any], worst: int) -> list[str]:
    errors = numbers["errors"]
    lines = [
        "## Errors",
        "",
        "Every false positive (FP) and false negative (FN) of the strict metrics in exactly one "
        "category (the first that applies, in this order); the counts add up to the FP and FN "
        f"totals. [errors.html](errors.html) shows the {worst} sentences with the most errors "
        "of each kind.",
        "",
        "![error breakdown](errors.png)",
        "",
        "| | category | count | share of side | meaning |",
        "|---|---|---|---|---|",
    ]
    for section in ("entities", "relations"):
        totals = errors["totals"][section]
        for side in ("fp", "fn"):
            for kind, n in errors["counts"][section][side].items():
                share = n / totals[side] if totals[side] else 0.0
                lines.append(
                    f"| {section} {side.upper()} | {kind.replace('_', ' ')} | {n} | "
                    f"{_pct(share)}% | {KIND_HELP[f'{section} {side} {kind}']} |"
                )
        lines.append(
            f"| {section} | total | TP {totals['tp']}, FP {totals['fp']}, FN {totals['fn']} | | |"
        )
    confusion = errors["confusion"]
    labels = confusion["labels"]
    lines += [
        "",
        "### Entity confusion matrix",
        "",
        "Per span of a gold or predicted entity: gold type (rows) against predicted type "
        "(columns); none = no entity at that span.",
        "",
        "![entity confusion matrix](confusion.png)",
        "",
        "| gold \\ predicted | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for label, row in zip(labels, confusion["counts"]):
        lines.append(f"| {label} | " + " | ".join(str(n) for n in row) + " |")
    return lines


__all__ = [
    "REPORT_FILES",
    "RELIABILITY_BINS",
    "WORST_SENTENCES",
    "ReportError",
    "errors_page",
    "precision_recall",
    "report_available",
    "report_numbers",
    "summary_markdown",
    "write_report",
    "ReportInput",
]
