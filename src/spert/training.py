"""Training as in the SpERT paper: sampled spans and pairs, CE + BCE, AdamW, linear schedule.

One process trains alone; processes launched by ``torchrun`` train one model together with
DistributedDataParallel. Either way the run writes resumable checkpoints
(:mod:`spert.checkpoint`) and ``train(..., resume=True)`` continues an interrupted run exactly.

Batches: one optimizer step sees ``train_batch_size x processes x grad_accumulation``
sentences (the *step batch*). Every process computes the same list of step batches and trains
on its share of each, in ``grad_accumulation`` micro-batches of at most ``train_batch_size``.
The loss is averaged over the samples of the whole step batch, so N processes compute the
gradient one process would compute for the same step batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from spert import checkpoint, distributed
from spert.api import SpERT
from spert.candidates import Batch, TrainingSample, collate, sample_training
from spert.config import ConfigError, SpertConfig
from spert.data import Sentence, Types, atomic_write_text
from spert.distributed import DistributedContext
from spert.encoding import EncodedSentence
from spert.evaluation import evaluate

logger = logging.getLogger(__name__)

ADAM_BETAS = (0.9, 0.999)

#: Options that may differ when a run is resumed: they do not change what is computed (the
#: step batch, train_batch_size x processes x grad_accumulation, is checked on its own).
RESUMABLE_CHANGES = frozenset(
    {"checkpoint_every", "keep_checkpoints", "eval_batch_size", "train_batch_size"}
    | {"grad_accumulation"}
)


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
    entity_count: int | None = None,
    relation_count: int | None = None,
) -> torch.Tensor:
    """Cross-entropy over entity types + binary cross-entropy over relation types.

    Each term is averaged over the batch's samples; no class weights. ``entity_count`` and
    ``relation_count`` (entity samples, relation samples x relation types) replace the batch's
    own counts as the divisors: a micro-batch then contributes its share of the mean loss of
    a larger batch it is part of (gradient accumulation, data-parallel training).
    """
    assert batch.entity_labels is not None and batch.relation_labels is not None
    if entity_count is None:
        loss = nn.functional.cross_entropy(entity_logits.float(), batch.entity_labels)
    else:
        loss = nn.functional.cross_entropy(
            entity_logits.float(), batch.entity_labels, reduction="sum"
        ) / max(entity_count, 1)
    if relation_logits.numel():
        if relation_count is None:
            bce = nn.functional.binary_cross_entropy_with_logits(
                relation_logits.float(), batch.relation_labels
            )
        else:
            bce = nn.functional.binary_cross_entropy_with_logits(
                relation_logits.float(), batch.relation_labels, reduction="sum"
            ) / max(relation_count, 1)
        loss = loss + bce
    else:
        # A zero that keeps the relation head in the graph: data-parallel training needs a
        # gradient (here 0) for every parameter from every process.
        loss = loss + relation_logits.float().sum()
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
    """AdamW; no weight decay on biases and layer norms; with ``head_lr``, the parameters
    outside the encoder form groups of their own at that learning rate."""
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm", "layernorm")
    split_heads = config.head_lr > 0 and config.head_lr != config.lr
    # (head, decays) -> parameters; encoder (or all) groups first, decayed before plain, as
    # in versions without head_lr, so their checkpoints' optimizer states still fit.
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {
        key: [] for key in ((False, True), (False, False), (True, True), (True, False))
    }
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_head = split_heads and not name.startswith("encoder.")
            groups[is_head, not any(nd in name for nd in no_decay)].append(param)
    param_groups = [
        {
            "params": params,
            "weight_decay": config.weight_decay if decays else 0.0,
            "lr": config.head_lr if is_head else config.lr,
        }
        for (is_head, decays), params in groups.items()
        if params
    ]
    # The fused kernel is ~4x faster than the per-tensor loop on a CPU.
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=ADAM_BETAS, eps=1e-8, fused=True)


def epoch_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, length_bucketing: bool
) -> list[np.ndarray]:
    """One epoch's batches of sentence indices, in random order.

    With ``length_bucketing``, a random permutation is cut into pools of 50 batches, each pool
    is sorted by length and cut into batches: batches hold sentences of similar length (little
    padding) while every epoch still mixes them differently.
    """
    order = rng.permutation(len(lengths))
    if length_bucketing:
        pool = 50 * batch_size
        lengths_arr = np.asarray(lengths)
        order = np.concatenate(
            [
                part[np.argsort(lengths_arr[part], kind="stable")]
                for part in np.split(order, range(pool, len(order), pool))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if length_bucketing:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random stream that orders epoch ``epoch``'s batches (the same on every process)."""
    return np.random.default_rng([seed, epoch])


class SampleStreams:
    """Independent random streams for negative sampling, one per (epoch, sentence).

    A sentence's samples depend only on the seed, the epoch and the sentence's index: not on
    its batch, on the process that trains it or on how many processes there are. So N
    processes draw exactly the samples one process draws, and a resumed run those of an
    uninterrupted one. (Counter-based Philox: switching streams is a cheap state change.)
    """

    def __init__(self, seed: int) -> None:
        key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
        self._bits = np.random.Philox(key=key)
        self._initial = self._bits.state
        self._generator = np.random.Generator(self._bits)

    def __call__(self, epoch: int, index: int) -> np.random.Generator:
        """The stream of sentence ``index`` in ``epoch`` (one generator object, reset)."""
        state = dict(self._initial)
        state["state"] = {
            "counter": np.array([0, 0, epoch, index], dtype=np.uint64),
            "key": self._initial["state"]["key"],
        }
        self._bits.state = state
        return self._generator


def step_shares(step_batch: np.ndarray, rank: int, world_size: int, accumulation: int) -> list:
    """Process ``rank``'s micro-batches of one step batch (some may be empty in a short last
    batch): the batch is cut into ``world_size x accumulation`` nearly equal parts, in order,
    and each process takes ``accumulation`` consecutive ones."""
    parts = np.array_split(step_batch, world_size * accumulation)
    return parts[rank * accumulation : (rank + 1) * accumulation]


def data_fingerprint(sentences: Sequence[Sentence]) -> str:
    """A hash of the sentences, their annotations and documents (a resumed run must see the
    same data)."""
    digest = hashlib.sha256()
    for s in sentences:
        digest.update(repr((s.tokens, s.entities, s.relations, s.doc_id)).encode("utf-8"))
    return digest.hexdigest()


def relation_f1(metrics: dict[str, Any]) -> float:
    """The model-selection score: relation strict micro F1."""
    return float(metrics["relations_strict"]["micro"]["f1"])


@dataclass
class _Progress:
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


def train(
    config: SpertConfig,
    train_data: Sequence[Sentence],
    types: Types,
    out_dir: str | Path,
    dev_data: Sequence[Sentence] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Train, keep ``out_dir/best`` (dev relation strict micro F1) and ``out_dir/final``.

    Checkpoints go to ``out_dir/checkpoints`` (at each epoch end, and every
    ``config.checkpoint_every`` steps; deleted when the run finishes); ``resume=True``
    continues an interrupted run from the newest one, giving the model an uninterrupted run
    would give. The configuration must be the run's (only the
    options in :data:`RESUMABLE_CHANGES` may differ), and so must the training data.

    Under ``torchrun`` (or in an initialized process group), every process calls this with the
    same arguments; they train one model together, and only rank 0 writes files.
    """
    if not train_data:
        raise ValueError("no training sentences")
    ctx = distributed.setup(device)
    try:
        result = _train(ctx, config, train_data, types, Path(out_dir), dev_data, progress, resume)
    except BaseException:
        if ctx.owns_group:  # the others fail too (torchrun stops them); no goodbye barrier
            torch.distributed.destroy_process_group()
        raise
    ctx.close()
    return result


def _train(
    ctx: DistributedContext,
    config: SpertConfig,
    train_data: Sequence[Sentence],
    types: Types,
    out_dir: Path,
    dev_data: Sequence[Sentence] | None,
    progress: bool,
    resume: bool,
) -> TrainResult:
    main = ctx.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    step_size = config.train_batch_size * ctx.world_size * config.grad_accumulation
    autocast = _autocast(config, ctx.device)
    seed_everything(config.seed)
    spert = SpERT.create(types, config, ctx.device)
    model = spert.model
    encoded = spert.encode(train_data)  # tokenized once; samples are drawn anew each epoch
    lengths = [e.seq_len for e in encoded]

    steps_per_epoch = math.ceil(len(train_data) / step_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(total_steps * config.lr_warmup)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, warmup_steps)
    )
    checkpoints = out_dir / checkpoint.CHECKPOINT_DIR
    identity = {
        "world_size": ctx.world_size,
        "step_batch": step_size,
        "train_sentences": len(train_data),
        "train_fingerprint": data_fingerprint(train_data),
    }
    state = _Progress()
    if resume:
        saved = ctx.broadcast(checkpoint.load_latest(checkpoints) if main else None)
        if saved is None:
            done = (out_dir / "final").is_dir()
            raise checkpoint.CheckpointError(
                f"{out_dir}: the run has finished (see {out_dir / 'final'}); nothing to resume"
                if done
                else f"{checkpoints}: no checkpoint to resume from"
            )
        _check_resumable(saved, config, identity)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = _Progress(**saved["progress"])
        _restore_rng(saved["rng"], ctx, config.seed, state.step)
        if main:
            logger.info(
                "resuming from %s: epoch %d, step %d",
                saved["path"],
                min(state.epoch, config.epochs),
                state.step,
            )
        del saved
    else:
        if main:
            removed = checkpoint.remove_checkpoints(checkpoints)
            if removed:
                logger.warning(
                    "a new run: deleted %d old checkpoint(s) in %s", removed, checkpoints
                )
        if ctx.rank > 0:  # rank 0 keeps the stream seeded above; the others get their own
            torch.manual_seed(distributed.rank_seed(config.seed, ctx.rank))

    net: nn.Module = model
    if ctx.enabled:
        # The encoder's pooler never gets a gradient: DDP must look for unused parameters.
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    writer = _tensorboard_writer(out_dir, state.step + 1 if resume else None) if main else None
    metrics_path = out_dir / "metrics.jsonl"
    if main:
        atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in state.history))
    streams = SampleStreams(config.seed)

    def micro_batch(chunk: np.ndarray, epoch: int) -> _MicroBatch:
        samples = [
            sample_training(train_data[j], encoded[j], types, config, streams(epoch, j))
            for j in chunk
        ]
        return _micro_batch([encoded[j] for j in chunk], samples, spert.pad_token_id)

    def save(progress_now: _Progress) -> None:
        if config.keep_checkpoints == 0:
            return
        rng = ctx.all_gather(_rng_state(ctx.device))  # every rank's dropout stream
        if main:
            payload = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "progress": _plain(asdict(progress_now)),
                "config": config.to_dict(),
                **identity,
            }
            checkpoint.save_checkpoint(
                checkpoints, progress_now.step, payload, config.keep_checkpoints
            )

    for epoch in range(state.epoch, config.epochs + 1):
        model.train()
        batches = epoch_batches(
            lengths, step_size, epoch_rng(config.seed, epoch), config.length_bucketing
        )
        started = time.perf_counter() - state.epoch_seconds
        bar = tqdm(
            total=len(train_data),
            initial=sum(len(b) for b in batches[: state.position]),
            unit="sent",
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not (progress and main),
        )
        for index in range(state.position, len(batches)):
            step_batch = batches[index]
            shares = step_shares(step_batch, ctx.rank, ctx.world_size, config.grad_accumulation)
            work = [micro_batch(chunk, epoch) for chunk in shares if len(chunk)]
            weight = 1.0
            if not work:
                # A short last step batch left this process nothing; a pass that counts zero
                # keeps it in step with the others (every process must join each all-reduce).
                work, weight = [micro_batch(step_batch[:1], epoch)], 0.0
            loss_value = _optimizer_step(
                ctx, net, model, optimizer, scheduler, config, work, weight, autocast
            )
            state.step += 1
            state.position = index + 1
            state.epoch_loss += loss_value
            bar.update(len(batches[index]))
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, state.step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], state.step)
            every = config.checkpoint_every
            if every and state.step % every == 0 and state.position < len(batches):
                state.epoch_seconds = time.perf_counter() - started
                save(state)
        bar.close()
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "train_loss": state.epoch_loss / len(batches),
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if dev_data and (config.eval_every_epoch or epoch == config.epochs):
            dev_metrics = _evaluate(spert, dev_data, ctx)
            record["dev"] = dev_metrics
            score = relation_f1(dev_metrics)
            record["dev_summary"] = {
                "entity_micro_f1": dev_metrics["entities"]["micro"]["f1"],
                "relation_strict_micro_f1": score,
            }
            if writer is not None:
                writer.add_scalar(
                    "dev/entity_micro_f1", dev_metrics["entities"]["micro"]["f1"], state.step
                )
                writer.add_scalar("dev/relation_strict_micro_f1", score, state.step)
            if score > state.best_score:
                state.best_score, state.best_epoch, state.best_dev = score, epoch, dev_metrics
                if main:
                    spert.save(out_dir / "best")
        record = _plain(record)
        state.history.append(record)
        if main:
            with metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            summary = record.get("dev_summary", {})
            logger.info("epoch %d: loss %.4f %s", epoch, record["train_loss"], summary)
        state.epoch, state.position, state.epoch_loss, state.epoch_seconds = epoch + 1, 0, 0.0, 0.0
        save(state)
    if main:
        spert.save(out_dir / "final")
        # Finished: final/ holds the result and checkpoints have no more use (they are several
        # times the model's size, which adds up in sweeps).
        checkpoint.remove_checkpoints(checkpoints)
    if writer is not None:
        writer.close()
    model.eval()
    return TrainResult(spert, state.best_epoch, state.best_dev, state.history)


@dataclass
class _MicroBatch:
    batch: Batch
    entity_count: int  # entity samples
    relation_count: int  # relation samples x relation types (the BCE terms)


def _micro_batch(
    encoded: Sequence[EncodedSentence], samples: Sequence[TrainingSample], pad_token_id: int
) -> _MicroBatch:
    batch = collate(encoded, [s.spans for s in samples], pad_token_id, samples)
    return _MicroBatch(
        batch,
        sum(len(s.entity_labels) for s in samples),
        sum(s.relation_labels.size for s in samples),
    )


def _optimizer_step(
    ctx: DistributedContext,
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: SpertConfig,
    work: Sequence[_MicroBatch],
    weight: float,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> float:
    """One optimizer step over this process's micro-batches; the step batch's mean loss.

    Each micro-batch's loss is divided by the sample counts of the whole step batch (summed
    over processes), so the accumulated gradients add up to the step batch's mean loss
    gradient. DDP averages gradients over processes, hence the factor ``world_size``.
    """
    counts = [int(weight > 0) * sum(w.entity_count for w in work)]
    counts.append(int(weight > 0) * sum(w.relation_count for w in work))
    if ctx.enabled:
        counts = ctx.all_reduce_sum(torch.tensor(counts, device=ctx.device)).tolist()
    entity_count, relation_count = counts
    total = torch.zeros((), device=ctx.device)
    for i, micro in enumerate(work):
        last = i == len(work) - 1
        # Gradients are all-reduced once per step, in the last micro-batch's backward pass.
        no_sync = net.no_sync() if ctx.enabled and not last else contextlib.nullcontext()
        with no_sync:
            batch = micro.batch.to(ctx.device)
            with autocast():
                entity_logits, relation_logits = net(batch)
            loss = spert_loss(entity_logits, relation_logits, batch, entity_count, relation_count)
            loss = loss * weight
            (loss * ctx.world_size).backward()
        total += loss.detach()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return ctx.all_reduce_sum(total).item()


def _evaluate(spert: SpERT, dev_data: Sequence[Sentence], ctx: DistributedContext) -> dict:
    """Dev metrics; with several processes, each predicts a share and all gather them."""
    mine = distributed.shard(dev_data, ctx.rank, ctx.world_size)
    # Document context comes from the whole dev set, not from a process's share of it.
    contexts = spert.document_contexts(dev_data)
    if contexts is not None:
        contexts = distributed.shard(contexts, ctx.rank, ctx.world_size)
    predictions = distributed.unshard(ctx.all_gather(spert.predict(mine, contexts=contexts)))
    return evaluate(dev_data, predictions, spert.types)


def _autocast(
    config: SpertConfig, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The context of the training forward pass: bfloat16 autocast on CUDA with ``bf16``."""
    if not config.bf16:
        return contextlib.nullcontext
    if device.type != "cuda":
        logger.warning("bf16 applies on CUDA only: training in float32 on %s", device)
        return contextlib.nullcontext
    if not torch.cuda.is_bf16_supported():
        raise ConfigError(f"bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support")
    return lambda: torch.autocast("cuda", dtype=torch.bfloat16)


def _check_resumable(saved: dict[str, Any], config: SpertConfig, identity: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint with another configuration or other training data."""
    where = saved.get("path", "checkpoint")
    old, new = saved["config"], config.to_dict()
    changed = [
        f"{name} {new[name]!r} (checkpoint: {old.get(name)!r})"
        for name in new
        if name not in RESUMABLE_CHANGES and old.get(name) != new[name]
    ]
    if changed:
        raise checkpoint.CheckpointError(
            f"{where}: cannot resume with another configuration: {'; '.join(changed)}"
        )
    if saved["step_batch"] != identity["step_batch"]:
        raise checkpoint.CheckpointError(
            f"{where}: the run's step batch was {saved['step_batch']} sentences, now "
            f"{identity['step_batch']} (train_batch_size x processes x grad_accumulation); "
            "keep it to resume"
        )
    if (saved["train_sentences"], saved["train_fingerprint"]) != (
        identity["train_sentences"],
        identity["train_fingerprint"],
    ):
        raise checkpoint.CheckpointError(
            f"{where}: the training data differ from the run's ({saved['train_sentences']} "
            f"sentences then, {identity['train_sentences']} now)"
        )


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random number generator states (only the torch ones drive training)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": {
            "key": numpy_state["state"]["key"].tolist(),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
    }


def _restore_rng(
    states: list[dict[str, Any]], ctx: DistributedContext, seed: int, step: int
) -> None:
    if len(states) != ctx.world_size:
        if ctx.is_main:
            logger.warning(
                "the checkpoint comes from %d processes, this run has %d: dropout draws anew "
                "(the result will not equal an uninterrupted run's)",
                len(states),
                ctx.world_size,
            )
        torch.manual_seed(distributed.rank_seed(seed, ctx.rank, step))
        return
    state = states[ctx.rank]
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], ctx.device)
    random.setstate(_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": np.asarray(numpy_state["key"], dtype=np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )


def _tuples(value: Any) -> Any:
    """Lists back to tuples (random.setstate wants its nested tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


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
