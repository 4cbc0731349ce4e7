"""Graph build benchmark: sentences per second and peak memory of ``spert graph build`` at
10k, 50k and 100k sentences of extractions, against the extraction rate of the same sentences.

The input replicates extraction outputs (spert extract JSONL) of the CoNLL04 and SciERC test
sets under new document ids until it holds N sentences. Each size is built into a new store in
a child process (its peak RSS is the build's). The extraction rate is measured with ``--model``
on the CoNLL04 test documents (or given with ``--extraction-rate``).

    python benchmarks/graph_build.py --extractions conll04_pred.jsonl scierc_pred.jsonl \\
        --model runs/conll04-fast/final

Writes ``benchmarks/results/graph_build.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spert.data import read_dataset
from spert.graph.eval import gold_documents
from spert.graph.source import read_extractions
from spert.utils import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (10_000, 50_000, 100_000)

CHILD = """
import json, resource, sys, time
from spert.graph import GraphStore, build_graph, read_extractions
started = time.perf_counter()
summary = build_graph(sys.argv[1], read_extractions([sys.argv[2]]), progress=False)
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "stats": summary.stats,
                  "sentences": summary.sentences_read}))
"""


def replicate(sources: list[str], sentences: int, out: Path) -> dict[str, int]:
    """Write copies of the source documents with new ids until ``sentences`` are written."""
    base = [
        json.loads(line)
        for path in sources
        for line in open(path, encoding="utf-8")
        if line.strip()
    ]
    base = [d for d in base if d.get("sentences")]
    written = documents = copy = 0
    with open(out, "w", encoding="utf-8") as f:
        while written < sentences:
            for doc in base:
                if written >= sentences:
                    break
                record = dict(doc, id=f"copy{copy}-{doc.get('id', documents)}")
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += len(doc["sentences"])
                documents += 1
            copy += 1
    return {"sentences": written, "documents": documents, "copies": copy}


def gold_as_extractions(dataset: str, out: Path, group_size: int = 5) -> Path:
    """Stand-in extraction output: gold sentences as documents of ``group_size`` sentences,
    with deterministic pseudo-scores in [0.3, 1) (for a test set without a trained model)."""
    import random

    rng = random.Random(0)
    with open(out, "w", encoding="utf-8") as f:
        for item in gold_documents(read_dataset(dataset), group_size):
            record = item.document.to_dict()
            for sentence in record["sentences"]:
                for mention in sentence["entities"] + sentence["relations"]:
                    mention["score"] = round(rng.uniform(0.3, 1.0), 4)
            record["id"] = f"{Path(dataset).stem}-{item.id}"
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def extraction_rate(model_dir: str, source: str) -> dict[str, float]:
    """Sentences per second of ``SpERT.extract_stream`` on the documents' texts."""
    from spert.api import SpERT

    docs = list(read_extractions([source]))
    texts = [(d.id, d.document.text) for d in docs]
    model = SpERT.load(model_dir)
    started = time.perf_counter()
    n = sum(len(doc.sentences) for doc in model.extract_stream(texts))
    seconds = time.perf_counter() - started
    return {"sentences": n, "seconds": seconds, "sentences_per_second": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extractions", nargs="+", default=[], help="spert extract JSONL")
    parser.add_argument(
        "--gold-stand-in",
        nargs="+",
        default=[],
        help="gold datasets (SpERT JSON) used as extraction output with pseudo-scores",
    )
    parser.add_argument("--model", help="measure the extraction rate with this model")
    parser.add_argument("--extraction-rate", type=float, help="or give it (sentences/s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--name", default="graph_build")
    parser.add_argument("--note", default="", help="a line on where the inputs come from")
    args = parser.parse_args()

    scratch_inputs = tempfile.TemporaryDirectory(prefix="graph-bench-inputs-")
    sources = list(args.extractions) + [
        str(gold_as_extractions(d, Path(scratch_inputs.name, Path(d).stem + ".jsonl")))
        for d in args.gold_stand_in
    ]
    if not sources:
        parser.error("give --extractions and/or --gold-stand-in")
    rate = None
    if args.model:
        rate = extraction_rate(args.model, sources[0])
        print(f"extraction: {rate['sentences_per_second']:.1f} sentences/s", flush=True)
    elif args.extraction_rate:
        rate = {"sentences_per_second": args.extraction_rate}
    rows = []
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    with tempfile.TemporaryDirectory(prefix="graph-bench-") as scratch:
        for size in args.sizes:
            data = Path(scratch, f"input-{size}.jsonl")
            made = replicate(sources, size, data)
            store = Path(scratch, f"kg-{size}")
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(store), str(data)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            per_second = result["sentences"] / result["seconds"]
            row = {
                "sentences": result["sentences"],
                "documents": made["documents"],
                "seconds": round(result["seconds"], 2),
                "sentences_per_second": round(per_second, 1),
                "peak_rss_mb": round(result["peak_rss_mb"], 1),
                "input_mb": round(data.stat().st_size / 2**20, 1),
                "store_mb": round(sum(p.stat().st_size for p in store.iterdir()) / 2**20, 1),
                "graph": result["stats"],
            }
            if rate:
                row["times_extraction_rate"] = round(per_second / rate["sentences_per_second"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            data.unlink()
    record = {
        "benchmark": "graph_build",
        "inputs": args.extractions,
        "gold_stand_in": args.gold_stand_in,
        "note": args.note,
        "extraction": rate,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{args.name}.json", json.dumps(record, indent=1) + "\n")
    lines = [
        "# Graph build benchmark (`benchmarks/graph_build.py`)",
        "",
        args.note,
        "",
        "Extraction rate of the same sentences: "
        + (f"{rate['sentences_per_second']:.1f} sentences/s" if rate else "not measured"),
        "",
        "| sentences | documents | build s | sentences/s | x extraction rate | peak RSS MiB "
        "| input MiB | store MiB | nodes | edges |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sentences']} | {r['documents']} | {r['seconds']} | "
            f"{r['sentences_per_second']} | {r.get('times_extraction_rate', '-')} | "
            f"{r['peak_rss_mb']} | {r['input_mb']} | {r['store_mb']} | "
            f"{r['graph']['nodes']} | {r['graph']['edges']} |"
        )
    atomic_write_text(RESULTS / f"{args.name}.md", "\n".join(lines) + "\n")
    print(f"-> {RESULTS / (args.name + '.md')}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
