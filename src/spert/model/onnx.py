"""CPU deployment: the encoder exported to ONNX and run by onnxruntime.

``export_onnx(model_dir)`` writes ``model_dir/onnx/encoder.onnx`` (and, with ``int8=True``,
its dynamically quantized ``encoder.int8.onnx``). ``SpERT.load(model_dir, runtime="onnx")``
(or ``"onnx-int8"``) then runs the encoder -- nearly all of SpERT's inference time -- in
onnxruntime; the span and pair heads stay in PyTorch, where they cost little.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from spert.model.directory import ModelError, find_model_dir, load_model_dir
from spert.model.modeling import SpertEnsemble
from spert.utils import atomic_write

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
_FILES = {"onnx": "encoder.onnx", "onnx-int8": "encoder.int8.onnx"}


class OnnxError(ModelError):
    """An ONNX file that is missing or cannot be run."""


def onnx_path(model_dir: str | Path, runtime: str) -> Path:
    if runtime not in _FILES:
        raise OnnxError(f"unknown ONNX runtime {runtime!r}; choose from {', '.join(_FILES)}")
    return Path(model_dir) / ONNX_DIR / _FILES[runtime]


class _EncoderOutput(nn.Module):
    """The HF encoder with tensor inputs and a tensor output, as the exporter wants it."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model_dir: str | Path, int8: bool = False) -> list[Path]:
    """Export the encoder of a saved model to ONNX (and an int8-quantized copy); return the
    files written. Each file is written under a temporary name, then renamed."""
    model_dir = find_model_dir(model_dir)
    saved = load_model_dir(model_dir)
    if isinstance(saved.model, SpertEnsemble):
        raise ModelError(
            f"{model_dir}: an ensemble runs with the torch runtimes only; export its members"
        )
    encoder = _EncoderOutput(saved.model.encoder).eval()
    # The example batch has padding: an all-ones mask lets the exporter drop the mask logic.
    input_ids = torch.full((2, 8), saved.tokenizer.pad_token_id or 0, dtype=torch.long)
    input_ids[:, 0] = saved.tokenizer.cls_token_id or 0
    input_ids[0, 1:7] = 100
    attention_mask = (torch.arange(8) < torch.tensor([[8], [5]])).long()
    fp32 = onnx_path(model_dir, "onnx")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")

    def export(tmp: Path) -> None:
        torch.onnx.export(
            encoder,
            (input_ids, attention_mask),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        _fuse(tmp, saved.model.encoder.config)

    written = [atomic_write(fp32, export)]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel 7-bit weights: on CoNLL04 plain per-tensor int8 cost 2 points of
        # relation F1, this about 0.2 (benchmarks/results/speed.md).
        def quantize(tmp: Path) -> None:
            quantize_dynamic(
                str(fp32),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )

        written.append(atomic_write(onnx_path(model_dir, "onnx-int8"), quantize, suffix=".onnx"))
    return written


def _fuse(path: Path, config: Any) -> None:
    """Rewrite the graph in place with onnxruntime's transformer fusions (LayerNorm, GELU,
    ...), which it finds in BERT-like encoders; an encoder it cannot fuse stays as it is."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(
            str(path),
            model_type="bert",
            num_heads=getattr(config, "num_attention_heads", 0),
            hidden_size=getattr(config, "hidden_size", 0),
        )
        optimized.save_model_to_file(str(path))
    except Exception as e:  # fusion is an optimization only
        logger.warning("ONNX graph fusion skipped: %s", e)


class OnnxEncoder(nn.Module):
    """Stands in for the HF encoder at inference: same call, same output attribute."""

    def __init__(self, path: str | Path, config: Any, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise OnnxError(
                f"{path} does not exist: export the model first with "
                f"`spert export-onnx --model {path.parent.parent}`"
                + (" --int8" if path.name == _FILES["onnx-int8"] else "")
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise OnnxError(f"{path}: cannot be loaded by onnxruntime: {e}") from None
        self.config = config  # the HF config: SpERT reads its limits from it
        self.path = path

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        (hidden,) = self.session.run(
            None,
            {
                "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
                "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False),
            },
        )
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))
