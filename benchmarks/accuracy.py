"""Accuracy benchmark: train on CoNLL04 train with a preset (default: the paper's recipe),
test on CoNLL04 test.

    python benchmarks/accuracy.py --seeds 1 2
    python benchmarks/accuracy.py --preset fast-v1 --seeds 1 2 --name accuracy_conll04_fast

Each seed's run lives in ``--work/seed_N``; a finished seed is not trained again. Writes
``benchmarks/results/accuracy_conll04.json`` and ``.md`` (mean over seeds of the final model,
as the original implementation reports, and of the best-on-dev model).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from spert import __version__, read_dataset, read_types
from spert.api import SpERT
from spert.config import PRESETS, preset
from spert.evaluation import summarize
from spert.training import train
from spert.utils import atomic_write_text

# The original implementation (lavis-nlp/spert) run here with --lowercase (as an uncased encoder
# needs), the paper's recipe and the bundled encoder (issue #17). Without --lowercase every
# capitalized word is [UNK] and it reaches 46.96 (issue #5; see ablations/tokenization).
ORIGINAL = {
    "entity_micro_f1": 84.59,
    "relation_strict_micro_f1": 61.89,
    "relation_strict_macro_f1": 63.14,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/datasets/conll04")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--work", default="runs/accuracy")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--name", default="accuracy_conll04")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = Path(args.data)
    types = read_types(data / "conll04_types.json")
    train_data = read_dataset(data / "conll04_train.json", types)
    dev_data = read_dataset(data / "conll04_dev.json", types)
    test_data = read_dataset(data / "conll04_test.json", types)
    results_dir = Path(args.results)
    json_path = results_dir / f"{args.name}.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}}

    for seed in args.seeds:
        if str(seed) in report["runs"]:
            logging.info("seed %d done already", seed)
            continue
        config = preset(args.preset).replace(seed=seed)
        if args.epochs is not None:
            config = config.replace(epochs=args.epochs)
        run_dir = Path(args.work) / f"seed_{seed}"
        started = time.perf_counter()
        # A recipe without per-epoch dev evaluation keeps the final model: no dev pass at all.
        dev = dev_data if config.eval_every_epoch else None
        result = train(config, train_data, types, run_dir, dev_data=dev)
        train_seconds = time.perf_counter() - started
        final_metrics, _ = result.model.evaluate(test_data)
        total_seconds = time.perf_counter() - started
        run = {
            "train_seconds": round(train_seconds, 1),
            "train_and_test_seconds": round(total_seconds, 1),
            "best_epoch": result.best_epoch,
            "final": summarize(final_metrics),
            "config": config.to_dict(),
        }
        if result.best_epoch is not None:
            best_metrics, _ = SpERT.load(run_dir / "best").evaluate(test_data)
            run["best_on_dev"] = summarize(best_metrics)
        report["runs"][str(seed)] = run
        report["command"] = "python benchmarks/accuracy.py " + " ".join(sys.argv[1:])
        report["preset"] = args.preset
        write_report(report, results_dir, args.name)


def write_report(report: dict, results_dir: Path, name: str) -> None:
    runs = report["runs"]
    report["spert_version"] = __version__
    report["machine"] = (
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    report["original"] = ORIGINAL
    kinds = [w for w in ("final", "best_on_dev") if all(w in r for r in runs.values())]
    for which in kinds:
        keys = next(iter(runs.values()))[which].keys()
        report[f"mean_{which}"] = {
            k: round(statistics.mean(r[which][k] for r in runs.values()), 2) for k in keys
        }
    atomic_write_text(results_dir / f"{name}.json", json.dumps(report, indent=2))
    header = [
        "model",
        "seed",
        "entity micro F1",
        "relation strict micro F1",
        "relation strict macro F1",
        "train time",
        "train + test time",
    ]
    lines = [
        f"# CoNLL04 test, bundled encoder (all-MiniLM-L6-v2), preset "
        f"`{report.get('preset', 'paper')}` ({len(runs)} seeds)",
        "",
        "Command: `"
        + report.get("command", "python benchmarks/accuracy.py --seeds " + " ".join(runs))
        + "`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]

    def row(name: str, seed: str, m: dict, times: str, bold: bool = False) -> str:
        f1 = [m["entity_micro_f1"], m["relation_strict_micro_f1"], m["relation_strict_macro_f1"]]
        cells = [f"**{v:.2f}**" if bold else f"{v:.2f}" for v in f1]
        return f"| {name} | {seed} | " + " | ".join(cells) + f" | {times} |"

    def minutes(r: dict, key: str) -> str:
        return f"{r[key] / 60:.1f} min" if key in r else "-"

    for seed, r in runs.items():
        for which in kinds:
            times = minutes(r, "train_seconds") + " | " + minutes(r, "train_and_test_seconds")
            lines.append(row(which, seed, r[which], times))
    for which in kinds:
        lines.append(row(f"{which}, mean", "", report[f"mean_{which}"], " |", bold=True))
    original = "original (lavis-nlp/spert) with --lowercase, measured here"
    lines.append(row(original, "", ORIGINAL, "| 20.8 min"))
    lines.append("")
    lines.append(
        f"Machine: {report['machine']}. `final` is the model after the last epoch "
        "(what the original reports); `best_on_dev` the epoch with the best dev relation "
        "strict micro F1."
    )
    atomic_write_text(results_dir / f"{name}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
