"""Shared fixtures: tiny randomly initialized encoders (BERT- and RoBERTa-style) and data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)

from spert.config import SpertConfig
from spert.data import Entity, Relation, RelationType, Sentence, Types

#: The repository root, its sources, and ../shared beside it (benchmark data, annotation exports).
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SHARED = ROOT.parent / "shared"
DATASETS = SHARED / "datasets"

CORPUS = [
    "John Wilkes Booth , who assassinated President Lincoln , was an actor .",
    "Mary works for Acme Corp in Boston and lives in Cambridge .",
    "The Ministry of Health in Paris hired Dr. Smith last year .",
]
WORDS = sorted({w for line in CORPUS for w in line.split()})
BERT_PIECES = ["##s", "##ed", "##ing", "##er", "##on", "##a", "##e", "##o", "##n", "##t"]


def tiny_bert_dir(root: Path, lowercase: bool = False, max_position: int = 64) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved like a hub model."""
    path = root / ("tiny-bert-uncased" if lowercase else "tiny-bert-cased")
    if path.exists():
        return path
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w.lower() for w in WORDS}) if lowercase else WORDS
    chars = sorted({c for w in words for c in w})
    vocab = specials + words + chars + [f"##{c}" for c in chars] + BERT_PIECES
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=lowercase)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_roberta_dir(root: Path, max_position: int = 66) -> Path:
    """A 2-layer, 32-wide RoBERTa with a byte-level BPE trained on a few sentences."""
    path = root / "tiny-roberta"
    if path.exists():
        return path
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 5,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    tmp = root / "bpe"
    tmp.mkdir(exist_ok=True)
    bpe.save_model(str(tmp))
    tokenizer = RobertaTokenizer(
        vocab=str(tmp / "vocab.json"), merges=str(tmp / "merges.txt"), add_prefix_space=True
    )
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position,
        pad_token_id=1,
    )
    RobertaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (a lot of it on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def encoder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encoders")


@pytest.fixture(scope="session")
def bert_dir(encoder_root: Path) -> Path:
    return tiny_bert_dir(encoder_root)


@pytest.fixture(scope="session")
def bert_uncased_dir(encoder_root: Path) -> Path:
    return tiny_bert_dir(encoder_root, lowercase=True)


@pytest.fixture(scope="session")
def roberta_dir(encoder_root: Path) -> Path:
    return tiny_roberta_dir(encoder_root)


@pytest.fixture()
def types() -> Types:
    return Types(
        entities=("Peop", "Org", "Loc"),
        relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
    )


@pytest.fixture()
def sentences() -> list[Sentence]:
    return [
        Sentence(
            "Mary works for Acme Corp in Boston and lives in Cambridge .".split(),
            [Entity("Peop", 0, 1), Entity("Org", 3, 5), Entity("Loc", 6, 7), Entity("Loc", 10, 11)],
            [Relation("Work_For", 0, 1), Relation("Live_In", 0, 3)],
        ),
        Sentence(
            "John Wilkes Booth , who assassinated President Lincoln , was an actor .".split(),
            [Entity("Peop", 0, 3), Entity("Peop", 6, 8)],
            [Relation("Spouse", 0, 1)],
        ),
        Sentence("The Ministry of Health in Paris hired Dr. Smith last year .".split()),
    ]


@pytest.fixture()
def tiny_config(bert_dir: Path) -> SpertConfig:
    return SpertConfig(encoder=str(bert_dir), epochs=1, neg_entity_count=20, neg_relation_count=20)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium (skip the test without it); its output, checked to succeed."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("no chromium binary (Debian package 'chromium')")
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def assert_same_predictions(
    expected: list[Sentence], actual: list[Sentence], tolerance: float = 1e-4
) -> None:
    """The same entities and relations, in the same order, with scores within ``tolerance``."""
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert [(e.type, e.start, e.end) for e in a.entities] == [
            (e.type, e.start, e.end) for e in b.entities
        ]
        assert [(r.type, r.head, r.tail) for r in a.relations] == [
            (r.type, r.head, r.tail) for r in b.relations
        ]
        for x, y in zip(a.entities + a.relations, b.entities + b.relations):
            assert x.score == pytest.approx(y.score, abs=tolerance)


def keeping_model(bert_dir: Path, types: Types | None = None) -> Any:
    """An untrained tiny SpERT model that keeps some entities (its "none" class pushed up, so
    that not every span is one) and so predicts relations too: for tests of what is done with
    predictions."""
    from spert.api import SpERT

    types = types or Types(
        ("Peop", "Org", "Loc"),
        (RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
    )
    torch.manual_seed(0)
    model = SpERT.create(types, SpertConfig(encoder=str(bert_dir), max_span_size=4), "cpu")
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = 1.5
    return model


def label_studio_result(
    text: str, entities: list[tuple[str, str]], relations: list[tuple[str, int, int]]
) -> list[dict[str, Any]]:
    """A Label Studio annotation's ``result``: regions (type, span text, found in ``text``) and
    relations (type, head index, tail index) over the config's ``label`` and ``text`` tags."""
    result: list[dict[str, Any]] = []
    for i, (label, span) in enumerate(entities):
        start = text.index(span)
        value = {"start": start, "end": start + len(span), "text": span, "labels": [label]}
        region = {"id": f"r{i}", "from_name": "label", "to_name": "text", "type": "labels"}
        result.append({**region, "value": value})
    for label, head, tail in relations:
        relation = {"from_id": f"r{head}", "to_id": f"r{tail}", "type": "relation"}
        result.append({**relation, "direction": "right", "labels": [label]})
    return result
