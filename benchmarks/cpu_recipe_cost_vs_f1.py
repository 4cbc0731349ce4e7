"""CPU recipes: dev F1 against training cost, one table and one plot over every CoNLL04-dev run
of cpu_recipe_candidates.toml, cpu_recipe_averaging_negatives_steps.toml, paper_dev.toml and
fast_vs_paper.toml (they share runs/experiments/conll04_dev).

    python benchmarks/cpu_recipe_cost_vs_f1.py [--runs runs/experiments/conll04_dev]
        [--out benchmarks/results/ablations/cpu_recipe]

Cost: each run's training time at 1 torch thread on the shared 2-core machine, as a ratio to
the `fast-v1` run's (same seed, same conditions; `fast-v1` is the recipe then named `fast`:
batch 8, 10 epochs at 1e-4, float32), times its idle 2-thread train +
test time (5.85 min, mean of 5.5 and 6.2, benchmarks/results/accuracy_conll04_fast.md). An
ESTIMATE: the machine's load varied between runs and 1-thread ratios need not equal 2-thread ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spert.config import preset

# The two reference recipes a run's label is written against (speed options off in both).
FAST_V1 = preset("fast-v1").to_dict()
PAPER = preset("paper").to_dict()
FAST_IDLE_MIN = 5.85
SHOWN = (
    "train_batch_size",
    "length_bucketing",
    "epochs",
    "lr",
    "head_lr",
    "lr_warmup",
    "word_shape_dim",
    "neg_entity_count",
    "neg_relation_count",
    "grad_accumulation",
    "average_last_epochs",
    "bf16",
    "freeze_word_embeddings",
)


def label(cfg: dict) -> str:
    """`fast-v1 + ...` for length-bucketed batches (differences from it), else `paper + ...`."""
    fastish = cfg["length_bucketing"]
    base = FAST_V1 if fastish else PAPER
    parts = [f"{k}={cfg.get(k, base[k])}" for k in SHOWN if cfg.get(k, base[k]) != base[k]]
    name = "fast-v1" if fastish else "paper"
    return name + (" + " + ", ".join(parts) if parts else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="runs/experiments/conll04_dev")
    ap.add_argument("--out", default="benchmarks/results/ablations/cpu_recipe")
    args = ap.parse_args()
    rows = []
    for result in sorted(Path(args.runs).glob("*/seed_*/result.json")):
        r = json.loads(result.read_text())
        cfg = r["config"]
        history = (result.parent / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(x) for x in history]
        rows.append(
            {
                "setting": label(cfg),
                "seed": r["seed"],
                "config": cfg,
                "entity": r["test"]["entity_micro_f1"],
                "rel_strict": r["test"]["relation_strict_micro_f1"],
                "train_min": r["train_seconds"] / 60,
                "steps": epochs[-1]["step"],
                "epoch_s": statistics.mean(e["train_seconds"] for e in epochs),
            }
        )
    fast = [x for x in rows if x["setting"] == "fast-v1"]
    fast_min = statistics.mean(x["train_min"] for x in fast)
    for x in rows:
        x["ratio"] = x["train_min"] / fast_min
        x["idle_est"] = x["ratio"] * FAST_IDLE_MIN
        same_epoch_cost = x["config"]["train_batch_size"] == 8 and x["config"]["length_bucketing"]
        x["idle_epochs"] = FAST_IDLE_MIN * x["config"]["epochs"] / 10 if same_epoch_cost else None
    rows.sort(key=lambda x: (x["setting"] != "fast-v1", x["setting"], x["seed"]))
    lines = [
        "# CPU recipes: CoNLL04 dev (final model), bundled encoder",
        "",
        "Every run of `benchmarks/grids/{cpu_recipe_candidates,"
        "cpu_recipe_averaging_negatives_steps,paper_dev,fast_vs_paper}.toml`",
        "(trained on conll04_train.json, final model tested on conll04_dev.json; no per-epoch dev",
        "evaluation, no checkpoints). Made by `python benchmarks/cpu_recipe_cost_vs_f1.py`.",
        "",
        "Train time: 1 torch thread (`OMP_NUM_THREADS=1`) on the 2-core machine shared with other",
        "work (load average 1.5-3 during these runs), so NOT idle-machine times. Idle 2-thread",
        f"estimate = train time / the `fast-v1` run's train time ({fast_min:.1f} min here) x",
        f"{FAST_IDLE_MIN} min (the `fast-v1` recipe's idle 2-thread train + test time): an",
        "estimate (float32; runs with bf16 or frozen word embeddings take less per epoch).",
        "For length-bucketed batches of 8 an epoch costs the same whatever the other options",
        "(casing features and learning rates add nothing measurable), so a second estimate,",
        f"less exposed to the machine's load: {FAST_IDLE_MIN} min x epochs / 10.",
        "Exception: the `paper` run (paper_dev.toml) used 2 threads on the idle machine, so its",
        "train time is an idle 2-thread time and its estimate columns do not apply.",
        "",
        "| "
        + " | ".join(
            [
                "setting",
                "seed",
                "optimizer steps",
                "s per epoch",
                "dev entity micro F1",
                "dev relation strict micro F1",
                "train time (1 thread, shared)",
                "x fast",
                "est. idle 2-thread time",
                "est. by epochs",
            ]
        )
        + " |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['setting']} | {x['seed']} | {x['steps']} | {x['epoch_s']:.0f} "
            f"| {x['entity']:.2f} | {x['rel_strict']:.2f} | {x['train_min']:.1f} min "
            f"| {x['ratio']:.2f} | {x['idle_est']:.1f} min | "
            + (f"{x['idle_epochs']:.1f} min |" if x["idle_epochs"] else "|")
        )
    groups: dict[str, list] = {}
    for x in rows:
        groups.setdefault(x["setting"], []).append(x)
    multi = {k: v for k, v in groups.items() if len(v) > 1}
    if multi:
        lines += [
            "",
            "Means over seeds:",
            "",
            "| setting | seeds | dev entity micro F1 | dev relation strict micro F1 |",
            "|---|---|---|---|",
        ]
        for k, v in multi.items():
            lines.append(
                f"| {k} | {' '.join(str(x['seed']) for x in v)} | "
                f"{statistics.mean(x['entity'] for x in v):.2f} | "
                f"{statistics.mean(x['rel_strict'] for x in v):.2f} |"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines += ["", "![dev relation strict F1 against estimated cost](cost_vs_f1.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(rows, indent=1))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    for k, v in groups.items():
        xs = [x["idle_est"] for x in v]
        ys = [x["rel_strict"] for x in v]
        ax.scatter(xs, ys, s=25)
        ax.annotate(
            k,
            (statistics.mean(xs), statistics.mean(ys)),
            fontsize=6,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.axvline(10.4, color="grey", ls="--", lw=0.8)
    ax.text(10.5, ax.get_ylim()[0] + 0.5, "10.4 min budget", fontsize=7, color="grey")
    ax.set_xlabel("estimated idle 2-thread train+test time (min; from 1-thread shared runs)")
    ax.set_ylabel("CoNLL04 dev relation strict micro F1")
    ax.set_title("CPU recipes on CoNLL04 dev (1 point per run)")
    fig.savefig(out / "cost_vs_f1.png", dpi=130, bbox_inches="tight")


if __name__ == "__main__":
    main()
