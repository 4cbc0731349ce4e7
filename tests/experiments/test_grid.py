"""``spert experiment``: a grid of runs, cached, with a markdown report and plots."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
from conftest import DATASETS, ROOT

import spert.experiments.grid
from spert import SpERT, read_dataset, read_types
from spert.cli.train import register as add_parser
from spert.config import ConfigError, config_differences, preset
from spert.data import write_dataset
from spert.evaluation import evaluate, summarize
from spert.experiments.grid import (
    RESULT_FILE,
    bucket_labels,
    by_length,
    load_grid,
    plan,
    run_experiment,
    settings,
)
from spert.utils import machine_description

CONLL04 = DATASETS / "conll04"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not CONLL04.is_dir(), reason="../shared/datasets not present"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training and 30 test sentences of CoNLL04 (test lengths spread over all buckets)."""
    types = read_types(CONLL04 / "conll04_types.json")
    root = tmp_path_factory.mktemp("data")
    write_dataset(root / "train.json", read_dataset(CONLL04 / "conll04_train.json", types)[:12])
    write_dataset(root / "test.json", read_dataset(CONLL04 / "conll04_test.json", types)[:30])
    (root / "types.json").write_text((CONLL04 / "conll04_types.json").read_text())
    return root


def write_grid(path: Path, data: Path, encoder: Path, body: str, seeds: str = "[1]") -> Path:
    # A large learning rate: the tiny encoder's model then predicts (almost) nothing, where an
    # untrained one predicts thousands of entities, which take long to score.
    path.write_text(
        f"""
title = "Test grid"
train = "{data / "train.json"}"
test = "{data / "test.json"}"
types = "{data / "types.json"}"
seeds = {seeds}
keep_models = false

[options]
encoder = "{encoder}"
epochs = 1
neg_entity_count = 30
neg_relation_count = 10
lr = 1e-3

{body}
""",
        encoding="utf-8",
    )
    return path


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000


def test_grid_trains_once_then_reads_from_cache(
    data, bert_dir, tmp_path, monkeypatch, caplog
) -> None:
    grid = load_grid(
        write_grid(
            tmp_path / "context.toml",
            data,
            bert_dir,
            '[grid]\nrelation_context = ["local", "none"]',
        )
    )
    calls: list[str] = []
    real_train = spert.experiments.grid.train

    def counting_train(*args, **kwargs):
        calls.append(Path(args[3]).parent.name)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(spert.experiments.grid, "train", counting_train)
    out = tmp_path / "out"
    report = run_experiment(grid, out, progress=False)
    assert calls == ["base", "relation_context=none"]
    assert report["finished"] == report["runs"] == 2
    for name in calls:
        run_dir = out / "runs" / name / "seed_1"
        result = json.loads((run_dir / RESULT_FILE).read_text())
        assert result["config"]["relation_context"] == ("none" if "none" in name else "local")
        assert not (run_dir / "final").exists()  # keep_models = false
        # The figures are those of the kept predictions.
        types = read_types(data / "types.json")
        gold = read_dataset(data / "test.json", types)
        predicted = read_dataset(run_dir / "predictions.json", types)
        assert result["test"] == summarize(evaluate(gold, predicted, types))
        # Times hold on this machine only (and its GPU, if it trained on one).
        assert result["machine"].startswith(machine_description())
        assert "test_uncalibrated" not in result  # only calibrated runs have it

    md = (out / "results.md").read_text()
    assert report["machines"] == [result["machine"]]
    assert f"Trained on: {result['machine']}." in md
    assert "| relation_context | seeds | entity micro F1 | relation strict micro F1 |" in md
    assert "| local | 1 |" in md and "| none | 1 |" in md
    assert "Relation strict micro F1 by test sentence length" in md
    assert "without their calibration" not in md
    assert is_png(out / "sentence_length.png")
    assert not (out / "neg_samples.png").exists() and not (out / "pretraining.png").exists()
    assert json.loads((out / "results.json").read_text())["plots"] == ["sentence_length.png"]

    # Again: nothing is trained, results are read back; the report is rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*.json")}
    caplog.set_level(logging.INFO, logger="spert.experiments.grid")
    again = run_experiment(grid, out, progress=False)
    assert calls == ["base", "relation_context=none"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*.json")} == mtimes
    assert again["settings"] == report["settings"]
    assert json.loads((out / "results.json").read_text()) == report
    assert "2 finished, 0 to train" in caplog.text

    # Another grid sharing the runs: the base run is reused, only the new setting trains.
    other = load_grid(
        write_grid(tmp_path / "pool.toml", data, bert_dir, '[grid]\npooling = ["max", "mean"]')
    )
    other.runs_dir = out / "runs"
    run_experiment(other, tmp_path / "out2", progress=False)
    assert calls[2:] == ["pooling=mean"]

    # A finished run made with other options is an error, never silently reused.
    changed = load_grid(tmp_path / "context.toml")
    changed.base = changed.base.replace(dropout=0.3)
    with pytest.raises(ConfigError, match=r"finished run made differently \(differs in dropout"):
        run_experiment(changed, out, progress=False)


def test_calibrated_runs_record_the_uncalibrated_test_figures_too(data, bert_dir, tmp_path) -> None:
    # `calibrate = true` fits thresholds on dev at the end of training; the run is tested with
    # them, and the same model without them is tested too, so that the gain is measured.
    types = read_types(data / "types.json")
    dev = tmp_path / "dev.json"
    write_dataset(dev, read_dataset(CONLL04 / "conll04_dev.json", types)[:10])
    path = write_grid(tmp_path / "cal.toml", data, bert_dir, "[[runs]]\ncalibrate = true")
    path.write_text(
        path.read_text().replace("keep_models = false", f'keep_models = true\ndev = "{dev}"')
    )
    out = tmp_path / "out"
    report = run_experiment(load_grid(path), out, progress=False)
    run_dir = out / "runs" / "calibrate=True" / "seed_1"
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert (run_dir / "final" / "calibration.json").is_file()
    gold = read_dataset(data / "test.json", types)
    calibrated = SpERT.load(run_dir / "final")
    assert calibrated.calibration is not None
    assert read_dataset(run_dir / "predictions.json", types) == calibrated.predict(gold)
    assert result["test"] == summarize(evaluate(gold, calibrated.predict(gold), types))
    raw = SpERT.load(run_dir / "final", calibration=False).predict(gold)
    assert result["test_uncalibrated"] == summarize(evaluate(gold, raw, types))
    assert report["per_run"][0]["test_uncalibrated"] == result["test_uncalibrated"]
    uncalibrated_f1 = report["settings"][0]["uncalibrated"]["relation_strict_micro_f1"]
    assert uncalibrated_f1["mean"] == result["test_uncalibrated"]["relation_strict_micro_f1"]
    markdown = (out / "results.md").read_text()
    assert "without their calibration" in markdown
    assert f"{uncalibrated_f1['mean']:.2f}" in markdown.split("without their calibration")[1]


def fake_runs(grid, runs_dir: Path, data: Path) -> None:
    """Finished runs without training: predictions that keep a share of the gold entities
    and relations that grows with the negative sample count and the encoder's training."""
    types = read_types(data / "types.json")
    gold = read_dataset(data / "test.json", types)
    share = {"pretrained": 1.0, "frozen": 0.6, "random": 0.3}
    for run in plan(grid, runs_dir):
        keep = share[run.config.encoder_init] * min(1.0, run.config.neg_entity_count / 50)
        keep *= 1.0 if run.config.relation_context == "local" else 0.8
        predicted = []
        for i, s in enumerate(gold):
            n = round(len(s.entities) * keep) if (i + run.seed) % 3 else len(s.entities)
            kept = s.entities[:n]
            relations = [r for r in s.relations if r.head < n and r.tail < n]
            predicted.append(type(s)(s.tokens, kept, relations, s.orig_id))
        run.directory.mkdir(parents=True)
        write_dataset(run.directory / "predictions.json", predicted)
        result = {
            "name": run.name,
            "seed": run.seed,
            "config": run.config.to_dict(),
            "data": {
                "train": str(grid.train),
                "dev": None,
                "test": str(grid.test),
                "types": str(grid.types),
            },
            "train_seconds": 60.0 + run.seed,
            "best_epoch": None,
            "test": summarize(evaluate(gold, predicted, types)),
        }
        if run.seed == 1:  # seed 2 stands for runs cached before runs recorded their machine
            result["machine"] = "Test CPU, AMX (2 CPUs)"
        (run.directory / RESULT_FILE).write_text(json.dumps(result))


def test_report_and_plots_for_every_axis(data, bert_dir, tmp_path, monkeypatch) -> None:
    def no_train(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(spert.experiments.grid, "train", no_train)
    body = """
[grid]
encoder_init = ["pretrained", "frozen", "random"]
relation_context = ["local", "none"]

[[runs]]
neg_entity_count = 10
neg_relation_count = 10

[[runs]]
neg_entity_count = 50
neg_relation_count = 50
"""
    grid = load_grid(write_grid(tmp_path / "all.toml", data, bert_dir, body, seeds="[1, 2]"))
    out = tmp_path / "out"
    fake_runs(grid, out / "runs", data)
    report = run_experiment(grid, out, progress=False)
    assert report["runs"] == report["finished"] == 3 * 2 * 2 * 2
    assert report["varied"] == [  # in SpertConfig order: the model's options, then training's
        "relation_context",
        "encoder_init",
        "neg_entity_count",
        "neg_relation_count",
    ]
    for name in ("neg_samples.png", "sentence_length.png", "pretraining.png"):
        assert is_png(out / name), name
    md = (out / "results.md").read_text()
    assert md.count("| 1 2 |") == 12  # one row per setting, both seeds
    assert report["machines"] == ["Test CPU, AMX (2 CPUs)"]
    assert "Trained on: Test CPU, AMX (2 CPUs). 12 of the 24 finished runs recorded no " in md
    assert all(("machine" in r) == (r["seed"] == 1) for r in report["per_run"])
    assert "1.0 min" in md  # mean train time of 61 s and 62 s
    rows = {tuple(r["settings"].values()): r for r in report["settings"]}
    assert rows["local", "pretrained", 50, 50]["entity_micro_f1"] == {"mean": 100.0, "std": 0.0}
    # The mean over seeds of the per-run figures, with the sample standard deviation.
    row = rows["local", "frozen", 50, 50]
    values = [r["test"]["entity_micro_f1"] for r in report["per_run"] if r["name"] == row["name"]]
    assert len(values) == 2 and values[0] != values[1]
    assert row["entity_micro_f1"]["mean"] == pytest.approx(sum(values) / 2)
    assert row["entity_micro_f1"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert row["name"] == "encoder_init=frozen,neg_entity_count=50,neg_relation_count=50"


def test_by_length_buckets_the_test_sentences(data) -> None:
    types = read_types(data / "types.json")
    gold = read_dataset(data / "test.json", types)
    assert bucket_labels([15, 25, 35]) == ["<=15", "16-25", "26-35", ">35"]
    result = by_length(gold, gold, types, [15, 25, 35])
    lengths = [len(s.tokens) for s in gold]
    assert [result[b]["sentences"] for b in result] == [
        sum(n <= 15 for n in lengths),
        sum(16 <= n <= 25 for n in lengths),
        sum(26 <= n <= 35 for n in lengths),
        sum(n > 35 for n in lengths),
    ]
    assert all(result[b]["sentences"] > 0 for b in result)
    # Dropping the predictions of the long sentences only lowers the long buckets.
    cut = [p if len(p.tokens) <= 25 else type(p)(p.tokens) for p in gold]
    result = by_length(gold, cut, types, [15, 25, 35])
    assert result["<=15"]["entity_micro_f1"] == result["16-25"]["entity_micro_f1"] == 100.0
    assert result["26-35"]["entity_micro_f1"] == result[">35"]["entity_micro_f1"] == 0.0


def test_dry_run_and_cli(data, bert_dir, tmp_path, capsys) -> None:
    path = write_grid(
        tmp_path / "g.toml",
        data,
        bert_dir,
        '[grid]\nneg_relation_kind = ["strong", "weak"]',
        seeds="[3, 4]",
    )
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run"])
    args.func(args)
    printed = capsys.readouterr().out
    assert "base seed 3: to train" in printed and "neg_relation_kind=weak seed 4" in printed
    assert "0 of 4 runs finished" in printed
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("colour = 1", "unknown key(s) colour"),
        ("[grid]\nneg_entity_count = []", "[grid] neg_entity_count must be a non-empty list"),
        ("[grid]\nbatch = [1, 2]", "unknown option(s): batch"),
        ('[grid]\npooling = ["max", "median"]', "pooling must be one of max, sum, mean"),
        ("[grid]\nseed = [1, 2]", "set seeds with the top-level 'seeds' list"),
        ('[[runs]]\nneg_entity_count = "ten"', "option neg_entity_count must be int"),
    ],
)
def test_bad_grids_are_named_errors(data, bert_dir, tmp_path, body, needle) -> None:
    path = write_grid(tmp_path / "bad.toml", data, bert_dir, "" if "colour" in body else body)
    if "colour" in body:  # a top-level key must come before the tables
        path.write_text(body + "\n" + path.read_text())
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert needle in str(err.value) and "bad.toml" in str(err.value), str(err.value)


def test_missing_files_are_named(tmp_path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('test = "t.json"\ntypes = "ty.json"\n')
    with pytest.raises(ConfigError, match="'train' .* is required"):
        load_grid(path)
    path.write_text('train = "t.json"\ntest = "t.json"\ntypes = "ty.json"\n')
    with pytest.raises(ConfigError, match=r"g\.toml: 'train': no such file .*t\.json"):
        load_grid(path)


def test_shipped_conll04_grids_load_and_share_their_base_run() -> None:
    # The SciERC grids read converted documents and mpnet.toml a downloaded encoder (runs/).
    grids = sorted((ROOT / "benchmarks" / "grids").glob("*.toml"))
    grids = [g for g in grids if not g.stem.startswith(("scierc", "mpnet"))]
    assert {g.stem for g in grids} >= {
        "neg_samples",
        "neg_relation_kind",
        "relation_context",
        "pooling",
        "encoder_init",
        "small_encoder",
        "tokenization",
    }
    # Ablations test on the test set and share one run cache (with their base run); the
    # grids that chose the CPU recipe (cpu_recipe_*, paper_dev, fast_vs_paper) test on the dev
    # set and share another.
    runs_dirs: dict[Path, set[Path]] = {}
    for path in grids:
        grid = load_grid(path)
        split = grid.test.name
        assert split in ("conll04_test.json", "conll04_dev.json"), path.name
        assert grid.test == (CONLL04 / split).resolve()
        assert grid.runs_dir is not None
        runs_dirs.setdefault(grid.test, set()).add(grid.runs_dir)
        runs = plan(grid, grid.runs_dir)
        names = [run.name for run in runs]
        assert runs, path.name
        if split == "conll04_test.json":  # an ablation: its base and at least one change
            assert "base" in names and len(set(names)) >= 2, path.name
        assert len({(run.name, run.seed) for run in runs}) == len(runs), path.name
    assert all(len(dirs) == 1 for dirs in runs_dirs.values()), runs_dirs


def test_recipe_grids_measure_one_recipe_on_conll04_test_with_3_seeds() -> None:
    # Whole recipes on the test set (issue #26), not ablations of a shared base: each grid has
    # its own preset, one setting and its own run cache; 3 seeds, or 3 ensembles of 3.
    grids = sorted((ROOT / "benchmarks" / "grids" / "recipes_test").glob("*.toml"))
    assert {g.stem for g in grids} == {
        "fast_test",
        "fast60_test",
        "fast60_calibrated_test",
        "fast60_entity_cutoff_test",
        "fast_calibrated_test",
        "fast_ensemble_members_test",
        "fast_boundary_test",
        "fp32_boundary_test",
        "paper_test",
    }
    runs_dirs = set()
    for path in grids:
        grid = load_grid(path)
        assert grid.test == (CONLL04 / "conll04_test.json").resolve(), path.name
        members = path.stem.endswith("_ensemble_members_test")
        assert sorted(grid.seeds) == list(range(1, 10 if members else 4)), path.name
        assert len(settings(grid)) == 1, path.name
        runs_dirs.add(grid.runs_dir)
    assert len(runs_dirs) == len(grids)


def test_beyond_paper_grid_adds_one_option_at_a_time_to_the_fast_preset() -> None:
    grid = load_grid(ROOT / "benchmarks" / "grids" / "beyond_paper_dev.toml")
    assert grid.test.name == "conll04_dev.json" and grid.seeds == [1, 2, 3]
    reference, *changed = settings(grid)
    assert reference == preset("fast").replace(keep_checkpoints=0)
    assert [config_differences(reference.to_dict(), c) for c in changed] == [
        ["span_boundary"],
        ["relation_type_dim"],
        ["ema_decay"],
    ]


def test_encoder_folders_are_relative_to_the_grid_file(data, tmp_path) -> None:
    grid_dir = tmp_path / "grids"
    grid_dir.mkdir()
    axis = '[grid]\nencoder = ["../encoders/big", "bert-base-cased"]\n'
    grid = load_grid(write_grid(grid_dir / "a.toml", data, Path("../encoders/base"), axis))
    assert grid.base.encoder == str(tmp_path / "encoders" / "base")
    encoders = {run.config.encoder for run in plan(grid, tmp_path / "runs")}
    assert encoders == {str(tmp_path / "encoders" / "big"), "bert-base-cased"}
    # Run names (cache folders, report rows) name a local encoder by its folder, not its path.
    names = {run.name for run in plan(grid, tmp_path / "runs")}
    assert names == {"encoder=big", "encoder=bert-base-cased"}
    variant = '[[runs]]\nencoder = "./local"\n'
    grid = load_grid(write_grid(grid_dir / "b.toml", data, Path("/abs/encoder"), variant))
    assert grid.base.encoder == "/abs/encoder"
    assert {run.config.encoder for run in plan(grid, tmp_path / "runs")} == {
        str(grid_dir / "local")
    }


def test_report_names_local_encoders_by_folder(data, bert_dir, tmp_path) -> None:
    body = f'[grid]\nencoder = ["{bert_dir}", "./encoders/big"]\n'
    grid = load_grid(write_grid(tmp_path / "size.toml", data, bert_dir, body))
    out = tmp_path / "out"
    fake_runs(grid, out / "runs", data)
    report = run_experiment(grid, out, progress=False)
    assert [r["name"] for r in report["settings"]] == ["base", "encoder=big"]
    md = (out / "results.md").read_text()
    assert f"| {bert_dir.name} | 1 |" in md and "| big | 1 |" in md
    assert str(tmp_path) not in md  # the report does not depend on where the files lie
