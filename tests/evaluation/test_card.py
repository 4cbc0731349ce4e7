"""Model cards: written by training, cross-validation, the demo and `spert eval --card`, from
the run's record and the recorded evaluations."""

from __future__ import annotations

import json

import pytest
import yaml

from spert.cli import main as cli_main
from spert.data import write_dataset
from spert.evaluation import summarize
from spert.evaluation.card import CARD_FILE, EVALUATIONS_FILE, read_evaluations
from spert.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def dev_figure(metrics: dict) -> str:
    return f"{summarize(metrics)['relation_strict_micro_f1']:.2f}"


def test_a_training_run_writes_cards_with_its_record(types, sentences, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=2, max_span_size=4, lr=1e-3, keep_checkpoints=0)
    out = tmp_path / "run"
    files = {"train": str(tmp_path / "train.json"), "dev": str(tmp_path / "dev.json")}
    result = train(config, sentences, types, out, dev_data=sentences, data_files=files)
    card = (out / "final" / CARD_FILE).read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["library_name"] == "spert" and meta["base_model"] == config.encoder
    assert meta["datasets"] == ["train.json", "dev.json"]
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["dev"]
    final_dev = result.history[-1]["dev"]
    values = {m["name"]: m["value"] for m in results[0]["metrics"]}
    assert values["relation strict micro F1"] == pytest.approx(
        summarize(final_dev)["relation_strict_micro_f1"], abs=0.005
    )
    for name in types.entities + types.relation_names:
        assert f"`{name}`" in card
    assert "| `lr` | `0.001` |" in card and "| `epochs` | `2` |" in card
    assert f"at most {config.max_span_size} words" in card
    # best/ carries the metrics of its own epoch.
    best = (out / "best" / CARD_FILE).read_text(encoding="utf-8")
    assert dev_figure(result.best_dev) in best


def test_eval_card_adds_the_test_metrics(types, sentences, tiny_config, tmp_path, capsys):
    config = tiny_config.replace(epochs=1, max_span_size=4, keep_checkpoints=0)
    out = tmp_path / "run"
    train(config, sentences, types, out, progress=False)
    assert "Not evaluated yet" in (out / "final" / CARD_FILE).read_text(encoding="utf-8")
    data = tmp_path / "test.json"
    write_dataset(data, sentences)
    metrics_file = tmp_path / "m.json"
    cli_main(
        ["eval", "--model", str(out / "final"), "--data", str(data)]
        + ["--out", str(metrics_file), "--card"]
    )
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    card = (out / "final" / CARD_FILE).read_text(encoding="utf-8")
    results = front_matter(card)["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["test.json"]
    assert dev_figure(metrics) in card
    assert read_evaluations(out / "final")["test"][1] == metrics
    assert (out / "final" / EVALUATIONS_FILE).is_file()
