"""What averaging several models' predictions (``spert ensemble``) adds on test data.

    python benchmarks/ensemble.py --dev conll04_dev.json --test conll04_test.json \\
        --group RUNS/seed_1/final RUNS/seed_2/final RUNS/seed_3/final --group ... --out DIR

Per group of model directories (trained alike, e.g. seeds of one recipe): each member alone,
uncalibrated; the ensemble of the group, uncalibrated; and the ensemble with its entity "none"
cut-off tuned on ``--dev`` (``spert calibrate --thresholds entity``). Entity and relation strict
micro F1 on ``--test``, per group and as mean ± std over the groups, and the time of one
prediction pass over test (ensemble against its first member, measured in the same run).
Writes ``DIR/results.json`` and ``DIR/results.md``; the model directories are only read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from spert.calibration import calibrate
from spert.data import Sentence, read_dataset
from spert.evaluation import evaluate, mean_std, summarize
from spert.runtime.predictor import SpERT
from spert.utils import atomic_write_text, machine_description

KEYS = ("entity_micro_f1", "relation_strict_micro_f1")
VARIANTS = ("members alone (mean)", "ensemble", "ensemble, entity cut-off tuned on dev")


def scores(model: SpERT, data: list[Sentence]) -> tuple[dict[str, float], float]:
    """Entity and relation strict micro F1 of ``model`` on ``data``, and the seconds it took."""
    start = time.perf_counter()
    predicted = model.predict(data)
    seconds = time.perf_counter() - start
    figures = summarize(evaluate(data, predicted, model.types))
    return {k: round(figures[k], 2) for k in KEYS}, seconds


def run_group(paths: list[str], dev_path: str, test_path: str) -> dict[str, Any]:
    members = [SpERT.load(p, device="cpu", calibration=False) for p in paths]
    test = read_dataset(test_path, members[0].types)
    dev = read_dataset(dev_path, members[0].types)
    alone = [scores(m, test) for m in members]
    ensemble = SpERT.ensemble(members, device="cpu")
    raw, seconds = scores(ensemble, test)
    ensemble.calibration = calibrate(ensemble, dev, data_name=dev_path, thresholds="entity")
    tuned, _ = scores(ensemble, test)
    return {
        "members": paths,
        "members_alone": [figures for figures, _ in alone],
        "variants": {
            VARIANTS[0]: {k: round(statistics.mean(f[k] for f, _ in alone), 2) for k in KEYS},
            VARIANTS[1]: raw,
            VARIANTS[2]: tuned,
        },
        "entity_threshold": ensemble.calibration.entity_threshold,
        "predict_seconds": {"first member": round(alone[0][1], 1), "ensemble": round(seconds, 1)},
    }


def report(groups: list[dict[str, Any]], args: argparse.Namespace) -> tuple[dict, str]:
    summary = {}
    for variant in VARIANTS:
        summary[variant] = {}
        for key in KEYS:
            mean, std = mean_std([g["variants"][variant][key] for g in groups])
            summary[variant][key] = {"mean": round(mean, 2), "std": std and round(std, 2)}
    result = {
        "dev": args.dev,
        "test": args.test,
        "machine": machine_description(),
        "groups": groups,
        "summary": summary,
    }
    lines = [
        "# Ensembles of models trained alike",
        "",
        f"`python benchmarks/ensemble.py {' '.join(sys.argv[1:])}`",
        "",
        f"Test `{Path(args.test).name}`, entity cut-off tuned "
        f"on `{Path(args.dev).name}`; {len(groups)} group(s) of "
        f"{', '.join(str(len(g['members'])) for g in groups)} member(s). F1 in percent, mean ± "
        "sample standard deviation over the groups. Measured on: "
        f"{result['machine']}.",
        "",
        "| variant | entity micro F1 | relation strict micro F1 | per group (relation strict) |",
        "|---|---|---|---|",
    ]
    for variant in VARIANTS:
        cells = []
        for key in KEYS:
            figure = summary[variant][key]
            std = f" ± {figure['std']:.2f}" if figure["std"] is not None else ""
            cells.append(f"{figure['mean']:.2f}{std}")
        per_group = ", ".join(
            f"{g['variants'][variant]['relation_strict_micro_f1']:.2f}" for g in groups
        )
        lines.append(f"| {variant} | {cells[0]} | {cells[1]} | {per_group} |")
    lines += [
        "",
        "| group | members alone (relation strict) | predict seconds, member / ensemble |",
        "|---|---|---|",
    ]
    for i, g in enumerate(groups, 1):
        alone = ", ".join(f"{f['relation_strict_micro_f1']:.2f}" for f in g["members_alone"])
        t = g["predict_seconds"]
        lines.append(f"| {i} | {alone} | {t['first member']} / {t['ensemble']} |")
    return result, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--group", action="append", nargs="+", required=True, help="model directories"
    )
    parser.add_argument("--dev", required=True, help="gold data the entity cut-off is tuned on")
    parser.add_argument("--test", required=True, help="gold test data")
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    args = parser.parse_args()
    for group in args.group:
        if len(group) < 2:
            parser.error(f"--group {' '.join(group)}: an ensemble needs at least 2 models")
    groups = []
    for i, paths in enumerate(args.group, 1):
        groups.append(run_group(paths, args.dev, args.test))
        print(json.dumps({"group": i, **groups[-1]["variants"]}), flush=True)
    result, markdown = report(groups, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "results.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
