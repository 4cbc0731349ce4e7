"""Resumable training checkpoints: one file per checkpoint, written atomically, last K kept.

``OUT/checkpoints/step_00000420.pt`` holds everything needed to continue a run exactly where
it stopped: model (encoder included), optimizer, scheduler, the weight averages
(``average_last_epochs``, ``ema_decay``), every process's random number generator states, the
epoch and the position in it, the best dev score and the history.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spert.config import SpertConfig, config_differences
from spert.data import Sentence
from spert.training import distributed
from spert.training.distributed import DistributedContext
from spert.utils import atomic_write, atomic_write_text
from spert.version import __version__

logger = logging.getLogger(__name__)

#: Version of the checkpoint contents; a checkpoint of another version is refused.
CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
#: A run's data files and options, written by ``spert train`` for ``spert train --resume``.
RUN_FILE = "run.json"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that does not fit the run that wants to resume from it."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``step``, then delete all but the newest ``keep``.

    The file is written under a temporary name in the same folder, flushed to disk and renamed,
    so a crash at any moment leaves either the complete new file or none (and the older
    checkpoints untouched).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale(directory)  # left by a crash during an earlier write
    path = checkpoint_path(directory, step)
    payload = {"format": CHECKPOINT_FORMAT, "step": step, **state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp), fsync=True)
    for _, old in list_checkpoints(directory)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def load_latest(directory: str | Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory`` (tensors on the CPU), or None.

    A file that cannot be read (truncated, corrupted, of another format) is skipped with a
    warning and the one before it is tried.
    """
    for step, path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable file: fall back to the one before
            logger.warning("skipping unreadable checkpoint %s: %s", path, _one_line(e))
            continue
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            logger.warning("skipping checkpoint %s: not a spert checkpoint of this version", path)
            continue
        if state.get("step") != step:
            logger.warning("skipping checkpoint %s: it holds step %s", path, state.get("step"))
            continue
        state["path"] = str(path)
        return state
    return None


def remove_checkpoints(directory: str | Path) -> int:
    """Delete the checkpoint files in ``directory`` (and it, if nothing else is left in it);
    the number of checkpoints deleted."""
    directory = Path(directory)
    found = list_checkpoints(directory)
    for _, path in found:
        path.unlink(missing_ok=True)
    if directory.is_dir():
        _remove_stale(directory)
        if not any(directory.iterdir()):
            directory.rmdir()
    return len(found)


def write_run_info(
    out_dir: str | Path, data_files: dict[str, str | None], config: SpertConfig
) -> None:
    """The training run's record, ``out_dir/run.json``: its data files (absolute paths), every
    option (the model directory keeps only the model's) and the spert version."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {k: str(Path(v).resolve()) if v else None for k, v in data_files.items()}
    atomic_write_text(
        out_dir / RUN_FILE,
        json.dumps({**info, "config": config.to_dict(), "spert_version": __version__}, indent=2),
    )


def read_run_info(out_dir: str | Path) -> dict[str, Any] | None:
    """What :func:`write_run_info` recorded in ``out_dir``, or None if nothing was."""
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise CheckpointError(f"{path}: not a spert run description")
    return info


def _remove_stale(directory: Path) -> None:
    """Delete temporary files of checkpoint writes that a crash interrupted."""
    for stale in directory.glob(".step_*"):
        stale.unlink(missing_ok=True)


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


# -- what a resumed run must match -------------------------------------------------------

#: Options that may differ when a run is resumed: they do not change what is computed (the
#: step batch, train_batch_size x processes x grad_accumulation, is checked on its own).
RESUMABLE_CHANGES = frozenset(
    {"checkpoint_every", "keep_checkpoints", "eval_batch_size", "train_batch_size"}
    | {"grad_accumulation", "calibrate", "calibrate_thresholds"}
)


def data_fingerprint(sentences: Sequence[Sentence]) -> str:
    """A hash of the sentences, their annotations and documents (a resumed run must see the
    same data)."""
    digest = hashlib.sha256()
    for s in sentences:
        digest.update(repr((s.tokens, s.entities, s.relations, s.doc_id)).encode("utf-8"))
    return digest.hexdigest()


def check_resumable(saved: dict[str, Any], config: SpertConfig, identity: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint with another configuration or other training data."""
    where = saved.get("path", "checkpoint")
    old, new = saved["config"], config.to_dict()
    changed = [
        f"{name} {new.get(name)!r} (checkpoint: {old.get(name)!r})"
        for name in config_differences(old, config, ignore=RESUMABLE_CHANGES)
    ]
    if changed:
        raise CheckpointError(
            f"{where}: cannot resume with another configuration: {'; '.join(changed)}"
        )
    if saved["step_batch"] != identity["step_batch"]:
        raise CheckpointError(
            f"{where}: the run's step batch was {saved['step_batch']} sentences, now "
            f"{identity['step_batch']} (train_batch_size x processes x grad_accumulation); "
            "keep it to resume"
        )
    if (saved["train_sentences"], saved["train_fingerprint"]) != (
        identity["train_sentences"],
        identity["train_fingerprint"],
    ):
        raise CheckpointError(
            f"{where}: the training data differ from the run's ({saved['train_sentences']} "
            f"sentences then, {identity['train_sentences']} now)"
        )


# -- random number generator states ------------------------------------------------------


def rng_state(device: torch.device) -> dict[str, Any]:
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


def restore_rng(
    states: list[dict[str, Any]], ctx: DistributedContext, seed: int, step: int
) -> None:
    """Restore this process's states of :func:`rng_state` (gathered from every process); from
    another number of processes, dropout draws anew from a seed of (seed, rank, step)."""
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
