"""The bundled demo sample and ``spert demo`` (with a tiny random encoder)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import DATASETS

from spert import demo
from spert.cli import demo as demo_cli
from spert.data import read_dataset, read_types
from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence

DEMO_DATA = Path(demo.__file__).parent / "demo_data"
CONLL04 = DATASETS / "conll04"
RELATION_TYPES = ("Work_For", "Kill", "OrgBased_In", "Live_In", "Located_In")
SIGNATURES = {
    "Work_For": ("Peop", "Org"),
    "Kill": ("Peop", "Peop"),
    "OrgBased_In": ("Org", "Loc"),
    "Live_In": ("Peop", "Loc"),
    "Located_In": ("Loc", "Loc"),
}


def test_sample_files_validate() -> None:
    types = read_types(DEMO_DATA / "demo_types.json")
    assert types.entities == ("Loc", "Org", "Peop", "Other")
    assert types.relation_names == RELATION_TYPES
    for name in ("demo_train.json", "demo_dev.json"):
        assert read_dataset(DEMO_DATA / name, types)


def test_sample_size_and_coverage() -> None:
    types, train, dev = demo.load_demo_data()
    sentences = train + dev
    assert 60 <= len(sentences) <= 100
    assert 12 <= len(dev) <= 20
    counts = Counter(r.type for s in sentences for r in s.relations)
    assert all(counts[name] >= 8 for name in RELATION_TYPES), counts
    assert {e.type for s in sentences for e in s.entities} == set(types.entities)
    with_relations = sum(1 <= len(s.relations) for s in sentences)
    assert with_relations >= 0.8 * len(sentences)
    for s in sentences:  # the arguments have the CoNLL04 entity types of their relation
        for r in s.relations:
            assert (s.entities[r.head].type, s.entities[r.tail].type) == SIGNATURES[r.type]
    assert len({tuple(s.tokens) for s in sentences}) == len(sentences)  # no duplicates


def test_sample_is_not_copied_from_conll04() -> None:
    if not CONLL04.is_dir():
        pytest.skip("../shared/datasets/conll04 is not available")
    conll = {
        tuple(record["tokens"])
        for path in CONLL04.glob("conll04_*.json")
        if "types" not in path.name
        for record in json.loads(path.read_text(encoding="utf-8"))
    }
    assert conll
    _, train, dev = demo.load_demo_data()
    copied = [" ".join(s.tokens) for s in train + dev if tuple(s.tokens) in conll]
    assert not copied


def test_demo_texts() -> None:
    texts = demo.load_demo_texts()
    assert 3 <= len(texts) <= 4
    assert all(t["title"] and len(t["text"]) > 50 for t in texts)


def test_demo_config() -> None:
    config = demo.demo_config()
    assert config.encoder == demo.SpertConfig().encoder  # the bundled encoder
    assert demo.demo_config(epochs=2).epochs == 2
    assert config.epochs == demo.DEMO_CONFIG.epochs


def test_format_document() -> None:
    text = "Mary works for Acme Corp ."
    sentence = ExtractedSentence(
        text=text,
        start=0,
        end=len(text),
        tokens=text.split(),
        token_offsets=[(0, 4), (5, 10), (11, 14), (15, 19), (20, 24), (25, 26)],
        entities=[
            ExtractedEntity("Peop", "Mary", 0, 4, 0, 1, 0.98),
            ExtractedEntity("Org", "Acme Corp", 15, 24, 3, 5, 0.91),
        ],
        relations=[ExtractedRelation("Work_For", 0, 1, 0.87)],
    )
    report = demo.format_document(Document(text, [sentence]), "[1] example")
    assert report.splitlines()[0] == "[1] example"
    assert "Acme Corp" in report and "15-24" in report and "0.91" in report
    assert "Work_For" in report and "Mary [1]" in report and "Acme Corp [2]" in report
    empty = demo.format_document(Document("Nothing here .", []))
    assert "(no entities)" in empty and "(no relations)" in empty


def test_cli_parser() -> None:
    parser = argparse.ArgumentParser(prog="spert")
    demo_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo"])
    assert args.func is demo_cli.cmd_demo
    assert args.out == "spert-demo" and args.model_dir is None and args.epochs is None
    args = parser.parse_args(["demo", "--out", "x", "--model-dir", "m", "--epochs", "3"])
    assert (args.out, args.model_dir, args.epochs) == ("x", "m", 3)


def test_run_demo_end_to_end(
    bert_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPERT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        demo,
        "DEMO_CONFIG",
        demo.DEMO_CONFIG.replace(encoder=str(bert_dir), neg_entity_count=20, neg_relation_count=20),
    )
    out = tmp_path / "out"
    summary = demo.run_demo(out, epochs=1, progress=False)

    model_dir = tmp_path / "home" / "default-model"
    assert summary["model_dir"] == str(model_dir)
    assert (model_dir / "spert.json").is_file()
    card = (model_dir / "README.md").read_text(encoding="utf-8")  # the model card
    assert "demo_train.json" in card and "| dev | `demo_dev.json` |" in card
    assert f"{summary['dev']['relation_strict_micro_f1']:.2f}" in card
    assert (out / "demo.html").is_file() and (out / "demo.html").stat().st_size > 0
    assert summary["html"] == str(out / "demo.html")
    assert summary["epochs"] == 1 and summary["documents"] == len(demo.load_demo_texts())
    assert set(summary["dev"]) == {"entity_micro_f1", "relation_strict_micro_f1"}
    assert json.loads((out / "summary.json").read_text()) == summary
    assert len(json.loads((out / "extractions.json").read_text())) == summary["documents"]
    assert (out / "metrics.jsonl").is_file() and (out / "dev_metrics.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".train-")]  # scratch removed
    printed = capsys.readouterr().out
    assert "relation strict micro F1" in printed and "[1] " in printed

    from spert.api import SpERT

    assert SpERT.load(model_dir).types.relation_names == RELATION_TYPES
