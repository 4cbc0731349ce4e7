"""Training as in the SpERT paper: sampled spans and pairs, CE + BCE, AdamW, linear schedule."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spert.api import SpERT
from spert.candidates import Batch, collate, sample_training
from spert.config import SpertConfig
from spert.data import Sentence, Types

logger = logging.getLogger(__name__)

ADAM_BETAS = (0.9, 0.999)


@dataclass
class TrainResult:
    model: SpERT
    best_epoch: int | None
    best_dev: dict[str, Any] | None
    history: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def spert_loss(
    entity_logits: torch.Tensor,
    relation_logits: torch.Tensor,
    batch: Batch,
) -> torch.Tensor:
    """Cross-entropy over entity types + binary cross-entropy over relation types.

    Each term is averaged over the batch's samples; no class weights.
    """
    assert batch.entity_labels is not None and batch.relation_labels is not None
    loss = nn.functional.cross_entropy(entity_logits.float(), batch.entity_labels)
    if relation_logits.numel():
        loss = loss + nn.functional.binary_cross_entropy_with_logits(
            relation_logits.float(), batch.relation_labels
        )
    return loss


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then linear decay to zero, times the Adam bias-correction undo.

    The original trains with ``AdamW(correct_bias=False)``; torch's AdamW always corrects, so
    the factor ``(1 - b1^t) / sqrt(1 - b2^t)`` restores the original's uncorrected steps.
    """
    if step < warmup_steps:
        schedule = step / max(1, warmup_steps)
    else:
        schedule = max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    t = step + 1
    b1, b2 = ADAM_BETAS
    return schedule * (1 - b1**t) / math.sqrt(1 - b2**t)


def make_optimizer(model: nn.Module, config: SpertConfig) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm", "layernorm")
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if any(nd in name for nd in no_decay) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    # The fused kernel is ~4x faster than the per-tensor loop on a CPU.
    return torch.optim.AdamW(groups, lr=config.lr, betas=ADAM_BETAS, eps=1e-8, fused=True)


def relation_f1(metrics: dict[str, Any]) -> float:
    """The model-selection score: relation strict micro F1."""
    return float(metrics["relations_strict"]["micro"]["f1"])


def train(
    config: SpertConfig,
    train_data: Sequence[Sentence],
    types: Types,
    out_dir: str | Path,
    dev_data: Sequence[Sentence] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train, keep ``out_dir/best`` (dev relation strict micro F1) and ``out_dir/final``."""
    if not train_data:
        raise ValueError("no training sentences")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    spert = SpERT.create(types, config, device)
    model = spert.model
    encoded = spert.encode(train_data)  # tokenized once; samples are drawn anew each epoch

    steps_per_epoch = math.ceil(len(train_data) / config.train_batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(total_steps * config.lr_warmup)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, warmup_steps)
    )
    writer = _tensorboard_writer(out_dir)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.write_text("", encoding="utf-8")
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_dev = -1.0, None, None
    step = 0

    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(len(train_data))
        started, loss_sum = time.perf_counter(), 0.0
        bar = tqdm(
            total=len(train_data),
            unit="sent",
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
        )
        for i in range(0, len(order), config.train_batch_size):
            chunk = order[i : i + config.train_batch_size]
            samples = [
                sample_training(train_data[j], encoded[j], types, config, rng) for j in chunk
            ]
            batch = collate(
                [encoded[j] for j in chunk], [s.spans for s in samples], spert.pad_token_id, samples
            ).to(spert.device)
            entity_logits, relation_logits = model(batch)
            loss = spert_loss(entity_logits, relation_logits, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = loss.item()
            loss_sum += loss_value
            bar.update(len(chunk))
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
        bar.close()
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum / steps_per_epoch,
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if dev_data and (config.eval_every_epoch or epoch == config.epochs):
            dev_metrics, _ = spert.evaluate(dev_data)
            record["dev"] = dev_metrics
            score = relation_f1(dev_metrics)
            record["dev_summary"] = {
                "entity_micro_f1": dev_metrics["entities"]["micro"]["f1"],
                "relation_strict_micro_f1": score,
            }
            if writer is not None:
                writer.add_scalar(
                    "dev/entity_micro_f1", dev_metrics["entities"]["micro"]["f1"], step
                )
                writer.add_scalar("dev/relation_strict_micro_f1", score, step)
            if score > best_score:
                best_score, best_epoch, best_dev = score, epoch, dev_metrics
                spert.save(out_dir / "best")
        history.append(record)
        with metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        summary = record.get("dev_summary", {})
        logger.info("epoch %d: loss %.4f %s", epoch, record["train_loss"], summary)
    spert.save(out_dir / "final")
    if writer is not None:
        writer.close()
    model.eval()
    return TrainResult(spert, best_epoch, best_dev, history)


def _tensorboard_writer(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))
