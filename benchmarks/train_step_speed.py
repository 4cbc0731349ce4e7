"""Training speed on this machine: seconds per optimizer step of the trainer's own step, in
float32 (the baseline) and with the speed options of the `fast` preset (bfloat16 autocast,
frozen word embeddings), on the same step batches, measured in one run.

    python benchmarks/train_step_speed.py [--steps 60] [--batch-size 8] [--out FILE.json]

Each variant trains a fresh model (same seed) on the first ``--steps`` length-bucketed step
batches of CoNLL04 train after ``--warmup`` untimed steps; the variants take turns in rounds
so that a slow phase of a shared machine hits all of them. Prints a table with each
variant's time per step and its speed-up over float32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from spert.config import preset
from spert.data import read_dataset, read_types
from spert.model.precision import cpu_has_bf16
from spert.training.batches import epoch_batches, epoch_rng
from spert.training.trainer import Trainer
from spert.utils import atomic_write_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "conll04"
VARIANTS = {
    "float32 (baseline)": {},
    "frozen word embeddings": {"freeze_word_embeddings": True},
    "bf16 autocast": {"bf16": True},
    "bf16 + frozen word embeddings (fast)": {"bf16": True, "freeze_word_embeddings": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the CoNLL04 files")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant")
    parser.add_argument("--rounds", type=int, default=3, help="turns each variant takes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()

    types = read_types(args.data / "conll04_types.json")
    train = read_dataset(args.data / "conll04_train.json", types)
    base = preset("fast-v1").replace(
        train_batch_size=args.batch_size, keep_checkpoints=0, seed=1, epochs=1
    )
    scratch = tempfile.TemporaryDirectory(prefix="spert-speed-")  # the trainers' (unused) out
    trainers = {
        name: Trainer(base.replace(**changes), train, types, Path(scratch.name), progress=False)
        for name, changes in VARIANTS.items()
    }
    first = next(iter(trainers.values()))
    batches = epoch_batches(first.lengths, first.step_size, epoch_rng(1, 1), True)
    per_round = args.steps // args.rounds
    needed = args.warmup + per_round * args.rounds
    if len(batches) < needed:
        parser.error(f"{len(batches)} step batches in an epoch, {needed} needed")

    def run(trainer: Trainer, indices: range) -> float:
        started = time.perf_counter()
        for i in indices:
            trainer.step([trainer.micro_batches(batches[i], 1)])
        return time.perf_counter() - started

    seconds = dict.fromkeys(trainers, 0.0)
    for trainer in trainers.values():
        trainer.model.train()
        run(trainer, range(args.warmup))
    for r in range(args.rounds):
        start = args.warmup + r * per_round
        for name, trainer in trainers.items():
            seconds[name] += run(trainer, range(start, start + per_round))
            print(f"round {r + 1}/{args.rounds}: {name} done", flush=True)

    steps = per_round * args.rounds
    baseline = seconds["float32 (baseline)"]
    rows = [
        {"variant": name, "ms_per_step": round(1000 * s / steps, 1), "speedup": baseline / s}
        for name, s in seconds.items()
    ]
    result = {
        "batch_size": args.batch_size,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "rows": rows,
    }
    print(
        f"batch {args.batch_size}, {steps} steps, {result['threads']} threads, "
        f"native CPU bfloat16: {result['cpu_bf16']}"
    )
    print(f"{'variant':40} {'ms/step':>8} {'speed-up':>9}")
    for row in rows:
        print(f"{row['variant']:40} {row['ms_per_step']:8.1f} {row['speedup']:8.2f}x")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
