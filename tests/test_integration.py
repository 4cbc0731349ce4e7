"""Integration: the bundled encoder on small slices of CoNLL04, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS, SRC

from spert import SpertConfig, read_dataset, read_types
from spert.api import SpERT
from spert.model.candidates import collate, sample_training
from spert.training import spert_loss, train

CONLL04 = DATASETS / "conll04"
pytestmark = pytest.mark.skipif(not CONLL04.is_dir(), reason="../shared/datasets not present")


def fixed_sample_loss(model: SpERT, sentences, types, config) -> float:
    """Mean loss over fixed samples, dropout off: comparable before and after training."""
    rng = np.random.default_rng(0)
    encoded = model.encode(sentences)
    samples = [sample_training(s, e, types, config, rng) for s, e in zip(sentences, encoded)]
    model.model.eval()
    with torch.no_grad():
        batch = collate(encoded, [s.spans for s in samples], model.pad_token_id, samples)
        loss = spert_loss(*model.model(batch), batch).item()
    return loss


def test_one_epoch_on_50_sentences_lowers_the_loss(tmp_path: Path) -> None:
    types = read_types(CONLL04 / "conll04_types.json")
    sentences = read_dataset(CONLL04 / "conll04_train.json", types)[:50]
    config = SpertConfig(epochs=1, seed=3)
    before = fixed_sample_loss(SpERT.create(types, config, "cpu"), sentences, types, config)
    result = train(config, sentences, types, tmp_path / "run", device="cpu", progress=False)
    after = fixed_sample_loss(result.model, sentences, types, config)
    assert after < 0.8 * before, (before, after)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "spert", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_train_eval_predict(tmp_path: Path) -> None:
    types_file = str(CONLL04 / "conll04_types.json")
    types = read_types(types_file)
    train_file, dev_file = tmp_path / "train.json", tmp_path / "dev.json"
    gold = json.loads((CONLL04 / "conll04_train.json").read_text())
    train_file.write_text(json.dumps(gold[:40]))
    dev_file.write_text(json.dumps(gold[40:52]))
    config = tmp_path / "config.toml"
    config.write_text("epochs = 3\nneg_entity_count = 50\n")

    run = run_cli(
        "train",
        "--train",
        str(train_file),
        "--dev",
        str(dev_file),
        "--types",
        types_file,
        "--out",
        "out",
        "--config",
        str(config),
        "--epochs",
        "2",
        "--seed",
        "5",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out"
    assert (out / "final" / "spert.json").is_file() and (out / "best" / "spert.json").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # --epochs 2 overrides the config file's 3
    run = json.loads((out / "run.json").read_text())  # the run's record: every option
    assert run["config"]["neg_entity_count"] == 50 and run["config"]["seed"] == 5
    meta = json.loads((out / "final" / "spert.json").read_text())  # the model's options only
    assert "neg_entity_count" not in meta["config"] and "seed" not in meta["config"]

    run = run_cli(
        "eval", "--model", "out/final", "--data", str(dev_file), "--out", "m.json", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"entities", "relations", "relations_strict"}
    assert "Peop" in run.stdout or "Loc" in run.stdout

    run = run_cli(
        "predict",
        "--model",
        "out/final",
        "--input",
        str(dev_file),
        "--out",
        "p.jsonl",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    predictions = read_dataset(tmp_path / "p.jsonl", types)
    assert [p.tokens for p in predictions] == [g["tokens"] for g in gold[40:52]]
    # A prediction file can be evaluated against gold: the same figures as `spert eval`.
    from spert.evaluation import evaluate

    again = evaluate(read_dataset(dev_file, types), predictions, types)
    assert again["entities"]["micro"] == pytest.approx(metrics["entities"]["micro"])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["eval", "--model", "nowhere", "--data", "x.json"], "nowhere"),
        (["validate", "--data", "bad.json", "--types", "types.json"], "bad.json"),
        (
            [
                "train",
                "--train",
                "t.json",
                "--types",
                "types.json",
                "--out",
                "o",
                "--pooling",
                "median",
            ],
            "pooling",
        ),
        (
            [
                "train",
                "--train",
                "t.json",
                "--types",
                "types.json",
                "--out",
                "o",
                "--config",
                "missing.toml",
            ],
            "missing.toml",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "types.json").write_text((CONLL04 / "conll04_types.json").read_text())
    (tmp_path / "bad.json").write_text('[{"tokens": ["a", "b"], "entities": [{"type": "Peop",')
    (tmp_path / "t.json").write_text('[{"tokens": ["a"], "entities": [], "relations": []}]')
    run = run_cli(*args, cwd=tmp_path)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert needle in run.stderr + run.stdout


def test_cli_validate_lists_every_problem(tmp_path: Path) -> None:
    records = [
        {"tokens": ["a", "b"], "entities": [{"type": "Peop", "start": 0, "end": 5}]},
        {"tokens": ["a", "b"], "entities": [{"type": "Nope", "start": 0, "end": 1}]},
        {
            "tokens": ["a", "b"],
            "entities": [],
            "relations": [{"type": "Kill", "head": 0, "tail": 1}],
        },
    ]
    (tmp_path / "d.json").write_text(json.dumps(records))
    run = run_cli(
        "validate", "--data", "d.json", "--types", str(CONLL04 / "conll04_types.json"), cwd=tmp_path
    )
    assert run.returncode == 1
    assert "record 0" in run.stdout and "entities[0].end" in run.stdout
    assert "record 1" in run.stdout and "unknown entity type 'Nope'" in run.stdout
    assert "record 2" in run.stdout and "relations[0].head" in run.stdout
