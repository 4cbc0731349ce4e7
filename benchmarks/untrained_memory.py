"""Peak memory of prediction with an UNTRAINED model, with and without the per-sentence caps.

    OMP_NUM_THREADS=1 python benchmarks/untrained_memory.py [--uncapped-sentences N]

An untrained model (the bundled encoder, randomly initialized heads) keeps most candidate
spans as entities, and every pair of them is a relation candidate: without caps its output
grows with the square of the spans. Each setting predicts CoNLL04 test at batch 1 in a fresh
subprocess and reports its peak RSS (``resource.getrusage`` maxrss), time and output size:

* ``capped``: the defaults of ``max_entities_per_sentence`` / ``max_relations_per_sentence``,
  over all of conll04_test;
* ``uncapped`` (caps 0) and ``capped`` again, over the first N sentences only (without caps a
  run over the whole set takes too long on 2 CPU cores); the uncapped run has a time limit.

Writes ``benchmarks/results/untrained_memory.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "conll04"
RESULTS = ROOT / "benchmarks" / "results"


def run_one(caps: bool, sentences: int | None) -> dict[str, Any]:
    """Predict with a fresh untrained model in this process; the measurement."""
    import torch

    from spert import SpertConfig, read_dataset, read_types
    from spert.api import SpERT

    torch.manual_seed(0)
    types = read_types(DATA / "conll04_types.json")
    data = read_dataset(DATA / "conll04_test.json", types)[:sentences]
    config = SpertConfig()
    if not caps:
        config = config.replace(max_entities_per_sentence=0, max_relations_per_sentence=0)
    model = SpERT.create(types, config, "cpu")
    started = time.perf_counter()
    predictions = model.predict(data, batch_size=1)
    seconds = time.perf_counter() - started
    return {
        "caps": caps,
        "max_entities_per_sentence": config.max_entities_per_sentence,
        "max_relations_per_sentence": config.max_relations_per_sentence,
        "sentences": len(data),
        "entities": sum(len(p.entities) for p in predictions),
        "relations": sum(len(p.relations) for p in predictions),
        "max_entities_in_a_sentence": max(len(p.entities) for p in predictions),
        "max_relations_in_a_sentence": max(len(p.relations) for p in predictions),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(caps: bool, sentences: int | None, timeout: float) -> dict[str, Any]:
    """:func:`run_one` in a fresh subprocess (its own peak RSS)."""
    command = [sys.executable, __file__, "--child", "caps" if caps else "none"]
    if sentences is not None:
        command += ["--sentences", str(sentences)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"caps": caps, "sentences": sentences, "error": f"over the {timeout:.0f} s limit"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"caps": caps, "sentences": sentences, "error": " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Prediction with an untrained model: peak memory with and without caps",
        "",
        "`OMP_NUM_THREADS=1 python benchmarks/untrained_memory.py`: the bundled encoder with "
        "randomly initialized heads predicts CoNLL04 test at batch 1, each setting in a fresh "
        "process; peak RSS is the process's maxrss. Target: under 1.5 GB with the default caps.",
        "",
        "| caps (entities, relations per sentence) | sentences | entities | relations | "
        "most entities / relations in a sentence | seconds | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        caps = (
            f"{r['max_entities_per_sentence']}, {r['max_relations_per_sentence']}"
            if r["caps"]
            else "none"
        )
        if "error" in r:
            caps = "default" if r["caps"] else "none"
            lines.append(f"| {caps} | {r['sentences']} | {r['error']} | | | | |")
            continue
        lines.append(
            f"| {caps} | {r['sentences']} | {r['entities']} | {r['relations']} | "
            f"{r['max_entities_in_a_sentence']} / {r['max_relations_in_a_sentence']} | "
            f"{r['seconds']} | {r['peak_rss_mb']} |"
        )
    lines.append("")
    lines.append(f"Python {platform.python_version()}, {platform.machine()}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=("caps", "none"), help=argparse.SUPPRESS)
    parser.add_argument("--sentences", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--uncapped-sentences",
        type=int,
        default=20,
        help="sentences of the comparison without caps (default: 20)",
    )
    parser.add_argument(
        "--uncapped-timeout", type=float, default=900, help="time limit without caps, seconds"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child == "caps", args.sentences)))
        return
    from spert.utils import atomic_write_text

    rows = [measure(True, None, 3600)]
    print(json.dumps(rows[-1]), flush=True)
    rows.append(measure(True, args.uncapped_sentences, 3600))
    print(json.dumps(rows[-1]), flush=True)
    rows.append(measure(False, args.uncapped_sentences, args.uncapped_timeout))
    print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "untrained_memory.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(RESULTS / "untrained_memory.md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
