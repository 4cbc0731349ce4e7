"""Training as in the SpERT paper: sampled spans and pairs, CE + BCE, AdamW, linear schedule.

One process trains alone; processes launched by ``torchrun`` train one model together with
DistributedDataParallel. Either way the run writes resumable checkpoints
(:mod:`spert.training.checkpoint`) and ``train(..., resume=True)`` continues an interrupted
run exactly. The loss is averaged over the samples of the whole step batch (see
:mod:`spert.training.batches`), so N processes compute the gradient one process would
compute for the same step batch.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spert.calibration import calibrate
from spert.config import ConfigError, SpertConfig
from spert.data import Sentence, Types
from spert.evaluation import evaluate, relation_f1, summarize
from spert.evaluation.card import write_model_card
from spert.model.directory import write_calibration
from spert.model.precision import bf16_autocast
from spert.runtime.predictor import SpERT
from spert.training import checkpoint, distributed
from spert.training.batches import (
    MicroBatch,
    MicroBatches,
    epoch_batches,
    epoch_rng,
    step_shares,
)
from spert.training.distributed import DistributedContext
from spert.training.optim import (
    WeightEMA,
    linear_schedule,
    make_optimizer,
    rdrop_divergence,
    spert_loss,
)
from spert.utils import atomic_write_text

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


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


@dataclass
class Progress:
    """Where a run stands; saved in checkpoints. ``epoch`` is the one to run next."""

    epoch: int = 1
    position: int = 0  # index of the epoch's next step batch
    step: int = 0  # optimizer steps done
    epoch_loss: float = 0.0  # sum of the epoch's step losses so far
    epoch_seconds: float = 0.0  # training time spent in the epoch so far
    best_score: float = -1.0
    best_epoch: int | None = None
    best_dev: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    averaged: int = 0  # epochs in the weight average so far (average_last_epochs)


def train(
    config: SpertConfig,
    train_data: Sequence[Sentence],
    types: Types,
    out_dir: str | Path,
    dev_data: Sequence[Sentence] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    resume: bool = False,
    data_files: dict[str, str | None] | None = None,
) -> TrainResult:
    """Train, keep ``out_dir/best`` (dev relation strict micro F1) and ``out_dir/final``.

    The run's record, ``out_dir/run.json``, holds its options (and ``data_files``, the paths
    the data came from, if given); ``out_dir/metrics.jsonl`` one line per epoch.
    Checkpoints go to ``out_dir/checkpoints`` (at each epoch end, and every
    ``config.checkpoint_every`` steps; deleted when the run finishes); ``resume=True``
    continues an interrupted run from the newest one, giving the model an uninterrupted run
    would give. The configuration must be the run's (only the options in
    :data:`spert.training.checkpoint.RESUMABLE_CHANGES` may differ), and so must the data.

    Under ``torchrun`` (or in an initialized process group), every process calls this with the
    same arguments; they train one model together, and only rank 0 writes files.
    """
    if not train_data:
        raise ValueError("no training sentences")
    ctx = distributed.setup(device)
    try:
        trainer = Trainer(config, train_data, types, Path(out_dir), dev_data, ctx, progress)
        result = trainer.run(resume, data_files)
        # The DDP wrapper goes before the process group: its reducer, freed after the group,
        # would drop the group's last reference, whose destructor joins threads that wait for
        # the GIL this thread holds (a hang at exit, seen under torchrun).
        del trainer
        gc.collect()  # also if the wrapper is part of a reference cycle
    except BaseException:
        if ctx.owns_group:  # the others fail too (torchrun stops them); no goodbye barrier
            torch.distributed.destroy_process_group()
        raise
    ctx.close()
    return result


class Trainer:
    """One training run: a new model, its optimizer and schedule, and where the run stands.

    :meth:`run` starts (or resumes) and trains epoch after epoch: :meth:`train_epoch` takes
    the optimizer steps (:meth:`step`), :meth:`end_epoch` evaluates on the dev set, keeps the
    best model and writes a checkpoint.
    """

    def __init__(
        self,
        config: SpertConfig,
        train_data: Sequence[Sentence],
        types: Types,
        out_dir: Path,
        dev_data: Sequence[Sentence] | None = None,
        ctx: DistributedContext | None = None,
        progress: bool = True,
    ) -> None:
        self.ctx = ctx if ctx is not None else distributed.setup(None)
        if config.rdrop_alpha > 0 and self.ctx.enabled:
            # DistributedDataParallel expects one forward pass per backward pass.
            raise ConfigError("rdrop_alpha is not supported in multi-process training")
        self.main = self.ctx.is_main
        self.config = config
        self.train_data = train_data
        self.dev_data = dev_data
        self.out_dir = out_dir
        self.progress = progress
        if self.main:
            out_dir.mkdir(parents=True, exist_ok=True)
        self.step_size = config.train_batch_size * self.ctx.world_size * config.grad_accumulation
        # The training forward pass: bfloat16 autocast with ``bf16`` where the device has it.
        self.autocast = (
            bf16_autocast(self.ctx.device, "training") if config.bf16 else contextlib.nullcontext
        )
        seed_everything(config.seed)
        self.spert = SpERT.create(types, config, self.ctx.device)
        self.model = self.spert.model
        encoded = self.spert.encode(train_data)  # tokenized once; samples drawn each epoch
        self.lengths = [e.seq_len for e in encoded]
        self.micro_batches = MicroBatches(
            train_data, encoded, types, config, self.spert.pad_token_id
        )
        total_steps = math.ceil(len(train_data) / self.step_size) * config.epochs
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = linear_schedule(self.optimizer, total_steps, config.lr_warmup)
        self.checkpoints = out_dir / checkpoint.CHECKPOINT_DIR
        self.identity = {
            "world_size": self.ctx.world_size,
            "step_batch": self.step_size,
            "train_sentences": len(train_data),
            "train_fingerprint": checkpoint.data_fingerprint(train_data),
        }
        self.state = Progress()
        self.net: nn.Module = self.model
        self.writer: Any = None
        # Running mean of the weights after each of the last average_last_epochs epochs.
        self.average: dict[str, torch.Tensor] | None = None
        # Moving average of the weights over the optimizer steps (ema_decay).
        self.ema = WeightEMA(self.model, config.ema_decay) if config.ema_decay > 0 else None

    # -- start ---------------------------------------------------------------------------
    def start(self, data_files: dict[str, str | None] | None = None) -> None:
        """A new run: the run's record written, old checkpoints gone, a dropout stream per
        process."""
        if self.main:
            checkpoint.write_run_info(self.out_dir, data_files or {}, self.config)
            removed = checkpoint.remove_checkpoints(self.checkpoints)
            if removed:
                logger.warning(
                    "a new run: deleted %d old checkpoint(s) in %s", removed, self.checkpoints
                )
        if self.ctx.rank > 0:  # rank 0 keeps the stream seeded above; the others get their own
            torch.manual_seed(distributed.rank_seed(self.config.seed, self.ctx.rank))

    def resume(self) -> None:
        """Continue from the newest checkpoint: model, optimizer, schedule, RNGs, progress."""
        saved = self.ctx.broadcast(checkpoint.load_latest(self.checkpoints) if self.main else None)
        if saved is None:
            done = (self.out_dir / "final").is_dir()
            raise checkpoint.CheckpointError(
                f"{self.out_dir}: the run has finished (see {self.out_dir / 'final'}); "
                "nothing to resume"
                if done
                else f"{self.checkpoints}: no checkpoint to resume from"
            )
        checkpoint.check_resumable(saved, self.config, self.identity)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = Progress(**saved["progress"])
        self.average = saved.get("average")
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"])
        checkpoint.restore_rng(saved["rng"], self.ctx, self.config.seed, self.state.step)
        if self.main:
            logger.info(
                "resuming from %s: epoch %d, step %d",
                saved["path"],
                min(self.state.epoch, self.config.epochs),
                self.state.step,
            )

    # -- the run -------------------------------------------------------------------------
    def run(
        self, resume: bool = False, data_files: dict[str, str | None] | None = None
    ) -> TrainResult:
        """Start (or resume) and train the remaining epochs; the final model is saved."""
        if resume:
            self.resume()
        else:
            self.start(data_files)
        if self.ctx.enabled:
            # The encoder's pooler never gets a gradient: DDP must look for unused parameters.
            self.net = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if self.main:
            purge_step = self.state.step + 1 if resume else None
            self.writer = _tensorboard_writer(self.out_dir, purge_step)
            history = "".join(json.dumps(r) + "\n" for r in self.state.history)
            atomic_write_text(self.out_dir / METRICS_FILE, history)
        while self.state.epoch <= self.config.epochs:
            record = self.train_epoch()
            self.end_epoch(record)
        return self.finish()

    def train_epoch(self) -> dict[str, Any]:
        """The optimizer steps of the current epoch (from where it stands); its record."""
        config, state, ctx = self.config, self.state, self.ctx
        epoch = state.epoch
        self.model.train()
        batches = epoch_batches(
            self.lengths, self.step_size, epoch_rng(config.seed, epoch), config.length_bucketing
        )
        started = time.perf_counter() - state.epoch_seconds
        bar = tqdm(
            total=len(self.train_data),
            initial=sum(len(b) for b in batches[: state.position]),
            unit="sent",
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not (self.progress and self.main),
        )
        for index in range(state.position, len(batches)):
            step_batch = batches[index]
            shares = step_shares(step_batch, ctx.rank, ctx.world_size, config.grad_accumulation)
            work = [self.micro_batches(chunk, epoch) for chunk in shares if len(chunk)]
            weight = 1.0
            if not work:
                # A short last step batch left this process nothing; a pass that counts zero
                # keeps it in step with the others (every process must join each all-reduce).
                work, weight = [self.micro_batches(step_batch[:1], epoch)], 0.0
            loss_value = self.step(work, weight)
            state.step += 1
            state.position = index + 1
            state.epoch_loss += loss_value
            bar.update(len(step_batch))
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if self.writer is not None:
                self.writer.add_scalar("train/loss", loss_value, state.step)
                self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], state.step)
            every = config.checkpoint_every
            if every and state.step % every == 0 and state.position < len(batches):
                state.epoch_seconds = time.perf_counter() - started
                self.save_checkpoint()
        bar.close()
        return {
            "epoch": epoch,
            "step": state.step,
            "train_loss": state.epoch_loss / len(batches),
            "train_seconds": round(time.perf_counter() - started, 2),
        }

    def step(self, work: Sequence[MicroBatch], weight: float = 1.0) -> float:
        """One optimizer step over this process's micro-batches; the step batch's mean loss.

        Each micro-batch's loss is divided by the sample counts of the whole step batch
        (summed over processes), so the accumulated gradients add up to the step batch's mean
        loss gradient. DDP averages gradients over processes, hence the factor ``world_size``.
        """
        ctx = self.ctx
        counts = [int(weight > 0) * sum(w.entity_count for w in work)]
        counts.append(int(weight > 0) * sum(w.relation_count for w in work))
        if ctx.enabled:
            counts = ctx.all_reduce_sum(torch.tensor(counts, device=ctx.device)).tolist()
        entity_count, relation_count = counts
        total = torch.zeros((), device=ctx.device)
        for i, micro in enumerate(work):
            last = i == len(work) - 1
            # Gradients are all-reduced once per step, in the last micro-batch's backward pass.
            no_sync = self.net.no_sync() if ctx.enabled and not last else contextlib.nullcontext()
            with no_sync:
                batch = micro.batch.to(ctx.device)
                with self.autocast():
                    logits = self.net(batch)
                loss = spert_loss(*logits, batch, entity_count, relation_count)
                if self.config.rdrop_alpha > 0:
                    # R-Drop: a second pass under other dropout masks; both passes' mean loss
                    # plus their predictions' divergence.
                    with self.autocast():
                        second = self.net(batch)
                    loss = 0.5 * (loss + spert_loss(*second, batch, entity_count, relation_count))
                    loss = loss + self.config.rdrop_alpha * rdrop_divergence(
                        logits, second, entity_count, relation_count
                    )
                loss = loss * weight
                (loss * ctx.world_size).backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return ctx.all_reduce_sum(total).item()

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Evaluate on the dev set when due (keeping the best model), log the epoch's record
        and write a checkpoint; the run moves on to the next epoch."""
        config, state = self.config, self.state
        epoch = record["epoch"]
        if config.average_last_epochs > 1 and epoch > config.epochs - config.average_last_epochs:
            self.update_average(last=epoch == config.epochs)
        if self.ema is not None and epoch == config.epochs:
            self.ema.copy_to(self.model)  # the final model is the average (evaluated, saved)
        if self.dev_data and (config.eval_every_epoch or epoch == config.epochs):
            # With ema_decay the averaged weights are evaluated and kept as the best model;
            # training goes on with the model's own.
            ema = self.ema
            with ema.applied(self.model) if ema is not None else contextlib.nullcontext():
                dev_metrics = self.evaluate(self.dev_data)
                score = relation_f1(dev_metrics)
                record["dev"] = dev_metrics
                record["dev_summary"] = {
                    "entity_micro_f1": summarize(dev_metrics)["entity_micro_f1"],
                    "relation_strict_micro_f1": score,
                }
                if self.writer is not None:
                    for name, value in record["dev_summary"].items():
                        self.writer.add_scalar(f"dev/{name}", value, state.step)
                if score > state.best_score:
                    state.best_score, state.best_epoch, state.best_dev = score, epoch, dev_metrics
                    if self.main:
                        self.spert.save(self.out_dir / "best")
                        self._write_card(self.out_dir / "best", dev_metrics)
        record = _plain(record)
        state.history.append(record)
        if self.main:
            with (self.out_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            summary = record.get("dev_summary", {})
            logger.info("epoch %d: loss %.4f %s", epoch, record["train_loss"], summary)
        state.epoch, state.position, state.epoch_loss, state.epoch_seconds = epoch + 1, 0, 0.0, 0.0
        self.save_checkpoint()

    @torch.no_grad()
    def update_average(self, last: bool) -> None:
        """Add the current weights to the running mean; after the last epoch, the model takes
        the mean (what is evaluated and saved as final)."""
        weights = self.model.state_dict()
        self.state.averaged += 1
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in weights.items()}
        else:
            for name, mean in self.average.items():
                if mean.is_floating_point():
                    mean += (weights[name] - mean) / self.state.averaged
        if last:
            self.model.load_state_dict(self.average)

    def evaluate(self, dev_data: Sequence[Sentence]) -> dict[str, Any]:
        """Dev metrics; with several processes, each predicts a share and all gather them."""
        ctx = self.ctx
        mine = distributed.shard(dev_data, ctx.rank, ctx.world_size)
        # Document context comes from the whole dev set, not from a process's share of it.
        contexts = self.spert.document_contexts(dev_data)
        if contexts is not None:
            contexts = distributed.shard(contexts, ctx.rank, ctx.world_size)
        predicted = self.spert.predict(mine, contexts=contexts)
        predictions = distributed.unshard(ctx.all_gather(predicted))
        return evaluate(dev_data, predictions, self.spert.types)

    def save_checkpoint(self) -> None:
        """A resumable checkpoint of where the run stands (rank 0 writes it)."""
        if self.config.keep_checkpoints == 0:
            return
        rng = self.ctx.all_gather(checkpoint.rng_state(self.ctx.device))  # every rank's dropout
        if self.main:
            payload = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "average": self.average,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rng,
                "progress": _plain(asdict(self.state)),
                "config": self.config.to_dict(),
                **self.identity,
            }
            checkpoint.save_checkpoint(
                self.checkpoints, self.state.step, payload, self.config.keep_checkpoints
            )

    def calibrate_saved(self) -> None:
        """``config.calibrate``: fit the calibration of OUT/final (and OUT/best) on the dev
        set and store it with each (as ``spert calibrate`` does)."""
        if not self.dev_data:
            logger.warning("calibrate: no dev set to calibrate on; the models stay uncalibrated")
            return
        name = _dev_data_name(checkpoint.read_run_info(self.out_dir))
        for folder in ("final", "best"):
            path = self.out_dir / folder
            if not path.is_dir():
                continue
            if folder == "final":
                model = self.spert
            else:
                model = SpERT.load(path, device=self.ctx.device, calibration=False)
            calibration = calibrate(
                model, self.dev_data, data_name=name, thresholds=self.config.calibrate_thresholds
            )
            write_calibration(path, calibration)
            self._write_card(path, None)  # its limits name the calibrated thresholds
            if folder == "final":
                self.spert.calibration = calibration
            relations = calibration.metrics.get("relations_strict", {})
            logger.info(
                "calibrated %s on %s: relation ECE %s -> %s, strict micro F1 %s -> %s",
                path,
                name,
                relations.get("ece_before"),
                relations.get("ece_after"),
                relations.get("micro_f1_default"),
                relations.get("micro_f1_tuned"),
            )

    def _write_card(self, model_dir: Path, dev_metrics: dict[str, Any] | None) -> None:
        """The model card of a saved model: the run's record and its dev metrics, if any."""
        run = checkpoint.read_run_info(self.out_dir)
        evaluations = {"dev": (_dev_data_name(run), dev_metrics)} if dev_metrics else None
        write_model_card(model_dir, run, evaluations)

    def finish(self) -> TrainResult:
        """Save the final model; checkpoints have no more use (they are several times the
        model's size, which adds up in sweeps)."""
        if self.main:
            self.spert.save(self.out_dir / "final")
            last = self.state.history[-1] if self.state.history else {}
            self._write_card(self.out_dir / "final", last.get("dev"))
            checkpoint.remove_checkpoints(self.checkpoints)
            if self.config.calibrate:
                self.calibrate_saved()
        if self.writer is not None:
            self.writer.close()
        self.model.eval()
        state = self.state
        return TrainResult(self.spert, state.best_epoch, state.best_dev, state.history)


def _dev_data_name(run: dict[str, Any] | None) -> str:
    return (run or {}).get("dev") or "dev set"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types (a checkpoint loads with ``weights_only``)."""
    return json.loads(json.dumps(value))


def _tensorboard_writer(out_dir: Path, purge_step: int | None = None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    # Resuming: events the interrupted run logged after its checkpoint are dropped.
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge_step)
