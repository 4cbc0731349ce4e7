"""bfloat16, used only where the device computes in bfloat16 natively.

Training (``bf16``: autocast over float32 weights) and inference (``runtime="torch-bf16"``:
the encoder's weights in bfloat16) share this check: on a device without native bfloat16
arithmetic the emulated path is slower than float32, so they fall back to float32 with a
warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively: AVX512-BF16 or AMX instructions.
    (oneDNN also runs bfloat16 on plain AVX512 CPUs, by conversion: slower than float32.)"""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these checks
        return False


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes in bfloat16 natively (CUDA GPUs from Ampere on; CPUs with
    AVX512-BF16 or AMX), and its name for messages."""
    if device.type == "cpu":
        return cpu_has_bf16(), "this CPU"
    if device.type == "cuda":
        return (
            torch.cuda.is_bf16_supported(including_emulation=False),
            torch.cuda.get_device_name(device),
        )
    return False, str(device)


def bf16_or_warn(device: torch.device, purpose: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively; if not, warn that ``purpose`` runs in
    float32."""
    supported, name = native_bf16(device)
    if not supported:
        logger.warning("bf16: %s has no native bfloat16 arithmetic: %s in float32", name, purpose)
    return supported


def bf16_autocast(
    device: torch.device, purpose: str
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of bfloat16 autocast contexts on ``device``, or of null contexts (float32,
    with a warning naming ``purpose``) where the device has no native bfloat16."""
    if not bf16_or_warn(device, purpose):
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def bf16_weights(module: nn.Module, device: torch.device, purpose: str) -> bool:
    """Cast ``module``'s weights to bfloat16 where ``device`` computes in bfloat16 natively
    (True); elsewhere leave them float32, with a warning naming ``purpose`` (False).

    For inference only: on this project's AMX CPU, bfloat16 weights predicted CoNLL04 test 1.7x
    (batch 1) and 2.2x (batch 8) as fast as float32, against 1.5x and 2.2x for autocast over
    float32 weights, which converts the weights at every call (benchmarks/results/
    speed_runtimes.md)."""
    if not bf16_or_warn(device, purpose):
        return False
    module.to(torch.bfloat16)
    return True
