"""Resumable training checkpoints: one file per checkpoint, written atomically, last K kept.

``OUT/checkpoints/step_00000420.pt`` holds everything needed to continue a run exactly where
it stopped: model (encoder included), optimizer, scheduler, every process's random number
generator states, the epoch and the position in it, the best dev score and the history.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import torch

from spert.config import SpertConfig
from spert.data import atomic_write_text

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
    for stale in directory.glob(".step_*.tmp-*"):  # left by a crash during an earlier write
        stale.unlink(missing_ok=True)
    path = checkpoint_path(directory, step)
    tmp = directory / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with tmp.open("wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "step": step, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(directory)
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
        for stale in directory.glob(".step_*.tmp-*"):
            stale.unlink(missing_ok=True)
        if not any(directory.iterdir()):
            directory.rmdir()
    return len(found)


def write_run_info(
    out_dir: str | Path, data_files: dict[str, str | None], config: SpertConfig
) -> None:
    """Record a run's data files (absolute paths) and options in ``out_dir/run.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {k: str(Path(v).resolve()) if v else None for k, v in data_files.items()}
    atomic_write_text(
        out_dir / RUN_FILE, json.dumps({**info, "config": config.to_dict()}, indent=2)
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


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
