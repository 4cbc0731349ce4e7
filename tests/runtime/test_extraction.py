"""Extraction from raw text: SpERT.extract / extract_stream, the default model and
``spert extract`` (formats, stdin, interruption)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spert.api import META_FILE, ModelError, SpERT, default_model_dir
from spert.cli import predict as predict_cli
from spert.config import SpertConfig
from spert.data import DataError, RelationType, Types
from spert.results import Document
from spert.runtime import io as X

TEXT = (
    "Mary works for Acme Corp in Boston. John Wilkes Booth, who assassinated President "
    "Lincoln, was an actor.\n\nThe Ministry of Health in Paris hired Dr. Smith last year."
)
LINES = [
    "Mary works for Acme Corp in Boston.",
    "",
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.",
    "   ",
    "The Ministry of Health (Paris) hired Dr. Smith. \u00c9t\u00e9 \U0001f600 caf\u00e9\u0301!",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(bert_dir: Path, **config: object) -> SpERT:
    """An untrained tiny model that predicts entities (the "none" class is pushed down)."""
    types = Types(
        entities=("Peop", "Org", "Loc"),
        relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
    )
    settings_ = {"max_span_size": 3, "max_sentence_words": 30, **config}
    torch.manual_seed(0)
    model = SpERT.create(types, SpertConfig(encoder=str(bert_dir), **settings_), "cpu")  # type: ignore[arg-type]
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = -100.0
    return model


@pytest.fixture(scope="module")
def model(bert_dir: Path) -> SpERT:
    return make_model(bert_dir)


@pytest.fixture(scope="module")
def model_dir(model: SpERT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("extract") / "model"
    model.save(path)
    return path


def check_document(doc: Document, text: str, types: Types | None = None) -> None:
    """Offsets, texts, token spans and relation indices of a Document are consistent."""
    assert isinstance(doc, Document)
    assert doc.text == text
    previous = 0
    for s in doc.sentences:
        assert s.text == text[s.start : s.end]
        assert s.tokens and len(s.tokens) == len(s.token_offsets)
        for token, (a, b) in zip(s.tokens, s.token_offsets):
            assert token and text[a:b] == token and previous <= a < b
            previous = b
        for e in s.entities:
            assert e.text == text[e.start : e.end]
            assert 0 <= e.token_start < e.token_end <= len(s.tokens)
            assert e.start == s.token_offsets[e.token_start][0]
            assert e.end == s.token_offsets[e.token_end - 1][1]
            assert 0.0 < e.score <= 1.0
            assert types is None or e.type in types.entities
        for r in s.relations:
            assert 0 <= r.head < len(s.entities) and 0 <= r.tail < len(s.entities)
            assert r.head != r.tail and 0.0 < r.score <= 1.0
    # Everything serializes to JSON and back.
    assert Document.from_dict(json.loads(json.dumps(doc.to_dict()))) == doc


# -- Python API ----------------------------------------------------------------------------
def test_extract_text_gives_a_document(model):
    doc = model.extract(TEXT)
    check_document(doc, TEXT, model.types)
    assert [s.text for s in doc.sentences] == [
        "Mary works for Acme Corp in Boston.",
        "John Wilkes Booth, who assassinated President Lincoln, was an actor.",
        "The Ministry of Health in Paris hired Dr. Smith last year.",
    ]
    assert doc.entities and any(s.relations for s in doc.sentences)
    assert {e.text for e in doc.entities} >= {"Mary", "Boston", "Acme Corp"}
    assert doc.id is None and "id" not in doc.to_dict()


def test_extract_matches_predict_on_the_same_words(model):
    doc = model.extract("Mary works for Acme Corp in Boston.")
    (sentence,) = doc.sentences
    (predicted,) = model.predict([sentence.tokens])
    assert [(e.type, e.token_start, e.token_end) for e in sentence.entities] == [
        (e.type, e.start, e.end) for e in predicted.entities
    ]
    assert [(r.type, r.head, r.tail) for r in sentence.relations] == [
        (r.type, r.head, r.tail) for r in predicted.relations
    ]


def test_extract_list_gives_documents_in_order(model):
    texts = [TEXT, "", "Mary lives in Boston.", "  \n\t ", "Paris."]
    docs = model.extract(texts, batch_size=2, progress=True)
    assert isinstance(docs, list) and len(docs) == len(texts)
    for doc, text in zip(docs, texts):
        check_document(doc, text)
    assert docs[1].sentences == [] and docs[3].sentences == []
    single = model.extract(texts[2])
    assert docs[2] == single
    assert model.extract([]) == []
    assert model.extract(iter(["Paris."])) == [docs[4]]  # any iterable


def test_extract_pretokenized(model):
    tokens = [["John", "Smith", "works", "for", "IBM", "."], ["Boston"], []]
    docs = model.extract(tokens)
    assert [d.text for d in docs] == ["John Smith works for IBM .", "Boston", ""]
    for doc, words in zip(docs, tokens):
        check_document(doc, " ".join(words))
        assert [t for s in doc.sentences for t in s.tokens] == words
    assert docs[0].sentences[0].token_offsets[4] == (21, 24)


def test_extract_ids_and_records(model):
    docs = model.extract(
        [("a", "Mary works."), (7, ["Mary", "works", "."]), {"id": "r", "text": "Boston."}]
    )
    assert [d.id for d in docs] == ["a", 7, "r"]
    assert docs[0].to_dict()["id"] == "a"
    assert docs[1].text == "Mary works ."
    bad_inputs = [[42], [("only-id",)], [["ok", ""]], [{"id": 1}], [("id", 3)], ["a\ud800"]]
    for bad in bad_inputs:
        with pytest.raises(DataError, match="input 0"):
            model.extract(bad)


def test_extract_long_text_is_cut_into_bounded_sentences(model):
    text = " ".join(["Boston"] * 95) + " " + "x" * 700 + ". End"
    doc = model.extract(text)
    check_document(doc, text)
    assert all(len(s.tokens) <= model.inference.max_sentence_words for s in doc.sentences)
    assert sum(len(s.tokens) for s in doc.sentences) == 95 + 7 + 2


def test_zero_width_words_do_not_crash(model):
    text = "\u200b \u200b\u200d \ufeff Mary \u2060 . \u00ad"
    doc = model.extract(text)
    check_document(doc, text)
    assert [t for s in doc.sentences for t in s.tokens][:3] == ["\u200b", "\u200b\u200d", "\ufeff"]


def test_extract_stream_is_lazy_and_bounded(model):
    consumed = 0

    def texts():
        nonlocal consumed
        for i in range(150):
            consumed += 1
            yield (i, "" if i % 7 == 0 else f"Mary works in Boston number {i}.")

    stream = model.extract_stream(texts(), batch_size=1)  # 32 sentences per prediction chunk
    first = next(stream)
    assert first.id == 0 and consumed < 40
    ids = [first.id]
    for doc in stream:
        ids.append(doc.id)
        assert consumed - len(ids) <= 33  # never more than a chunk read ahead
        check_document(doc, doc.text)
    assert ids == list(range(150))


settings_extract = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NASTY = st.one_of(
    st.text(),
    st.text(st.sampled_from(" \n\t\u00a0\u2028\r")),
    st.text(st.sampled_from("ab.()\u200b\u200d\ufeff\u0301\U0001f600 "), max_size=300),
    st.integers(100, 2000).map(lambda n: "w" * n),
    st.lists(st.sampled_from(["Mary", "Boston", ".", "(IBM)", "\u6211", "\n\n", " "])).map("".join),
)


@settings_extract
@given(text=NASTY)
def test_property_extract_never_crashes(model, text):
    doc = model.extract(text)
    check_document(doc, text)
    if not text.strip():
        assert doc.sentences == []


# -- default model -------------------------------------------------------------------------
def test_default_model_dir_honours_spert_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SPERT_HOME", str(tmp_path / "home"))
    assert default_model_dir() == tmp_path / "home" / "default-model"
    monkeypatch.delenv("SPERT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_model_dir() == Path.home() / ".cache" / "spert" / "default-model"


def test_load_without_a_default_model_says_to_run_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("SPERT_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="spert demo"):
        SpERT.load()


def test_load_default_model(monkeypatch, tmp_path, model_dir):
    import shutil

    shutil.copytree(model_dir, tmp_path / "default-model")
    monkeypatch.setenv("SPERT_HOME", str(tmp_path))
    loaded = SpERT.load(device="cpu")
    assert (default_model_dir() / META_FILE).is_file()
    assert loaded.types.entities == ("Peop", "Org", "Loc")


# -- command line --------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spert")
    predict_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["extract", *argv])


def run_cli(*argv: str) -> None:
    args = parse(*argv)
    args.func(args)


@pytest.fixture()
def lines_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[Document]:
    return [Document.from_dict(json.loads(line)) for line in path.read_text("utf-8").splitlines()]


def test_cli_parser_defaults():
    args = parse()
    assert args.func is predict_cli.cmd_extract
    assert (args.model, args.input, args.out) == (None, "-", "-")
    assert args.format is None and args.input_format is None and args.batch_size is None
    assert X.guess_output_format("a.json") == "json"
    assert X.guess_output_format("a.TSV") == "tsv"
    assert X.guess_output_format("-") == "jsonl"
    assert X.guess_input_format("in.jsonl") == "jsonl"
    assert X.guess_input_format("in.txt") == "lines"


def test_cli_jsonl(model_dir, lines_file, tmp_path, capsys):
    out = tmp_path / "out" / "docs.jsonl"
    run_cli("--model", str(model_dir), "--input", str(lines_file), "--out", str(out))
    docs = read_jsonl(out)
    assert [d.id for d in docs] == [1, 3, 5]  # line numbers; blank lines skipped
    for doc, line in zip(docs, [LINES[0], LINES[2], LINES[4]]):
        check_document(doc, line)
    assert docs[0].entities
    assert "3 documents" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["docs.jsonl"]  # no temp files


def test_cli_json_list(model_dir, lines_file, tmp_path):
    out = tmp_path / "docs.json"
    run_cli("--model", str(model_dir), "--input", str(lines_file), "--out", str(out), "--quiet")
    raw = json.loads(out.read_text("utf-8"))  # --format from the suffix
    assert isinstance(raw, list) and len(raw) == 3
    for record, line in zip(raw, [LINES[0], LINES[2], LINES[4]]):
        check_document(Document.from_dict(record), line)


def test_cli_tsv(model_dir, lines_file, tmp_path):
    out = tmp_path / "rows.txt"
    run_cli(
        *("--model", str(model_dir), "--input", str(lines_file), "--out", str(out)),
        *("--format", "tsv", "--batch-size", "2"),
    )
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert tuple(rows[0]) == X.TSV_COLUMNS
    texts = {"1": LINES[0], "3": LINES[2], "5": LINES[4]}
    kinds = {r["kind"] for r in rows}
    assert kinds == {"entity", "relation"}
    for r in rows:
        text = texts[r["doc"]]
        start, end = int(r["start"]), int(r["end"])
        assert r["text"] == text[start:end]
        assert 0 < float(r["score"]) <= 1
        if r["kind"] == "entity":
            assert r["head"] == r["tail"] == ""
        else:
            assert r["head"] != r["tail"] and r["head"].isdigit()


def test_cli_text_and_jsonl_inputs(model_dir, tmp_path):
    whole = tmp_path / "doc.txt"
    whole.write_bytes(TEXT.replace("\n", "\r\n").encode("utf-8"))
    out = tmp_path / "one.jsonl"
    run_cli(
        *("--model", str(model_dir), "--input", str(whole), "--out", str(out)),
        *("--input-format", "text", "--quiet"),
    )
    (doc,) = read_jsonl(out)
    check_document(doc, TEXT.replace("\n", "\r\n"))  # line ends kept as they are
    assert len(doc.sentences) == 3

    records = tmp_path / "in.jsonl"
    records.write_text(
        json.dumps({"id": "a", "text": "Mary works."})
        + "\n\n"
        + json.dumps({"text": "Boston \u00e9t\u00e9."}, ensure_ascii=False)
        + "\n"
        + json.dumps({"id": 9, "tokens": ["John", "Smith"]})
        + "\n",
        encoding="utf-8",
    )
    run_cli("--model", str(model_dir), "--input", str(records), "--out", str(out), "--quiet")
    docs = read_jsonl(out)
    assert [d.id for d in docs] == ["a", 3, 9]
    assert docs[2].text == "John Smith"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "oops"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        run_cli("--model", str(model_dir), "--input", str(bad), "--out", str(out), "--quiet")
    assert len(read_jsonl(out)) <= 1  # valid; holds what was processed before the error
    with pytest.raises(DataError, match="no such file"):
        run_cli("--model", str(model_dir), "--input", str(tmp_path / "missing.txt"))


def test_cli_stdin_to_stdout(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Mary works in Boston.\n\nParis.\n"))
    run_cli("--model", str(model_dir), "--format", "json", "--quiet")
    raw = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in raw] == ["Mary works in Boston.", "Paris."]


def test_cli_stdin_subprocess(model_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, "--model", str(model_dir), "--out", str(out)],
        input="Mary works in Boston.\n\u00c9t\u00e9 \U0001f600.\n".encode(),
        capture_output=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    docs = read_jsonl(out)
    assert [d.text for d in docs] == ["Mary works in Boston.", "\u00c9t\u00e9 \U0001f600."]


def test_cli_html(model_dir, lines_file, tmp_path):
    out = tmp_path / "page.html"
    run_cli("--model", str(model_dir), "--input", str(lines_file), "--out", str(out), "--quiet")
    page = out.read_text("utf-8")
    assert "<html" in page.lower() and "Boston" in page


def test_cli_missing_model(tmp_path, lines_file, monkeypatch):
    with pytest.raises(ModelError):
        run_cli("--model", str(tmp_path / "nope"), "--input", str(lines_file))
    monkeypatch.setenv("SPERT_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="spert demo"):
        run_cli("--input", str(lines_file))


@pytest.mark.parametrize("fmt", ["jsonl", "json", "tsv"])
def test_cli_interrupted_run_leaves_valid_output(model_dir, tmp_path, monkeypatch, capsys, fmt):
    original = SpERT.extract_stream

    def interrupted(self, texts, batch_size=None):
        for i, doc in enumerate(original(self, texts, batch_size)):
            if i == 3:
                raise KeyboardInterrupt
            yield doc

    monkeypatch.setattr(SpERT, "extract_stream", interrupted)
    source = tmp_path / "in.txt"
    source.write_text("".join(f"Mary works in Boston {i}.\n" for i in range(10)), "utf-8")
    out = tmp_path / f"out.{fmt}"
    out.write_text("old content", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("--model", str(model_dir), "--input", str(source), "--out", str(out))
    assert exit_info.value.code == X.INTERRUPTED_EXIT_CODE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"spert: interrupted; wrote 3 document(s) to {out}"
    if fmt == "jsonl":
        assert [d.id for d in read_jsonl(out)] == [1, 2, 3]
    elif fmt == "json":
        assert [d["id"] for d in json.loads(out.read_text("utf-8"))] == [1, 2, 3]
    else:
        with out.open(encoding="utf-8", newline="") as f:
            assert {r["doc"] for r in csv.DictReader(f, delimiter="\t")} == {"1", "2", "3"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", out.name]


def test_writer_closes_the_json_list_on_any_exit(tmp_path):
    out = tmp_path / "w.json"
    doc = Document("Hi.", [], "x")
    with pytest.raises(RuntimeError):
        with X.DocumentWriter(str(out), "json") as writer:
            writer.write(doc)
            writer.write(doc)
            raise RuntimeError("boom")
    assert json.loads(out.read_text("utf-8")) == [doc.to_dict(), doc.to_dict()]
    with X.DocumentWriter(str(out), "json"):
        pass
    assert json.loads(out.read_text("utf-8")) == []


CLI_SCRIPT = (
    "import argparse, sys\n"
    "from spert.cli.predict import register as add_parser\n"
    "p = argparse.ArgumentParser()\n"
    "add_parser(p.add_subparsers())\n"
    "a = p.parse_args(['extract', *sys.argv[1:]])\n"
    "a.func(a)\n"
)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_cli_sigterm_leaves_valid_output(model_dir, tmp_path):
    """SIGTERM while the command waits for more input: valid JSON, exit code 130."""
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_SCRIPT, "--model", str(model_dir), "--out", str(out)]
        + ["--batch-size", "1"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=SUBPROCESS_ENV,
    )
    try:
        assert proc.stdin is not None
        # 40 one-sentence documents: the first 32 (one prediction chunk) get written.
        proc.stdin.write("".join(f"Mary works in Boston {i}.\n" for i in range(40)).encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob(".out.json.*.tmp")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
        time.sleep(3)  # the model is loaded: let it work on the first chunk
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == X.INTERRUPTED_EXIT_CODE, err.decode()
    match = re.search(r"spert: interrupted; wrote (\d+) document\(s\)", err.decode())
    assert match, err.decode()
    docs = json.loads(out.read_text("utf-8"))
    assert len(docs) == int(match.group(1)) and len(docs) in (0, 32)
    assert [d["id"] for d in docs] == list(range(1, len(docs) + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
