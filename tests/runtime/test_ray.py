"""``spert extract --ray``: shards on Ray Data with a pool of model actors (a local Ray instance
with 2 CPUs and 2 actors), against single-process ``spert extract`` on the same shards."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from spert.api import ModelError, SpERT
from spert.cli import predict as predict_cli
from spert.config import SpertConfig
from spert.data import DataError, RelationType, Types
from spert.runtime import ray as R

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

SHARDS = {
    "a.txt": "Mary works for Acme Corp in Boston.\n\nParis.\n"
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.\n"
    "The Ministry of Health in Paris hired Dr. Smith last year. Mary lives in Cambridge.\n",
    "b.jsonl": "".join(
        json.dumps(r, ensure_ascii=False) + "\n"
        for r in [
            {"id": "x", "text": "Mary works for Acme Corp."},
            {"text": "Boston \u00e9t\u00e9 \U0001f600."},
            {"id": 9, "tokens": ["John", "Smith", "works", "for", "IBM", "."]},
            {"id": "y", "text": "Dr. Smith lives in Boston and works in Paris."},
        ]
    ),
    "empty.txt": "",
}


@pytest.fixture(scope="module")
def model_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model that predicts entities (the "none" class is pushed down)."""
    types = Types(
        entities=("Peop", "Org", "Loc"),
        relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
    )
    torch.manual_seed(0)
    config = SpertConfig(encoder=str(bert_dir), max_span_size=3, max_sentence_words=30)
    model = SpERT.create(types, config, "cpu")
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = -100.0
    path = tmp_path_factory.mktemp("ray-model") / "model"
    model.save(path)
    return path


@pytest.fixture()
def shard_dir(tmp_path: Path) -> Path:
    path = tmp_path / "shards"
    path.mkdir()
    for name, text in SHARDS.items():
        (path / name).write_text(text, encoding="utf-8")
    (path / ".hidden.txt").write_text("not a shard\n", encoding="utf-8")
    (path / "sub").mkdir()
    (path / "sub" / "c.txt").write_text("Paris.\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray instance for the module (startup takes seconds); shut down at the end."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="spert")
    predict_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["extract", *argv])
    args.func(args)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON values; scores (floats) up to rounding, as batches are composed differently."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, where


# -- without Ray ---------------------------------------------------------------------------
def test_find_shards(shard_dir, tmp_path):
    names = ["a.txt", "b.jsonl", "empty.txt"]
    assert [p.name for p in R.find_shards(str(shard_dir))] == names  # no hidden files, no dirs
    assert [p.name for p in R.find_shards(f"{shard_dir}/*.txt")] == ["a.txt", "empty.txt"]
    deep = R.find_shards(f"{shard_dir}/**/*.txt")
    assert [p.name for p in deep] == ["a.txt", "empty.txt", "c.txt"]
    both = R.find_shards([str(shard_dir / "b.jsonl"), str(shard_dir)])
    assert [p.name for p in both] == ["b.jsonl", "a.txt", "empty.txt"]  # each once
    assert all(p.is_absolute() for p in both)
    with pytest.raises(DataError, match="no such file or directory"):
        R.find_shards(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no files match"):
        R.find_shards(f"{shard_dir}/*.csv")
    (tmp_path / "void").mkdir()
    with pytest.raises(DataError, match="no files in this directory"):
        R.find_shards(str(tmp_path / "void"))
    with pytest.raises(DataError, match="not stdin"):
        R.find_shards("-")


def test_plan_outputs(shard_dir, tmp_path):
    shards = R.find_shards(str(shard_dir))
    outputs = R.plan_outputs(shards, tmp_path / "out")
    assert [p.name for p in outputs] == ["a.jsonl", "b.jsonl", "empty.jsonl"]
    (shard_dir / "a.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.jsonl and .*a\.txt would both be written to"):
        R.plan_outputs(R.find_shards(str(shard_dir)), tmp_path / "out")
    with pytest.raises(DataError, match="inside the output directory"):
        R.plan_outputs(shards, shard_dir)


def test_bad_options_fail_before_ray_starts(model_dir, shard_dir, tmp_path):
    was_running = ray.is_initialized()
    base = ("--ray", "--model", str(model_dir), "--input", str(shard_dir))
    out = ("--out", str(tmp_path / "out"))
    with pytest.raises(DataError, match="give --out DIR"):
        run_cli(*base)
    with pytest.raises(DataError, match="--format tsv"):
        run_cli(*base, *out, "--format", "tsv")
    with pytest.raises(DataError, match="--gpus-per-actor"):
        run_cli(*base, *out, "--device", "cpu")
    with pytest.raises(DataError, match="actors must be at least 1"):
        run_cli(*base, *out, "--actors", "0")
    with pytest.raises(DataError, match="no such file"):
        run_cli("--ray", "--model", str(model_dir), "--input", str(tmp_path / "nope"), *out)
    with pytest.raises(ModelError, match="not a SpERT model directory"):
        run_cli("--ray", "--model", str(tmp_path), "--input", str(shard_dir), *out)
    assert ray.is_initialized() == was_running
    assert not (tmp_path / "out").exists()


def test_finished_shards_are_skipped_without_ray(model_dir, shard_dir, tmp_path, caplog):
    was_running = ray.is_initialized()
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.jsonl", "b.jsonl", "empty.jsonl"):
        (out / name).write_text("", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="spert.runtime.ray"):
        summary = R.extract_shards(str(shard_dir), out, model_dir)
    assert (summary.shards, summary.skipped, summary.written) == (3, 3, 0)
    assert caplog.text.count("skipping finished shard") == 3
    assert ray.is_initialized() == was_running


def test_reader_rows_and_errors(shard_dir, tmp_path):
    def read(path: Path, input_format: str) -> list[dict[str, Any]]:
        return list(R._read_shard({"shard": 5, "path": str(path), "input_format": input_format}))

    rows = read(shard_dir / "b.jsonl", "jsonl")
    assert [(r["shard"], r["pos"], r["count"], r["error"]) for r in rows] == [
        (5, i, 4, "") for i in range(4)
    ]
    assert json.loads(rows[1]["doc"]) == [2, "Boston \u00e9t\u00e9 \U0001f600."]
    assert rows[1]["doc"].isascii()
    assert [json.loads(r["doc"])[0] for r in read(shard_dir / "a.txt", "lines")] == [1, 3, 4, 5]
    assert [json.loads(r["doc"]) for r in read(shard_dir / "a.txt", "text")] == [
        [None, SHARDS["a.txt"]]
    ]
    assert read(shard_dir / "empty.txt", "lines") == [R._marker(5, 0)]  # empty: one marker
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"id": "x", "text": "Mary works."}\n{"txt": 1}\n', encoding="utf-8")
    (row,) = read(bad, "jsonl")
    assert row["pos"] == -1 and row["error"].startswith(f"{bad}, line 2, field 'text'")


def test_actor_batches(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's threads
    model = SpERT.load(model_dir, device="cpu")
    texts = ["Mary works for Acme Corp.", "Paris."]
    batch = {
        "shard": [0, 0, 1],
        "pos": [1, 0, -1],  # rows come in any order; the driver sorts them
        "count": [2, 2, 0],
        "doc": [json.dumps([1, texts[0]]), json.dumps([2, texts[1]]), ""],
        "error": ["", "", ""],
    }
    rows = R.ExtractActor(str(model_dir), ["a.txt", "b.txt"], "cpu", 1, None)(batch)
    assert rows["pos"] == [1, 0, -1] and rows["count"] == [2, 2, 0] and rows["line"][2] == ""
    docs = model.extract([(1, texts[0]), (2, texts[1])])
    assert all(line.endswith("\n") for line in rows["line"][:2])
    for line, doc in zip(rows["line"], docs):
        assert_same(json.loads(line), doc.to_dict())
    assert rows["entities"] == [len(d.entities) for d in docs] + [0] and rows["entities"][0] > 0

    # A model that does not load on a worker: every batch answers with one error row.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "spert.json").write_bytes((model_dir / "spert.json").read_bytes())
    (broken / "encoder").symlink_to(model_dir / "encoder", target_is_directory=True)
    (broken / "heads.safetensors").write_bytes(b"garbage")
    rows = R.ExtractActor(str(broken), ["a.txt"], "cpu", 1, None)(batch)
    assert rows["pos"] == [-1] and rows["error"][0].startswith(f"{R.MODEL_ERROR}{broken}")


class Rows:
    """A stand-in for a Ray Dataset: ``iter_rows`` over fixed actor output rows."""

    def __init__(self, *rows: tuple[int, int, int, str, str]) -> None:
        self.rows = [
            {"shard": s, "pos": p, "count": c, "line": line, "error": error}
            | {"entities": 1, "relations": 0, "pid": 100 + s}
            for s, p, c, line, error in rows
        ]

    def iter_rows(self) -> Any:
        return iter(self.rows)


def test_collect_writes_complete_shards_in_input_order(tmp_path):
    shards = [tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"]
    outputs = R.plan_outputs(shards, tmp_path / "out")
    (tmp_path / "out").mkdir()

    def collect(rows: Rows, todo: list[int]) -> R.ShardSummary:
        summary = R.ShardSummary(len(shards), 0, 0, 0, 0, 0, 0, 0.0)
        R._collect(rows, shards, outputs, todo, summary, True, 0.0)
        return summary

    # Rows come in any order; an empty shard sends one marker row.
    rows = Rows(
        (1, 1, 2, "b1\n", ""), (0, 0, 1, "a0\n", ""), (2, -1, 0, "", ""), (1, 0, 2, "b0\n", "")
    )
    summary = collect(rows, [0, 1, 2])
    assert [p.read_text("utf-8") for p in outputs] == ["a0\n", "b0\nb1\n", ""]
    assert (summary.written, summary.documents, summary.entities, summary.actors) == (3, 3, 3, 2)

    with pytest.raises(ModelError, match=r"^/m: broken \(0 of 3 shard"):
        collect(Rows((0, -1, -1, "", R.MODEL_ERROR + "/m: broken")), [0])
    with pytest.raises(DataError, match=r"^/in/a.txt, line 2: bad \(0 of 3 shard"):
        collect(Rows((0, -1, -1, "", "/in/a.txt, line 2: bad")), [0])
    outputs[0].unlink()
    with pytest.raises(RuntimeError, match="no complete output"):
        collect(Rows((0, 0, 2, "a0\n", "")), [0])
    assert not outputs[0].exists()


# -- on a local Ray instance ---------------------------------------------------------------
def test_ray_output_equals_single_process_and_reruns_resume(
    local_ray, model_dir, shard_dir, tmp_path, capsys, caplog
):
    reference = tmp_path / "reference"
    for name in SHARDS:
        target = reference / R.output_path(Path(name), reference).name
        run_cli("--model", str(model_dir), "--input", str(shard_dir / name), "--out", str(target))
    out = tmp_path / "out"
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="spert.runtime.ray"):
        run_cli(
            *("--ray", "--actors", "2", "--docs-per-batch", "1", "--model", str(model_dir)),
            *("--input", str(shard_dir), "--out", str(out)),
        )
    summary = capsys.readouterr().err
    assert "3 shard(s) written, 0 skipped" in summary and "8 documents" in summary
    assert "2 actor(s)" in summary  # both actors extracted documents
    assert "[3/3 shards]" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "b.jsonl", "empty.jsonl"]
    entities = 0
    for path in sorted(reference.iterdir()):
        got, want = records(out / path.name), records(path)
        assert [r.get("id") for r in got] == [r.get("id") for r in want]
        for ray_record, single in zip(got, want):
            assert_same(ray_record, single, f"{path.name}, id {single.get('id')}")
            entities += sum(len(s["entities"]) for s in single["sentences"])
    assert [r["id"] for r in records(out / "a.jsonl")] == [1, 3, 4, 5]  # line numbers
    assert [r["id"] for r in records(out / "b.jsonl")] == ["x", 2, 9, "y"]
    assert (out / "empty.jsonl").read_bytes() == b""
    assert entities > 0  # the comparison covers predictions, not just texts

    # A rerun skips every finished shard; a deleted output shard is redone, alone.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spert.runtime.ray"):
        summary = R.extract_shards(str(shard_dir), out, model_dir, actors=2)
    assert (summary.skipped, summary.written, summary.documents) == (3, 0, 0)
    assert caplog.text.count("skipping finished shard") == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    (out / "b.jsonl").unlink()
    summary = R.extract_shards(f"{shard_dir}/*", out, model_dir, docs_per_batch=3)
    assert (summary.skipped, summary.written, summary.documents) == (2, 1, 4)
    for ray_record, single in zip(records(out / "b.jsonl"), records(reference / "b.jsonl")):
        assert_same(ray_record, single)
    assert len(records(out / "b.jsonl")) == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "b.jsonl"} == {
        k: v for k, v in mtimes.items() if k != "b.jsonl"
    }
    assert sorted(p.name for p in out.iterdir()) == ["a.jsonl", "b.jsonl", "empty.jsonl"]


def test_bad_record_found_by_an_actor_names_file_and_document(local_ray, model_dir, tmp_path):
    shards = tmp_path / "bad"
    shards.mkdir()
    (shards / "t.jsonl").write_text('{"text": "Mary."}\n{"id": 7, "tokens": ["A", ""]}\n', "utf-8")
    out = tmp_path / "out"
    message = re.escape(f"{shards / 't.jsonl'}, document 7: token 1 must be a non-empty string")
    with pytest.raises(DataError, match=message + r", got '' \(0 of 1 shard\(s\) finished"):
        R.extract_shards(str(shards), out, model_dir)
    assert list(out.iterdir()) == []  # nothing half-written
