"""The ``torch-bf16`` runtime: the encoder's weights in bfloat16 where the CPU computes it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import keeping_model

from spert.api import ModelError, SpERT
from spert.model import precision

TEXTS = [
    "Mary works for Acme Corp in Boston and lives in Cambridge .".split(),
    "John Wilkes Booth , who assassinated President Lincoln , was an actor .".split(),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, bert_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("bf16") / "model"
    keeping_model(bert_dir).save(path)
    return path


def encoder_output_dtypes(model: SpERT) -> list[torch.dtype]:
    """Predict TEXTS and return the dtype of each output of the encoder's first linear layer
    (its last LayerNorm returns float32 under autocast either way)."""
    seen: list[torch.dtype] = []
    linear = next(m for m in model.model.encoder.modules() if isinstance(m, torch.nn.Linear))
    hook = linear.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        assert model.predict(TEXTS, batch_size=2)
    finally:
        hook.remove()
    return seen


@pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_bf16_runtime_holds_the_encoder_in_bfloat16_and_the_heads_in_float32(
    model_dir: Path,
) -> None:
    eager = SpERT.load(model_dir, device="cpu")
    bf16 = SpERT.load(model_dir, device="cpu", runtime="torch-bf16")
    assert bf16.runtime == "torch-bf16"
    assert encoder_output_dtypes(eager) == [torch.float32]
    assert encoder_output_dtypes(bf16) == [torch.bfloat16]
    assert {p.dtype for p in bf16.model.encoder.parameters()} == {torch.bfloat16}
    heads = [p for n, p in bf16.model.named_parameters() if not n.startswith("encoder.")]
    assert heads and {p.dtype for p in heads} == {torch.float32}
    first, second = eager.predict(TEXTS), bf16.predict(TEXTS)
    scores = [e.score for s in second for e in s.entities]
    assert scores and all(isinstance(x, float) for x in scores)
    # Close, not equal: bfloat16 keeps 8 bits of mantissa.
    assert sum(len(s.entities) for s in second) == pytest.approx(
        sum(len(s.entities) for s in first), rel=0.5
    )


def test_bf16_runtime_without_native_support_predicts_in_float32_with_a_warning(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="spert.model.precision"):
        bf16 = SpERT.load(model_dir, device="cpu", runtime="torch-bf16")
    assert "no native bfloat16" in caplog.text and "predicting in float32" in caplog.text
    assert bf16.runtime == "torch"  # what it runs, not what was asked
    assert encoder_output_dtypes(bf16) == [torch.float32]
    eager = SpERT.load(model_dir, device="cpu")
    assert bf16.predict(TEXTS) == eager.predict(TEXTS)


@pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_a_model_with_bfloat16_weights_refuses_to_be_saved(model_dir: Path, tmp_path: Path) -> None:
    bf16 = SpERT.load(model_dir, device="cpu", runtime="torch-bf16")
    with pytest.raises(ModelError, match="runtime torch-bf16 cannot be saved.*runtime torch"):
        bf16.save(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_model_that_fell_back_to_float32_saves_its_weights_unchanged(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    SpERT.load(model_dir, device="cpu", runtime="torch-bf16").save(tmp_path / "copy")
    copy = SpERT.load(tmp_path / "copy", device="cpu")
    original = SpERT.load(model_dir, device="cpu")
    for (name, a), b in zip(original.model.state_dict().items(), copy.model.state_dict().values()):
        assert torch.equal(a, b), name
