"""Active learning on CoNLL04, simulated: does choosing what to annotate save labels?

    python benchmarks/active_learning.py                      # the full run (hours on a CPU)
    python benchmarks/active_learning.py --seeds 1 --rounds 1 --initial 20 --per-round 20 \\
        --pool 200 --test 50 --epochs 1 --name active_learning_smoke   # a quick check

For each seed: the same ``--initial`` random CoNLL04 training sentences to start with (the rest
of the training set is the unlabeled pool); then ``--rounds`` rounds, each adding
``--per-round`` sentences chosen from the pool by each strategy (``spert select``'s
uncertainty, margin and random: :mod:`spert.active.selection`), with the same training recipe
(``--preset``, default fast, or ``--train-config``) every round, from the encoder each time.
Each model is tested on the CoNLL04 test set (rel+ = relation strict micro F1, and entity
micro F1).

Writes ``--results/NAME.json`` (every round of every run; finished runs are not trained again),
``NAME.md`` (mean F1 per strategy and labeled-set size, and the verdict) and ``NAME.png`` (the
curves). The verdict: the number of labeled sentences at which uncertainty selection first
reaches random selection's final mean rel+ F1, and the labels that saves (goal: at least 30 %).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from spert import __version__, read_dataset, read_types
from spert.active.selection import STRATEGIES, rank, score
from spert.config import PRESETS, SpertConfig, preset, read_toml
from spert.data import Sentence
from spert.render.figures import new_figure, save_png
from spert.training import train
from spert.utils import atomic_write_text, setup_logging

GOAL = 0.30  # fewer labels than random for the same rel+ F1


def training_config(args: argparse.Namespace, seed: int) -> SpertConfig:
    options = preset(args.preset).to_dict()
    if args.train_config:
        options.update(read_toml(args.train_config))
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.encoder is not None:
        options["encoder"] = args.encoder
    return SpertConfig.from_dict({**options, "seed": seed}, "active learning")


def choose(
    model: Any, pool: list[Sentence], budget: int, strategy: str, seed: int, batch: int
) -> list[int]:
    """Positions in ``pool`` of the ``budget`` sentences ``strategy`` would annotate next."""
    if strategy == "random":
        scores = [0.0] * len(pool)
    else:
        predicted = model.predict(pool, batch_size=batch, progress=True)
        scores = [score([p], strategy) for p in predicted]
    keys = [tuple(s.tokens) for s in pool] if strategy != "random" else None
    return [s.index for s in rank(scores, min(budget, len(pool)), strategy, seed, keys)]


def run_strategy(
    args: argparse.Namespace,
    strategy: str,
    seed: int,
    train_data: list[Sentence],
    test_data: list[Sentence],
    types: Any,
) -> list[dict[str, Any]]:
    """One simulated loop: the F1 after each round."""
    order = list(range(len(train_data)))
    random.Random(seed).shuffle(order)  # the same start and pool for every strategy of a seed
    labeled = order[: args.initial]
    pool = order[args.initial :][: args.pool] if args.pool else order[args.initial :]
    config = training_config(args, seed)
    rounds = []
    for number in range(args.rounds + 1):
        run_dir = Path(args.work) / strategy / f"seed_{seed}" / f"round_{number}"
        started = time.perf_counter()
        result = train(config, [train_data[i] for i in labeled], types, run_dir, progress=False)
        metrics, _ = result.model.evaluate(test_data, batch_size=args.batch_size)
        entry = {
            "round": number,
            "labeled": len(labeled),
            "rel_plus_f1": round(metrics["relations_strict"]["micro"]["f1"], 2),
            "entity_f1": round(metrics["entities"]["micro"]["f1"], 2),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        if number < args.rounds and pool:
            picks = choose(
                result.model,
                [train_data[i] for i in pool],
                args.per_round,
                strategy,
                seed * 1000 + number,
                args.batch_size,
            )
            chosen = {pool[p] for p in picks}
            labeled += [i for i in pool if i in chosen]
            pool = [i for i in pool if i not in chosen]
        shutil.rmtree(run_dir, ignore_errors=True)  # the models are not kept: only their F1
        logging.info("%s seed %d: %s", strategy, seed, entry)
        rounds.append(entry)
    return rounds


def mean_curves(report: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Per strategy, per round: labeled count and mean F1 over the seeds that finished."""
    curves: dict[str, list[dict[str, float]]] = {}
    for strategy in STRATEGIES:
        runs = [r for key, r in report["runs"].items() if key.startswith(f"{strategy}/")]
        if not runs:
            continue
        rounds = min(len(r) for r in runs)
        curves[strategy] = [
            {
                "labeled": runs[0][k]["labeled"],
                "rel_plus_f1": statistics.mean(r[k]["rel_plus_f1"] for r in runs),
                "rel_plus_std": _std([r[k]["rel_plus_f1"] for r in runs]),
                "entity_f1": statistics.mean(r[k]["entity_f1"] for r in runs),
                "entity_std": _std([r[k]["entity_f1"] for r in runs]),
                "seeds": len(runs),
            }
            for k in range(rounds)
        ]
    return curves


def _std(values: list[float]) -> float:
    return round(statistics.stdev(values), 2) if len(values) > 1 else 0.0


def labels_to_reach(
    points: list[dict[str, float]], target: float
) -> tuple[int | None, float | None]:
    """The first measured labeled-set size whose mean rel+ F1 reaches ``target``, and the size
    where the curve, read as straight lines between the measured points, first reaches it."""
    measured = next((p["labeled"] for p in points if p["rel_plus_f1"] >= target), None)
    for before, after in zip(points, points[1:]):
        if before["rel_plus_f1"] >= target:
            return measured, float(before["labeled"])
        if after["rel_plus_f1"] >= target:
            share = (target - before["rel_plus_f1"]) / (
                after["rel_plus_f1"] - before["rel_plus_f1"]
            )
            return measured, before["labeled"] + share * (after["labeled"] - before["labeled"])
    if points and points[0]["rel_plus_f1"] >= target:
        return measured, float(points[0]["labeled"])
    return measured, None


def verdict(curves: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Where each selection strategy first reaches random selection's final mean rel+ F1, and
    the labels that saves; the goal is judged on uncertainty at the measured sizes."""
    if "random" not in curves or "uncertainty" not in curves:
        return {"note": "needs both the uncertainty and the random runs"}
    target = curves["random"][-1]
    if target["rel_plus_f1"] <= curves["random"][0]["rel_plus_f1"]:
        return {"note": "random selection's rel+ F1 did not rise over the rounds: no verdict"}
    out: dict[str, Any] = {
        "random_final_labeled": target["labeled"],
        "random_final_rel_plus_f1": round(target["rel_plus_f1"], 2),
        "strategies": {},
    }
    for strategy, points in curves.items():
        if strategy == "random":
            continue
        measured, interpolated = labels_to_reach(points, target["rel_plus_f1"])
        out["strategies"][strategy] = {
            "labeled_to_reach_it": measured,
            "labels_saved": None
            if measured is None
            else round(1 - measured / target["labeled"], 3),
            "interpolated_labeled": None if interpolated is None else round(interpolated, 1),
            "interpolated_labels_saved": (
                None if interpolated is None else round(1 - interpolated / target["labeled"], 3)
            ),
            "final_rel_plus_f1": round(points[-1]["rel_plus_f1"], 2),
        }
    saved = out["strategies"]["uncertainty"]["labels_saved"]
    out["goal_met"] = saved is not None and saved >= GOAL
    return out


def markdown(report: dict[str, Any], curves: dict[str, Any], result: dict[str, Any]) -> str:
    lines = [
        "# Active learning on CoNLL04 (simulated)",
        "",
        "Commands (their runs together): " + "; ".join(f"`{c}`" for c in report["commands"]),
        f"spert {report['spert_version']}; setup: {json.dumps(report['setup'])}",
        "",
        "Mean over the seeds (± sample standard deviation across seeds).",
        "",
        "| strategy | labeled | rel+ F1 | entity F1 | seeds |",
        "|---|---|---|---|---|",
    ]
    for strategy, points in curves.items():
        for p in points:
            lines.append(
                f"| {strategy} | {p['labeled']} | {p['rel_plus_f1']:.2f} ± "
                f"{p.get('rel_plus_std', 0.0):.2f} | {p['entity_f1']:.2f} ± "
                f"{p.get('entity_std', 0.0):.2f} | {p['seeds']} |"
            )
    lines += ["", "## Verdict", ""]
    if not result.get("random_final_labeled"):
        lines.append(result.get("note", ""))
        return "\n".join(lines) + "\n"
    lines.append(
        f"Random selection ends at {result['random_final_rel_plus_f1']:.2f} rel+ F1 (mean) with "
        f"{result['random_final_labeled']} labeled sentences. Labeled sentences each strategy "
        "needs to reach it: at the measured sizes (every 100), and where its curve, read as "
        "straight lines between them, crosses it."
    )
    lines += [
        "",
        "| strategy | final rel+ F1 | reaches it at (measured) | labels saved "
        "| reaches it at (interpolated) | labels saved |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, v in result["strategies"].items():
        lines.append(
            f"| {strategy} | {v['final_rel_plus_f1']:.2f} | {_or_never(v['labeled_to_reach_it'])} "
            f"| {_percent(v['labels_saved'])} | {_or_never(v['interpolated_labeled'])} "
            f"| {_percent(v['interpolated_labels_saved'])} |"
        )
    met = "met" if result["goal_met"] else "not met"
    lines += [
        "",
        f"Goal: uncertainty selection needs at least {100 * GOAL:.0f} % fewer labels than random "
        f"for the same rel+ F1 (at the measured sizes): **{met}**.",
    ]
    return "\n".join(lines) + "\n"


def _or_never(value: float | None) -> str:
    return "never (within the rounds)" if value is None else f"{value:g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def plot(curves: dict[str, Any], path: Path) -> bool:
    """The rel+ and entity F1 curves side by side, as a PNG (False without matplotlib)."""
    try:
        fig, axes = new_figure(ncols=2, width=5.0, height=4.0)
    except ImportError:
        logging.warning("matplotlib is not installed (the experiments extra): no plot")
        return False
    rel_ax, entity_ax = axes[0]
    for strategy, points in curves.items():
        x = [p["labeled"] for p in points]
        seeds = min(p["seeds"] for p in points)
        label = f"{strategy} ({seeds} seed{'s' if seeds > 1 else ''})"
        rel_ax.plot(x, [p["rel_plus_f1"] for p in points], marker="o", label=label)
        entity_ax.plot(x, [p["entity_f1"] for p in points], marker="o", label=label)
    for ax, title in ((rel_ax, "rel+ F1 (strict)"), (entity_ax, "entity F1")):
        ax.set_xlabel("labeled training sentences")
        ax.set_ylabel(title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    save_png(fig, path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/datasets/conll04")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--initial", type=int, default=100, help="random sentences to start")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=100, help="sentences added per round")
    parser.add_argument("--pool", type=int, default=0, help="cap the pool (0: all the rest)")
    parser.add_argument("--test", type=int, default=0, help="first N test sentences (0: all)")
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--train-config", help="TOML of training options over the preset")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--encoder", default=None, help="override the encoder")
    parser.add_argument("--batch-size", type=int, default=None, help="prediction batch size")
    parser.add_argument("--work", default="runs/active_learning")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--name", default="active_learning_conll04")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rewrite the table, verdict and plot from the runs in NAME.json",
    )
    args = parser.parse_args()
    setup_logging()

    data = Path(args.data)
    types = read_types(data / "conll04_types.json")
    train_data = read_dataset(data / "conll04_train.json", types)
    test_data = read_dataset(data / "conll04_test.json", types)
    if args.test:
        test_data = test_data[: args.test]
    results = Path(args.results)
    json_path = results / f"{args.name}.json"
    setup = {
        k: getattr(args, k)
        for k in ("initial", "rounds", "per_round", "pool", "test", "preset", "train_config")
    }
    setup.update(epochs=args.epochs, encoder=args.encoder, test_sentences=len(test_data))
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}}
    if report.get("setup", setup) != setup:
        raise SystemExit(f"{json_path} holds runs of another setup: use another --name")
    # The runs may come from several invocations (e.g. one strategy at a time): all are listed.
    commands = report.pop("commands", None) or [c for c in [report.pop("command", None)] if c]
    if not args.report_only:
        commands.append("python benchmarks/active_learning.py " + " ".join(sys.argv[1:]))
        report.update(setup=setup, spert_version=__version__)
    report["commands"] = commands
    for seed in [] if args.report_only else args.seeds:
        for strategy in args.strategies:
            key = f"{strategy}/seed_{seed}"
            if key in report["runs"]:
                logging.info("%s done already", key)
                continue
            report["runs"][key] = run_strategy(args, strategy, seed, train_data, test_data, types)
            atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    curves = mean_curves(report)
    report["curves"] = curves
    report["verdict"] = verdict(curves)
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(results / f"{args.name}.md", markdown(report, curves, report["verdict"]))
    plotted = plot(curves, results / f"{args.name}.png")
    print(markdown(report, curves, report["verdict"]), end="")
    print(f"saved {json_path}, {results / f'{args.name}.md'}" + (" and .png" if plotted else ""))


if __name__ == "__main__":
    main()
