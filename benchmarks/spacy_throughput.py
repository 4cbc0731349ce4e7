"""Throughput of the spaCy component against ``SpERT.extract``, on the same texts, in one run.

    python benchmarks/spacy_throughput.py [--model DIR] [--docs 120] [--batch-size 32]

Texts: CoNLL04 test sentences (words joined by spaces), five to a document. Both sides load
the same model and split the same texts: ``nlp.pipe(texts, batch_size=B)`` on
``spacy.blank("en")`` with the ``spert`` component, and ``SpERT.extract(texts)``. Each is run
``--repeats`` times, alternating, after a warm-up; the best time of each counts. Writes
``benchmarks/results/spacy_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import spacy
import torch

from spert import read_dataset
from spert.api import SpERT
from spert.utils import atomic_write_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "conll04"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model directory (default: the model of spert demo)")
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=32, help="documents per nlp.pipe batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args()

    sentences = [" ".join(s.tokens) for s in read_dataset(DATA / "conll04_test.json")]
    texts = [" ".join(sentences[i : i + 5]) for i in range(0, 5 * args.docs, 5)]
    model = SpERT.load(args.model, device="cpu")
    nlp = spacy.blank("en")
    component = nlp.add_pipe("spert", config={"model": args.model, "device": "cpu"})
    component._model = model  # one model in memory for both sides

    def run_pipe() -> tuple[float, int]:
        started = time.perf_counter()
        docs = list(nlp.pipe(texts, batch_size=args.batch_size))
        return time.perf_counter() - started, sum(len(d.spans["spert"]) for d in docs)

    def run_extract() -> tuple[float, int]:
        started = time.perf_counter()
        documents = model.extract(texts)
        return time.perf_counter() - started, sum(len(d.entities) for d in documents)

    list(nlp.pipe(texts[:4])), model.extract(texts[:4])  # warm-up
    pipe_times, extract_times = [], []
    for _ in range(args.repeats):
        seconds, pipe_entities = run_pipe()
        pipe_times.append(seconds)
        seconds, extract_entities = run_extract()
        extract_times.append(seconds)
    report = {
        "command": "python benchmarks/spacy_throughput.py " + " ".join(sys.argv[1:]),
        "model": args.model or "default model (spert demo)",
        "documents": len(texts),
        "sentences": 5 * len(texts),
        "batch_size": args.batch_size,
        "pipe_seconds": [round(t, 2) for t in pipe_times],
        "extract_seconds": [round(t, 2) for t in extract_times],
        "pipe_docs_per_s": round(len(texts) / min(pipe_times), 2),
        "extract_docs_per_s": round(len(texts) / min(extract_times), 2),
        "pipe_entities": pipe_entities,
        "extract_entities": extract_entities,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, spaCy {spacy.__version__}",
    }
    report["ratio"] = round(report["pipe_docs_per_s"] / report["extract_docs_per_s"], 3)
    print(json.dumps(report, indent=2))
    results = Path(args.results)
    atomic_write_text(results / "spacy_throughput.json", json.dumps(report, indent=2) + "\n")
    lines = [
        "# spaCy component vs SpERT.extract",
        "",
        f"Command: `{report['command']}`",
        "",
        f"{report['documents']} documents of 5 CoNLL04 test sentences, {report['model']}, "
        f"{report['machine']}. Best of {args.repeats} alternating runs each.",
        "",
        "| | documents/s | entities |",
        "|---|---|---|",
        f"| `nlp.pipe(batch_size={args.batch_size})` | {report['pipe_docs_per_s']} "
        f"| {pipe_entities} |",
        f"| `SpERT.extract` | {report['extract_docs_per_s']} | {extract_entities} |",
        "",
        f"Ratio (nlp.pipe / SpERT.extract): **{report['ratio']}**",
        "",
    ]
    atomic_write_text(results / "spacy_throughput.md", "\n".join(lines))


if __name__ == "__main__":
    main()
