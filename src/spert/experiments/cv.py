"""K-fold cross-validation (``spert cv``), as the SpERT paper evaluates on ADE.

Folds are given as file patterns with ``{i}`` for the fold number (ADE ships as
``ade_split_{i}_train.json`` / ``ade_split_{i}_test.json``, i = 0..9). Each fold trains a model
on its training file and tests the final model on its test file, with and without overlapping
entities; the results are kept per fold in ``OUT/fold_{i}/`` and summarized over the folds in
``OUT/cv_results.json`` and ``OUT/cv_results.md`` (mean and sample standard deviation). A fold
whose metrics files exist is finished: running again skips it.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spert.config import ConfigError, SpertConfig, config_differences
from spert.data import DataError, Sentence, Types, read_dataset, write_dataset
from spert.evaluation import evaluate, mean_std, summarize
from spert.evaluation.card import write_model_card
from spert.evaluation.summary import SUMMARY, TITLES
from spert.training import train
from spert.training.checkpoint import read_run_info
from spert.utils import atomic_write_text, format_duration

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
METRICS_NO_OVERLAP_FILE = "metrics_no_overlap.json"
PREDICTIONS_FILE = "predictions.json"
RUN_FILE = "cv_run.json"
RESULTS_JSON = "cv_results.json"
RESULTS_MD = "cv_results.md"

SETTINGS = {"overlap": "with overlapping entities", "no_overlap": "without overlapping entities"}


def fold_path(pattern: str, fold: int) -> Path:
    """The file of one fold: ``{i}`` in the pattern replaced by the fold number."""
    return Path(pattern.replace("{i}", str(fold)))


def make_folds(
    sentences: Sequence[Sentence], k: int, seed: int, out_dir: str | Path, prefix: str
) -> tuple[str, str]:
    """Shuffle ``sentences`` (seeded) into ``k`` near-equal test folds; write each fold's
    ``{prefix}_split_{i}_test.json`` and the rest as ``{prefix}_split_{i}_train.json`` to
    ``out_dir``. Returns the (train, test) file patterns."""
    if not 2 <= k <= len(sentences):
        raise ValueError(f"need 2 <= k <= {len(sentences)} (the number of sentences), got {k}")
    order = np.random.default_rng(seed).permutation(len(sentences))
    train_pattern = str(Path(out_dir) / f"{prefix}_split_{{i}}_train.json")
    test_pattern = str(Path(out_dir) / f"{prefix}_split_{{i}}_test.json")
    for i, part in enumerate(np.array_split(order, k)):
        test = set(part.tolist())
        write_dataset(fold_path(test_pattern, i), [sentences[j] for j in sorted(test)])
        write_dataset(
            fold_path(train_pattern, i), [s for j, s in enumerate(sentences) if j not in test]
        )
    return train_pattern, test_pattern


@dataclass
class FoldResult:
    fold: int
    metrics: dict[str, Any]  # test, overlapping entities included
    metrics_no_overlap: dict[str, Any]
    skipped: bool  # finished in an earlier run


def _fold_files(
    train_pattern: str, test_pattern: str, dev_pattern: str | None, folds: int
) -> list[tuple[Path, Path, Path | None]]:
    """Every fold's files, checked to exist before any training starts."""
    for flag, pattern in (("train", train_pattern), ("test", test_pattern), ("dev", dev_pattern)):
        if pattern is not None and "{i}" not in pattern:
            raise DataError(f"the {flag} pattern {pattern!r} has no {{i}} for the fold number")
    files = []
    missing = []
    for i in range(folds):
        paths = (
            fold_path(train_pattern, i),
            fold_path(test_pattern, i),
            fold_path(dev_pattern, i) if dev_pattern else None,
        )
        missing += [str(p) for p in paths if p is not None and not p.is_file()]
        files.append(paths)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"missing fold file(s): {', '.join(missing[:3])}{more}")
    return files


def _check_run(out_dir: Path, run: dict[str, Any], config: SpertConfig) -> None:
    """Refuse to mix folds of different configurations or data in one output directory."""
    path = out_dir / RUN_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        differ = [key for key in ("train", "test", "dev", "types") if old.get(key) != run[key]]
        # Options added to SpertConfig since the old run had their default values there.
        differ += [f"config.{key}" for key in config_differences(old.get("config", {}), config)]
        if differ:
            raise ConfigError(
                f"{out_dir} holds folds of another run (differs in {', '.join(differ)}); "
                "use another --out or delete it"
            )
    atomic_write_text(path, json.dumps(run, indent=2))


def run_cv(
    config: SpertConfig,
    train_pattern: str,
    test_pattern: str,
    folds: int,
    types: Types,
    out_dir: str | Path,
    dev_pattern: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and test each fold (skipping finished ones), then write and return the summary.

    Fold ``i`` reads ``train_pattern`` (and ``test_pattern``, ``dev_pattern``) with ``{i}``
    replaced by ``i`` for i in 0..folds-1; its final model is tested.
    """
    if folds < 1:
        raise ConfigError(f"folds must be at least 1, got {folds}")
    files = _fold_files(train_pattern, test_pattern, dev_pattern, folds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "train": train_pattern,
        "test": test_pattern,
        "dev": dev_pattern,
        "types": types.to_dict(),
        "config": config.to_dict(),
    }
    _check_run(out_dir, run, config)

    results: list[FoldResult] = []
    trained_seconds: list[float] = []
    for i, (train_file, test_file, dev_file) in enumerate(files):
        fold_dir = out_dir / f"fold_{i}"
        done = [fold_dir / METRICS_FILE, fold_dir / METRICS_NO_OVERLAP_FILE]
        if all(p.is_file() for p in done):
            logger.info("fold %d/%d: finished already (%s), skipped", i + 1, folds, fold_dir)
            loaded = [json.loads(p.read_text(encoding="utf-8")) for p in done]
            results.append(FoldResult(i, loaded[0], loaded[1], skipped=True))
            continue
        remaining = sum(
            1 for j in range(i, folds) if not (out_dir / f"fold_{j}" / METRICS_FILE).is_file()
        )
        eta = (
            f", ETA {format_duration(statistics.mean(trained_seconds) * remaining)}"
            if trained_seconds
            else ""
        )
        logger.info("fold %d/%d: training on %s%s", i + 1, folds, train_file, eta)
        started = time.perf_counter()
        train_data = read_dataset(train_file, types)
        test_data = read_dataset(test_file, types)
        dev_data = read_dataset(dev_file, types) if dev_file else None
        result = train(
            config, train_data, types, fold_dir, dev_data=dev_data, device=device, progress=progress
        )
        predictions = result.model.predict(test_data, progress=progress)
        write_dataset(fold_dir / PREDICTIONS_FILE, predictions)
        metrics = evaluate(test_data, predictions, types)
        metrics_no_overlap = evaluate(test_data, predictions, types, no_overlap=True)
        run_record = read_run_info(fold_dir)
        write_model_card(fold_dir / "final", run_record, {"test": (str(test_file), metrics)})
        # The overlap-free file last: a fold is finished once both exist.
        atomic_write_text(fold_dir / METRICS_FILE, json.dumps(metrics, indent=2))
        atomic_write_text(
            fold_dir / METRICS_NO_OVERLAP_FILE, json.dumps(metrics_no_overlap, indent=2)
        )
        trained_seconds.append(time.perf_counter() - started)
        logger.info(
            "fold %d/%d: entity micro F1 %.2f, relation strict micro F1 %.2f (%s)",
            i + 1,
            folds,
            *(summarize(metrics)[k] for k in ("entity_micro_f1", "relation_strict_micro_f1")),
            format_duration(trained_seconds[-1]),
        )
        results.append(FoldResult(i, metrics, metrics_no_overlap, skipped=False))
        del result

    summary = aggregate(results)
    summary["run"] = run
    atomic_write_text(out_dir / RESULTS_JSON, json.dumps(summary, indent=2))
    atomic_write_text(out_dir / RESULTS_MD, format_markdown(summary))
    logger.info("cross-validation results: %s", out_dir / RESULTS_MD)
    return summary


def aggregate(results: Sequence[FoldResult]) -> dict[str, Any]:
    """Per-fold summaries and their mean and sample standard deviation, per setting."""
    per_fold = [
        {
            "fold": r.fold,
            "overlap": summarize(r.metrics),
            "no_overlap": summarize(r.metrics_no_overlap),
        }
        for r in results
    ]
    out: dict[str, Any] = {
        "folds": len(results),
        "std": "sample standard deviation (n - 1 denominator) over the folds",
        "per_fold": per_fold,
        "mean": {},
        "stdev": {},
    }
    for setting in SETTINGS:
        out["mean"][setting], out["stdev"][setting] = {}, {}
        for name in SUMMARY:
            mean, std = mean_std([f[setting][name] for f in per_fold])
            out["mean"][setting][name] = mean
            out["stdev"][setting][name] = std
    return out


def format_markdown(summary: dict[str, Any]) -> str:
    """Two tables (with / without overlapping entities): one row per fold, then mean ± std."""
    n = summary["folds"]
    lines = [
        f"# Cross-validation, {n} folds",
        "",
        "Test set of each fold, final model. F1 in percent; the last row is the mean ± the "
        "sample standard deviation (n - 1) over the folds. *relation*: the spans of both "
        "arguments must be right; *strict*: their entity types too.",
    ]
    for setting, title in SETTINGS.items():
        lines += ["", f"## {title.capitalize()}", ""]
        lines.append("| fold | " + " | ".join(TITLES.values()) + " |")
        lines.append("|---" * (len(TITLES) + 1) + "|")
        for fold in summary["per_fold"]:
            cells = [f"{fold[setting][name]:.2f}" for name in TITLES]
            lines.append(f"| {fold['fold']} | " + " | ".join(cells) + " |")
        cells = []
        for name in TITLES:
            mean, std = summary["mean"][setting][name], summary["stdev"][setting][name]
            cells.append(f"**{mean:.2f}**" + (f" ± {std:.2f}" if std is not None else ""))
        lines.append("| mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["run_cv", "make_folds", "aggregate", "summarize", "FoldResult", "fold_path"]
