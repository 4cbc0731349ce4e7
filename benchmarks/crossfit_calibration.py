"""What calibration on held-out data is worth, measured on that same data without seeing it:
k-fold cross-fitting. Each fold is predicted with the calibration (thresholds included) fitted
on the other folds; the folds' predictions together are scored against the whole file, beside
the uncalibrated model's.

    python benchmarks/crossfit_calibration.py --model runs/x/final --data conll04_dev.json

Prints one JSON line: entity and relation strict micro F1, uncalibrated and cross-fitted.
The model directory is only read (its own calibration.json, if any, is ignored).
"""

from __future__ import annotations

import argparse
import json

from spert.calibration import calibrate
from spert.data import read_dataset
from spert.evaluation import evaluate, relation_f1, summarize
from spert.runtime.predictor import SpERT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--data", required=True, help="held-out gold data (e.g. the dev set)")
    parser.add_argument("--folds", type=int, default=2, help="contiguous folds (default: 2)")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")

    model = SpERT.load(args.model, calibration=False)
    data = read_dataset(args.data, model.types)
    if len(data) < args.folds:
        parser.error(f"{args.data}: {len(data)} sentences for {args.folds} folds")
    bounds = [round(i * len(data) / args.folds) for i in range(args.folds + 1)]
    folds = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    contexts = model.document_contexts(data)  # None for a model without document context
    raw = evaluate(data, model.predict(data, contexts=contexts), model.types)
    crossfit = []
    for i, held_out in enumerate(folds):
        fit_on = [s for j, fold in enumerate(folds) if j != i for s in fold]
        calibration = calibrate(model, fit_on, data_name=f"{args.data} without fold {i}")
        # Document context from the whole file, as the uncalibrated predictions had it.
        held_out_contexts = contexts[bounds[i] : bounds[i + 1]] if contexts else None
        crossfit.extend(
            model.predict(held_out, contexts=held_out_contexts, calibration=calibration)
        )
    calibrated = evaluate(data, crossfit, model.types)

    print(
        json.dumps(
            {
                "model": args.model,
                "data": args.data,
                "folds": args.folds,
                "uncalibrated": {
                    "entity_micro_f1": round(summarize(raw)["entity_micro_f1"], 2),
                    "relation_strict_micro_f1": round(relation_f1(raw), 2),
                },
                "cross_fitted": {
                    "entity_micro_f1": round(summarize(calibrated)["entity_micro_f1"], 2),
                    "relation_strict_micro_f1": round(relation_f1(calibrated), 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
