"""ONNX export and the onnxruntime encoder: same predictions as PyTorch, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_same_predictions

from spert.api import ModelError, SpERT
from spert.config import SpertConfig
from spert.data import Sentence, Types
from spert.model.onnx import OnnxError, export_onnx, onnx_path

TEXTS = [
    "Mary works for Acme Corp in Boston and lives in Cambridge .".split(),
    "John Wilkes Booth , who assassinated President Lincoln , was an actor .".split(),
    "Smith .".split(),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path) -> Path:
    from spert.data import RelationType

    types = Types(("Peop", "Org", "Loc"), (RelationType("Work_For"), RelationType("Live_In")))
    torch.manual_seed(0)
    spert = SpERT.create(types, SpertConfig(encoder=str(bert_dir)), "cpu")
    with torch.no_grad():  # keep many spans, so the pair step is exercised too
        spert.model.entity_classifier.bias[0] = -3.0
    model_dir = tmp_path_factory.mktemp("onnx") / "model"
    spert.save(model_dir)
    written = export_onnx(model_dir, int8=True)
    assert written == [onnx_path(model_dir, "onnx"), onnx_path(model_dir, "onnx-int8")]
    return model_dir


def test_onnx_predictions_equal_torch(exported: Path) -> None:
    eager = SpERT.load(exported, device="cpu").predict(TEXTS, batch_size=2)
    onnx = SpERT.load(exported, runtime="onnx").predict(TEXTS, batch_size=2)
    assert sum(len(s.entities) for s in eager) > 5 and sum(len(s.relations) for s in eager) > 0
    assert_same_predictions(eager, onnx)


def test_int8_runs_and_is_close(exported: Path) -> None:
    eager = SpERT.load(exported, device="cpu")
    int8 = SpERT.load(exported, runtime="onnx-int8")
    assert isinstance(int8.model.encoder, torch.nn.Module)
    batch = next(int8.inference_batches([_sentence(t) for t in TEXTS], 4))[1]
    with torch.no_grad():
        reference = eager.model.encode(batch)
        quantized = int8.model.encode(batch)
    assert quantized.shape == reference.shape
    # Quantization changes the numbers a little, not the representation.
    cosine = torch.nn.functional.cosine_similarity(reference, quantized, dim=-1)
    assert cosine.min() > 0.9
    assert int8.predict(TEXTS)  # end to end


def _sentence(tokens: list[str]):

    return Sentence(tokens)


def test_missing_export_names_the_command(tmp_path: Path, exported: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(exported, copy)
    shutil.rmtree(copy / "onnx")
    with pytest.raises(OnnxError, match="spert export-onnx --model"):
        SpERT.load(copy, runtime="onnx")
    with pytest.raises(ModelError, match="unknown runtime"):
        SpERT.load(copy, runtime="tensorrt")
    with pytest.raises(ModelError, match="CPU only"):
        SpERT.load(copy, device="cuda", runtime="onnx")


def test_onnx_model_cannot_be_saved(tmp_path: Path, exported: Path) -> None:
    model = SpERT.load(exported, runtime="onnx")
    with pytest.raises(ModelError, match="cannot be saved"):
        model.save(tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_cli_predict_with_onnx_runtime(tmp_path: Path, exported: Path) -> None:
    import json

    source = tmp_path / "in.json"
    source.write_text(json.dumps([{"tokens": t} for t in TEXTS]))
    out = {}
    for runtime in ("torch", "onnx"):
        target = tmp_path / f"{runtime}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "spert", "predict", "--model", str(exported)]
            + ["--input", str(source), "--out", str(target), "--runtime", runtime],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        out[runtime] = [
            [(e["type"], e["start"], e["end"]) for e in s["entities"]]
            for s in json.loads(target.read_text())
        ]
    assert out["onnx"] == out["torch"]


def test_cli_extract_with_onnx_runtime(tmp_path: Path, exported: Path) -> None:
    import json

    source = tmp_path / "in.txt"
    source.write_text(" ".join(TEXTS[0]) + "\n")
    target = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "spert", "extract", "--model", str(exported), "--quiet"]
        + ["--input", str(source), "--out", str(target), "--runtime", "onnx"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    served = json.loads(target.read_text().splitlines()[0])
    expected = SpERT.load(exported, device="cpu").extract(" ".join(TEXTS[0])).to_dict()
    assert [
        (e["type"], e["start"], e["end"]) for s in served["sentences"] for e in s["entities"]
    ] == [(e["type"], e["start"], e["end"]) for s in expected["sentences"] for e in s["entities"]]


def test_calibration_applies_under_onnx(exported: Path, tmp_path: Path) -> None:
    """A stored calibration is used by the ONNX runtimes as by torch (it acts on the heads)."""
    import shutil

    from spert.model.calibration import Calibration
    from spert.model.directory import write_calibration

    copy = tmp_path / "calibrated"
    shutil.copytree(exported, copy)
    names = SpERT.load(exported, device="cpu").types.relation_names
    write_calibration(
        copy,
        Calibration(
            ("Peop", "Org", "Loc"),
            tuple(names),
            entity_temperature=2.0,
            entity_threshold=0.3,
            relation_method="platt",
            relation_scale=(0.7,) * len(names),
            relation_bias=(0.2,) * len(names),
            relation_thresholds=(0.45,) * len(names),
        ),
    )
    eager = SpERT.load(copy, device="cpu").predict(TEXTS)
    raw = SpERT.load(copy, device="cpu", calibration=False).predict(TEXTS)
    onnx_model = SpERT.load(copy, runtime="onnx")
    assert onnx_model.calibration is not None
    onnx = onnx_model.predict(TEXTS)
    assert [(e.start, e.end, e.score) for s in eager for e in s.entities] != [
        (e.start, e.end, e.score) for s in raw for e in s.entities
    ]
    assert_same_predictions(eager, onnx)
