"""Grids of training runs with a report (``spert experiment GRID.toml``): the paper's ablations.

A grid file (TOML; relative paths are relative to the grid file, and so is an ``encoder`` folder
written as ``./`` or ``../`` path)::

    title = "Negative samples"                   # heading of the report
    train = "data/conll04_train_dev.json"        # training set
    test = "data/conll04_test.json"              # the final model of each run is tested here
    types = "data/conll04_types.json"
    # dev = "data/conll04_dev.json"              # optional, evaluated after each epoch
    preset = "paper"                             # optional, default "paper"
    # config = "base.toml"                       # optional SpertConfig TOML over the preset
    seeds = [1, 2]                               # optional, default: the config's seed
    out = "../runs/neg_samples"                  # optional report directory
    runs_dir = "../runs/conll04"                 # optional run cache (default OUT/runs)
    keep_models = false                          # optional: delete model dirs once tested
    length_buckets = [15, 25, 35]                # optional: sentence length buckets (words)

    [options]                                    # SpertConfig options of every run
    epochs = 20

    [grid]                                       # every combination of these values ...
    neg_relation_kind = ["strong", "weak"]

    [[runs]]                                     # ... times each of these settings
    neg_entity_count = 10
    neg_relation_count = 10

A run is one setting and one seed. Its directory, ``RUNS/<name>/seed_<seed>/``, is named
after the options where its configuration differs from the grid's base configuration (preset,
config, options; ``base`` for none; a local encoder folder by its folder name), so grids
that share a runs directory share their common runs. A run is finished once its
``result.json`` exists; it holds the configuration and data it was made with, and the machine
it trained on (its time holds there only); a finished run made differently is an error, never
silently reused. Each run trains in-process
(:func:`spert.training.train`), tests its final model and keeps the test predictions, from
which the report is computed: ``OUT/results.json``, ``OUT/results.md`` (mean
± sample standard deviation over seeds) and PNG plots for the options the grid varies:
``neg_samples.png`` (F1 against the number of negative samples), ``sentence_length.png``
(relation F1 against test sentence length, per ``relation_context``) and ``pretraining.png``
(``encoder_init``).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from spert.config import PRESETS, ConfigError, SpertConfig, config_differences, preset, read_toml
from spert.data import Sentence, Types, read_dataset, read_types, write_dataset
from spert.evaluation import evaluate, mean_std, summarize
from spert.evaluation.summary import TITLES
from spert.render.figures import new_figure, save_png
from spert.training import train
from spert.utils import atomic_write_text, format_duration, machine_description

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.json"
#: What the report keeps of each run; "machine" only where the run recorded it.
_PER_RUN_KEYS = (
    "name",
    "seed",
    "train_seconds",
    "machine",
    "test",
    "test_uncalibrated",
    "by_length",
)

#: Per-run keys that older or uncalibrated runs lack.
_OPTIONAL_KEYS = ("machine", "test_uncalibrated")

# Report columns; "relation" counts argument spans and relation type only (the setting the paper
# reports for SciERC), "relation strict" also the argument entity types.
_REPORTED = {
    name: TITLES[name]
    for name in (
        "entity_micro_f1",
        "relation_strict_micro_f1",
        "relation_strict_macro_f1",
        "relation_micro_f1",
    )
}
_KEYS = {
    "title",
    "train",
    "dev",
    "test",
    "types",
    "preset",
    "config",
    "seeds",
    "out",
    "runs_dir",
    "keep_models",
    "length_buckets",
    "options",
    "grid",
    "runs",
}
_NEG = ("neg_entity_count", "neg_relation_count")
#: Test sentence length buckets of the report (upper bounds, in words).
DEFAULT_LENGTH_BUCKETS = (15, 25, 35)


@dataclass
class Grid:
    """A parsed grid file."""

    path: Path
    title: str
    train: Path
    test: Path
    types: Path
    dev: Path | None
    base: SpertConfig
    seeds: list[int]
    axes: dict[str, list[Any]]  # [grid]: option -> values
    variants: list[dict[str, Any]]  # [[runs]]
    out: Path | None = None
    runs_dir: Path | None = None
    keep_models: bool = True
    length_buckets: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTH_BUCKETS))

    @property
    def varied(self) -> list[str]:
        """The options the grid sets, in SpertConfig order."""
        keys = set(self.axes) | {k for v in self.variants for k in v}
        return [f.name for f in fields(SpertConfig) if f.name in keys]


@dataclass
class Run:
    """One setting with one seed."""

    name: str
    seed: int
    config: SpertConfig
    directory: Path

    @property
    def done(self) -> bool:
        return (self.directory / RESULT_FILE).is_file()


def _local_encoder(encoder: Any, root: Path) -> Any:
    """An ``encoder`` folder given as ``./`` or ``../`` path, made relative to the grid file like
    its other paths; encoder names (``bert-base-cased``) stay as they are."""
    if isinstance(encoder, str) and encoder.startswith(("./", "../")):
        return str((root / encoder).resolve())
    return encoder


def _local_encoder_option(options: dict[str, Any], root: Path) -> dict[str, Any]:
    if "encoder" not in options:
        return options
    return {**options, "encoder": _local_encoder(options["encoder"], root)}


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every run's configuration is validated here."""
    path = Path(path)
    raw = read_toml(path)
    where = str(path)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
    root = path.resolve().parent

    def file(key: str, required: bool = True, exists: bool = True) -> Path | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{where}: '{key}' (a file path) is required")
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a path string, got {value!r}")
        path = (root / value).resolve()
        if exists and not path.is_file():
            raise ConfigError(f"{where}: '{key}': no such file {path}")
        return path

    name = _string(raw, "preset", "paper", where)
    if name not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    values = preset(name).to_dict()
    config_file = file("config", required=False)
    if config_file is not None:
        values.update(read_toml(config_file))
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: [options] must be a table of SpertConfig options")
    options = _local_encoder_option(options, root)
    base = SpertConfig.from_dict({**values, **options}, f"{where} [options]")

    axes = raw.get("grid", {})
    if not isinstance(axes, dict):
        raise ConfigError(f"{where}: [grid] must be a table of option = [values]")
    for key, vals in axes.items():
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{where}: [grid] {key} must be a non-empty list of values")
    if "encoder" in axes:
        axes["encoder"] = [_local_encoder(v, root) for v in axes["encoder"]]
    variants = raw.get("runs", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{where}: [[runs]] must be tables of options")
    variants = [_local_encoder_option(v, root) for v in variants]
    for key in list(axes) + [k for v in variants for k in v]:
        if key == "seed":
            raise ConfigError(f"{where}: set seeds with the top-level 'seeds' list, not as option")

    seeds = raw.get("seeds", [base.seed])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers")
    buckets = raw.get("length_buckets", list(DEFAULT_LENGTH_BUCKETS))
    if (
        not isinstance(buckets, list)
        or not all(isinstance(b, int) and b > 0 for b in buckets)
        or buckets != sorted(set(buckets))
    ):
        raise ConfigError(f"{where}: 'length_buckets' must be increasing positive integers")
    keep_models = raw.get("keep_models", True)
    if not isinstance(keep_models, bool):
        raise ConfigError(f"{where}: 'keep_models' must be true or false")
    grid = Grid(
        path=path,
        title=_string(raw, "title", path.stem, where),
        train=file("train"),  # type: ignore[arg-type]
        test=file("test"),  # type: ignore[arg-type]
        types=file("types"),  # type: ignore[arg-type]
        dev=file("dev", required=False),
        base=base,
        seeds=seeds,
        axes=axes,
        variants=variants,
        out=file("out", required=False, exists=False),
        runs_dir=file("runs_dir", required=False, exists=False),
        keep_models=keep_models,
        length_buckets=buckets,
    )
    settings(grid)  # every setting must make a valid configuration
    return grid


def _string(raw: dict[str, Any], key: str, default: str, where: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def settings(grid: Grid) -> list[SpertConfig]:
    """The configurations of the grid (seed: the base's), in order, without duplicates."""
    keys = list(grid.axes)
    combos = [dict(zip(keys, values)) for values in itertools.product(*grid.axes.values())]
    out: list[SpertConfig] = []
    for variant in grid.variants or [{}]:
        for combo in combos:
            values = {**grid.base.to_dict(), **combo, **variant}
            config = SpertConfig.from_dict(values, f"{grid.path} (setting {combo | variant})")
            if config not in out:
                out.append(config)
    return out


def _name_part(value: Any) -> Any:
    """An absolute path (a local encoder folder) by its last component, so that run names and
    report rows do not depend on where the repository lies."""
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def run_name(config: SpertConfig, base: SpertConfig) -> str:
    """The options where ``config`` differs from ``base`` (seed aside), e.g.
    ``neg_entity_count=10,neg_relation_count=10``; ``base`` when none."""
    parts = [
        f"{f.name}={_name_part(getattr(config, f.name))}"
        for f in fields(SpertConfig)
        if f.name != "seed" and getattr(config, f.name) != getattr(base, f.name)
    ]
    name = ",".join(parts).replace(os.sep, "_") or "base"
    if len(name) > 120:  # file names are limited (255 bytes); keep it readable and unique
        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return name


def plan(grid: Grid, runs_dir: Path) -> list[Run]:
    """Every run of the grid: each setting with each seed."""
    runs = []
    for config in settings(grid):
        name = run_name(config, grid.base)
        for seed in grid.seeds:
            runs.append(
                Run(name, seed, config.replace(seed=seed), runs_dir / name / f"seed_{seed}")
            )
    return runs


def _data_files(grid: Grid) -> dict[str, str | None]:
    return {
        "train": str(grid.train),
        "dev": str(grid.dev) if grid.dev else None,
        "test": str(grid.test),
        "types": str(grid.types),
    }


def _check_cached(run: Run, grid: Grid) -> dict[str, Any]:
    path = run.directory / RESULT_FILE
    result = json.loads(path.read_text(encoding="utf-8"))
    differ = config_differences(result.get("config", {}), run.config)
    data = result.get("data", {})
    differ += [f"data {k}" for k, v in _data_files(grid).items() if data.get(k) != v]
    if differ:
        raise ConfigError(
            f"{path}: a finished run made differently (differs in {', '.join(differ)}); "
            "delete its directory or use another runs_dir"
        )
    return result


def report_dir(grid: Grid, out_dir: str | Path | None = None) -> Path:
    """Where the report goes: ``out_dir``, else the grid's ``out``, else
    ``runs/experiments/<grid file name>``."""
    if out_dir is not None:
        return Path(out_dir)
    return grid.out or Path("runs") / "experiments" / grid.path.stem


def run_experiment(
    grid: Grid,
    out_dir: str | Path | None = None,
    device: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the grid's unfinished runs, then write and return the report.

    ``dry_run`` logs the runs (finished or not), trains and writes nothing, and returns
    ``{"runs", "finished", "plan"}``.
    """
    out = report_dir(grid, out_dir)
    runs_dir = grid.runs_dir or out / "runs"
    runs = plan(grid, runs_dir)
    types = read_types(grid.types)
    test_data = read_dataset(grid.test, types)
    todo = [r for r in runs if not r.done]
    for r in runs:
        if r.done:
            _check_cached(r, grid)
    logger.info(
        "%s: %d runs (%d settings x %d seeds), %d finished, %d to train",
        grid.path,
        len(runs),
        len(runs) // len(grid.seeds),
        len(grid.seeds),
        len(runs) - len(todo),
        len(todo),
    )
    if dry_run:
        for i, r in enumerate(runs, 1):
            state = "finished" if r.done else "to train"
            logger.info(
                "run %d/%d %s seed %d: %s (%s)", i, len(runs), r.name, r.seed, state, r.directory
            )
        return {
            "runs": len(runs),
            "finished": len(runs) - len(todo),
            "plan": [
                {"name": r.name, "seed": r.seed, "directory": str(r.directory), "done": r.done}
                for r in runs
            ],
        }
    if todo:
        train_data = read_dataset(grid.train, types)
        dev_data = read_dataset(grid.dev, types) if grid.dev else None
        seconds: list[float] = []
        for i, r in enumerate(runs, 1):
            if r.done:
                logger.info("run %d/%d %s seed %d: finished already", i, len(runs), r.name, r.seed)
                continue
            left = sum(1 for x in todo if not x.done)
            eta = f", ETA {format_duration(statistics.mean(seconds) * left)}" if seconds else ""
            logger.info("run %d/%d %s seed %d: training%s", i, len(runs), r.name, r.seed, eta)
            started = time.perf_counter()
            record = _train_and_test(
                r, grid, train_data, dev_data, test_data, types, device, progress
            )
            seconds.append(time.perf_counter() - started)
            logger.info(
                "run %d/%d %s seed %d: entity micro F1 %.2f, relation strict micro F1 %.2f (%s)",
                i,
                len(runs),
                r.name,
                r.seed,
                record["test"]["entity_micro_f1"],
                record["test"]["relation_strict_micro_f1"],
                format_duration(record["train_seconds"]),
            )
    return write_report(grid, runs, types, test_data, out)


def _train_and_test(
    run: Run,
    grid: Grid,
    train_data: Sequence[Sentence],
    dev_data: Sequence[Sentence] | None,
    test_data: Sequence[Sentence],
    types: Types,
    device: str | None,
    progress: bool,
) -> dict[str, Any]:
    """Train one run, test its final model, keep the predictions and write the run's
    result (which marks it finished); the result."""
    started = time.perf_counter()
    result = train(
        run.config, train_data, types, run.directory, dev_data, device=device, progress=progress
    )
    train_seconds = time.perf_counter() - started
    machine = _machine(result.model.device)
    predictions = result.model.predict(test_data, progress=progress)
    write_dataset(run.directory / PREDICTIONS_FILE, predictions)
    metrics = evaluate(test_data, predictions, types)
    uncalibrated = None
    if result.model.calibration is not None:
        # What the calibration (fitted on dev) adds, measured on the same model.
        raw = result.model.predict(test_data, progress=progress, calibration=None)
        uncalibrated = summarize(evaluate(test_data, raw, types))
    record = {
        "name": run.name,
        "seed": run.seed,
        "config": run.config.to_dict(),
        "data": _data_files(grid),
        "train_seconds": round(train_seconds, 1),
        "machine": machine,
        "best_epoch": result.best_epoch,
        "test": summarize(metrics),
        "test_metrics": metrics,
    }
    if uncalibrated is not None:
        record["test_uncalibrated"] = uncalibrated
    del result
    gc.collect()
    if not grid.keep_models:
        for model_dir in ("final", "best"):
            shutil.rmtree(run.directory / model_dir, ignore_errors=True)
    atomic_write_text(run.directory / RESULT_FILE, json.dumps(record, indent=2))
    return record


def _machine(device: torch.device) -> str:
    """Where a run trained (its time holds there only): the CPU, and the GPU if it used one."""
    if device.type == "cuda":
        return f"{machine_description()}, {torch.cuda.get_device_name(device)}"
    return machine_description()


# -- report --------------------------------------------------------------------------------------


def bucket_labels(bounds: Sequence[int]) -> list[str]:
    """Labels of the length buckets with these upper bounds: ``<=15``, ``16-25``, ``>35``."""
    labels, low = [], 1
    for high in bounds:
        labels.append(f"<={high}" if low == 1 else f"{low}-{high}")
        low = high + 1
    return labels + [f">{bounds[-1]}" if bounds else "all"]


def by_length(
    gold: Sequence[Sentence], predicted: Sequence[Sentence], types: Types, bounds: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Entity and relation F1 of the test sentences in each length bucket (words)."""
    labels = bucket_labels(bounds)
    out = {}
    for k, label in enumerate(labels):
        low = bounds[k - 1] + 1 if k > 0 else 1
        high = bounds[k] if k < len(bounds) else None
        index = [
            i
            for i, s in enumerate(gold)
            if low <= len(s.tokens) and (high is None or len(s.tokens) <= high)
        ]
        metrics = evaluate([gold[i] for i in index], [predicted[i] for i in index], types)
        out[label] = {"sentences": len(index), **summarize(metrics)}
    return out


def write_report(
    grid: Grid, runs: Sequence[Run], types: Types, test_data: Sequence[Sentence], out: Path
) -> dict[str, Any]:
    """``results.json``, ``results.md`` and the plots of the finished runs."""
    finished = []
    for r in runs:
        if not r.done:
            continue
        result = _check_cached(r, grid)
        predicted = read_dataset(r.directory / PREDICTIONS_FILE, types)
        result["by_length"] = by_length(test_data, predicted, types, grid.length_buckets)
        finished.append((r, result))

    varied = grid.varied
    groups: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
    for r, result in finished:
        groups.setdefault(r.name, []).append((r, result))
    rows = []
    for name, members in groups.items():
        config = members[0][0].config
        row: dict[str, Any] = {
            "name": name,
            "settings": {k: getattr(config, k) for k in varied},
            "seeds": [r.seed for r, _ in members],
            "train_seconds": statistics.mean(res["train_seconds"] for _, res in members),
        }
        for metric in _REPORTED:
            row[metric] = _mean_std([res["test"][metric] for _, res in members])
        if all("test_uncalibrated" in res for _, res in members):
            row["uncalibrated"] = {
                metric: _mean_std([res["test_uncalibrated"][metric] for _, res in members])
                for metric in _REPORTED
            }
        row["by_length"] = {
            label: {
                "sentences": members[0][1]["by_length"][label]["sentences"],
                "relation_strict_micro_f1": _mean_std(
                    [res["by_length"][label]["relation_strict_micro_f1"] for _, res in members]
                ),
                "entity_micro_f1": _mean_std(
                    [res["by_length"][label]["entity_micro_f1"] for _, res in members]
                ),
            }
            for label in bucket_labels(grid.length_buckets)
        }
        rows.append(row)

    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if rows and any(k in varied for k in _NEG):
        plots.append(plot_negative_samples(rows, varied, out / "neg_samples.png"))
    if rows and "relation_context" in varied:
        plots.append(plot_sentence_length(rows, varied, grid.length_buckets, out))
    if rows and "encoder_init" in varied:
        plots.append(plot_pretraining(rows, varied, out / "pretraining.png"))
    report = {
        "title": grid.title,
        "grid": str(grid.path),
        "data": _data_files(grid),
        "base_config": grid.base.to_dict(),
        "varied": varied,
        "runs": len(runs),
        "finished": len(finished),
        # runs cached before machines were recorded have none
        "machines": sorted({res["machine"] for _, res in finished if "machine" in res}),
        "std": "sample standard deviation (n - 1 denominator) over seeds; null for one seed",
        "settings": rows,
        "per_run": [
            {k: res[k] for k in _PER_RUN_KEYS if k in res or k not in _OPTIONAL_KEYS}
            for _, res in finished
        ],
        "plots": [p.name for p in plots],
    }
    atomic_write_text(out / "results.json", json.dumps(report, indent=2))
    atomic_write_text(out / "results.md", format_markdown(grid, report))
    logger.info("report: %s (%d of %d runs finished)", out / "results.md", len(finished), len(runs))
    return report


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std}


def _cell(value: dict[str, float | None]) -> str:
    mean, std = value["mean"], value["std"]
    assert mean is not None
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _machine_lines(report: dict[str, Any]) -> list[str]:
    """The report's line naming the machines its runs trained on (none for runs cached before
    runs recorded it)."""
    machines = report["machines"]
    if not machines:
        return []
    text = "Trained on: " + "; ".join(machines) + "."
    if len(machines) > 1:
        text += " Train times mix these machines."
    unknown = sum(1 for run in report["per_run"] if "machine" not in run)
    if unknown:
        text += f" {unknown} of the {len(report['per_run'])} finished runs recorded no machine."
    return [text, ""]


def _setting_cells(row: dict[str, Any], varied: Sequence[str]) -> list[str]:
    """A results table's first cells for one setting: its varied options and its seeds."""
    return [str(_name_part(row["settings"][k])) for k in varied] + [
        " ".join(str(s) for s in row["seeds"])
    ]


def format_markdown(grid: Grid, report: dict[str, Any]) -> str:
    varied = report["varied"]
    base = grid.base
    fixed = ", ".join(
        f"{k}={_name_part(v)}" for k, v in base.to_dict().items() if k not in varied and k != "seed"
    )
    lines = [
        f"# {report['title']}",
        "",
        f"Grid `{grid.path.name}`: trained on `{grid.train.name}`"
        + (f" (dev `{grid.dev.name}`)" if grid.dev else "")
        + f", final model tested on `{grid.test.name}`. {report['finished']} of "
        f"{report['runs']} runs finished. F1 in percent, mean ± sample standard deviation over "
        "seeds (n - 1; none for one seed); train time is the mean per run.",
        "",
        f"Other options: {fixed}.",
        "",
        *_machine_lines(report),
        "| " + " | ".join(varied + ["seeds"] + list(_REPORTED.values()) + ["train time"]) + " |",
        "|---" * (len(varied) + len(_REPORTED) + 2) + "|",
    ]
    for row in report["settings"]:
        cells = _setting_cells(row, varied) + [_cell(row[m]) for m in _REPORTED]
        cells += [format_duration(row["train_seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    calibrated = [row for row in report["settings"] if "uncalibrated" in row]
    if calibrated:
        lines += [
            "",
            "The same models tested without their calibration (`test_uncalibrated`):",
            "",
            "| " + " | ".join(varied + ["seeds"] + list(_REPORTED.values())) + " |",
            "|---" * (len(varied) + len(_REPORTED) + 1) + "|",
        ]
        for row in calibrated:
            cells = _setting_cells(row, varied) + [_cell(row["uncalibrated"][m]) for m in _REPORTED]
            lines.append("| " + " | ".join(cells) + " |")
    if "relation_context" in varied and report["settings"]:
        labels = bucket_labels(grid.length_buckets)
        counts = report["settings"][0]["by_length"]
        lines += [
            "",
            "Relation strict micro F1 by test sentence length (words):",
            "",
            "| "
            + " | ".join(varied + [f"{b} ({counts[b]['sentences']} sent.)" for b in labels])
            + " |",
            "|---" * (len(varied) + len(labels)) + "|",
        ]
        for row in report["settings"]:
            cells = [str(_name_part(row["settings"][k])) for k in varied]
            cells += [_cell(row["by_length"][b]["relation_strict_micro_f1"]) for b in labels]
            lines.append("| " + " | ".join(cells) + " |")
    if report["plots"]:
        lines += [""] + [f"![{p}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"


# -- plots ---------------------------------------------------------------------------------------


def _figure(ncols: int = 1, width: float = 5.5, height: float = 4) -> tuple[Any, Any]:
    """A figure of one row of plots, and their axes."""
    fig, axes = new_figure(ncols, width=width, height=height, layout="tight")
    return fig, axes[0]


def _save(fig: Any, path: Path) -> Path:
    # Cropped to what is drawn: the legends are below the plots.
    return save_png(fig, path, dpi=120, tight=True)


def _legend_below(fig: Any, ax: Any) -> None:
    """One legend for the figure, under the plots (many lines would hide the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8)


def _label(row: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row['settings'][k]}" for k in keys)


def _err(value: dict[str, float | None]) -> float:
    return value["std"] or 0.0


def plot_negative_samples(rows: list[dict[str, Any]], varied: list[str], path: Path) -> Path:
    """Entity and relation F1 against the number of negative samples, a line per other
    setting. Options tied to the x axis (equal to it in every run) share it."""
    x_key = next(k for k in _NEG if k in varied)
    tied = [k for k in varied if all(r["settings"][k] == r["settings"][x_key] for r in rows)]
    others = [k for k in varied if k not in tied]
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(_label(row, others), []).append(row)
    fig, axes = _figure(2)
    for ax, metric, title in zip(
        axes,
        ("entity_micro_f1", "relation_strict_micro_f1"),
        ("Entities (micro F1)", "Relations, strict (micro F1)"),
    ):
        for label, members in lines.items():
            members = sorted(members, key=lambda r: r["settings"][x_key])
            xs = [r["settings"][x_key] for r in members]
            ax.errorbar(
                xs,
                [r[metric]["mean"] for r in members],
                yerr=[_err(r[metric]) for r in members],
                marker="o",
                capsize=3,
                label=label or None,
            )
        ax.set_xscale("symlog", linthresh=1)
        ticks = sorted({r["settings"][x_key] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(" = ".join(tied) + " (per sentence)")
        ax.set_ylabel("F1 (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0])
    return _save(fig, path)


def plot_sentence_length(
    rows: list[dict[str, Any]], varied: list[str], bounds: Sequence[int], out: Path
) -> Path:
    """Relation strict micro F1 per test sentence length bucket, a line per relation context
    (and other setting)."""
    labels = bucket_labels(bounds)
    counts = rows[0]["by_length"]
    fig, axes = _figure(1)
    ax = axes[0]
    xs = list(range(len(labels)))
    for row in rows:
        values = [row["by_length"][b]["relation_strict_micro_f1"] for b in labels]
        ax.errorbar(
            xs,
            [v["mean"] for v in values],
            yerr=[_err(v) for v in values],
            marker="o",
            capsize=3,
            label=_label(row, varied),
        )
    ax.set_xticks(xs, [f"{b}\n({counts[b]['sentences']} sent.)" for b in labels])
    ax.set_xlabel("test sentence length (words)")
    ax.set_ylabel("relation strict micro F1 (%)")
    ax.set_title("Relation F1 by sentence length")
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    return _save(fig, out / "sentence_length.png")


def plot_pretraining(rows: list[dict[str, Any]], varied: list[str], path: Path) -> Path:
    """Bars of entity and relation F1 per encoder initialization (and other setting)."""
    import numpy as np

    others = [k for k in varied if k != "encoder_init"]
    fig, axes = _figure(1, width=max(5.5, 0.8 * len(rows)), height=6.5 if others else 4)
    ax = axes[0]
    xs = np.arange(len(rows))
    width = 0.38
    for offset, metric, name in (
        (-width / 2, "entity_micro_f1", "entity micro F1"),
        (width / 2, "relation_strict_micro_f1", "relation strict micro F1"),
    ):
        ax.bar(
            xs + offset,
            [r[metric]["mean"] for r in rows],
            width,
            yerr=[_err(r[metric]) for r in rows],
            capsize=3,
            label=name,
        )
    ticks = [
        str(r["settings"]["encoder_init"]) + (f", {_label(r, others)}" if others else "")
        for r in rows
    ]
    if others:  # long labels: slanted
        ax.set_xticks(xs, ticks, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticks(xs, ticks)
    ax.set_ylabel("F1 (%)")
    ax.set_title("Encoder: pre-trained, random init, frozen")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = ["Grid", "Run", "load_grid", "plan", "run_experiment", "write_report", "by_length"]
