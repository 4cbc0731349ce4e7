"""What each part of a model's calibration adds on test data: the entity cut-off (tuned for
entity recall and precision before pairing) and the per relation type thresholds, each alone
and together, beside the uncalibrated model.

    python benchmarks/calibration_parts.py --data conll04_test.json runs/x/seed_1/final ...

Each model directory must hold a calibration.json fitted on other data (``spert calibrate`` or
``spert train --calibrate``, on dev). Prints one JSON object: per model and on average, entity
and relation strict micro F1 of each variant. The model directories are only read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from spert.data import read_dataset
from spert.evaluation import evaluate, summarize
from spert.model.calibration import Calibration
from spert.runtime.predictor import SpERT

KEYS = ("entity_micro_f1", "relation_strict_micro_f1")


def variants(calibration: Calibration, raw_threshold: float) -> dict[str, Calibration | None]:
    """The calibration split into its two decisions (scores are calibrated in every one)."""
    relation_default = tuple(calibration.calibrated_threshold(raw_threshold))
    return {
        "uncalibrated": None,
        "entity cut-off only": dataclasses.replace(
            calibration, relation_thresholds=relation_default
        ),
        "relation thresholds only": dataclasses.replace(calibration, entity_threshold=None),
        "both (as fitted)": calibration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="calibrated model directories")
    parser.add_argument("--data", required=True, help="gold test data")
    args = parser.parse_args()

    per_model: dict[str, dict[str, dict[str, float]]] = {}
    for path in args.models:
        model = SpERT.load(path)
        if model.calibration is None:
            parser.error(f"{path}: no calibration.json (run `spert calibrate` on dev first)")
        data = read_dataset(args.data, model.types)
        contexts = model.document_contexts(data)
        results = {}
        for name, calibration in variants(
            model.calibration, model.inference.relation_threshold
        ).items():
            predicted = model.predict(data, contexts=contexts, calibration=calibration)
            figures = summarize(evaluate(data, predicted, model.types))
            results[name] = {k: round(figures[k], 2) for k in KEYS}
        per_model[path] = results
        print(json.dumps({path: results}), flush=True)
    names = list(next(iter(per_model.values())))
    mean = {
        name: {k: round(statistics.mean(r[name][k] for r in per_model.values()), 2) for k in KEYS}
        for name in names
    }
    print(json.dumps({"data": args.data, "models": per_model, "mean": mean}, indent=2))


if __name__ == "__main__":
    main()
