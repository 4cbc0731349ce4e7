"""Small shared pieces: atomic file writes, duration formatting, the machine's description,
signal handling, the commands' logging set-up and error exits."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class UserError(Exception):
    """A problem the user can fix (a data file, an option, a model directory): the commands
    report its message as one line, without a traceback."""


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    fsync: bool = False,
    suffix: str = ".tmp",
) -> Path:
    """Have ``write`` fill a temporary file beside ``path``, then rename it over ``path``.

    A crash at any moment leaves either the old file or the complete new one, never a partial
    one; with ``fsync`` the data reach the disk before the rename (and the rename after it).
    The file is readable by everyone (0644), like a file written with ``open``; ``suffix``
    ends the temporary file's name (some writers pick the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; results are for everyone
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_directory(path.parent)
    return path


class AtomicFile:
    """A text file written under a temporary name beside ``path``: :meth:`commit` renames it
    over ``path`` (flushed to disk first), :meth:`discard` deletes it. For output written as
    it is produced; :func:`atomic_write` for output written at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self.tmp = Path(name)
        self.file = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.tmp, 0o644)  # mkstemp makes owner-only files
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8, line ends as given) atomically; see :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""), fsync)


def atomic_replace_dir(path: str | os.PathLike[str], fill: Callable[[Path], None]) -> Path:
    """Have ``fill`` write a new directory beside ``path``, then put it in place of ``path``.

    The swap takes two renames (a directory cannot be renamed over a non-empty one): the old
    directory is renamed aside to ``.NAME.old-XXXXXXXX``, the new one renamed in, the old one
    deleted; Ctrl-C and SIGTERM wait until that is done. A crash between the two renames
    leaves only the aside copy, which :func:`recover_replaced_dir` renames back: it runs first
    here (the next write of ``path``) and where ``path`` is read as a whole (loading a model
    directory), so ``path`` is, or is recovered as, either the old directory or the complete
    new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_replaced_dir(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        fill(tmp)
        with signals_held():
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                path.rename(old)
            tmp.rename(path)
            fsync_directory(path.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)  # a concurrent recovery may be at it
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


#: A new directory (``.NAME.tmp-*``) untouched for this long is left over from a crash, not
#: one that a concurrent write of the same path is still filling.
STALE_TMP_SECONDS = 3600.0


def recover_replaced_dir(path: str | os.PathLike[str], clean: bool = True) -> Path:
    """Finish what a crashed :func:`atomic_replace_dir` of ``path`` left: without ``path``, its
    aside copy (``.NAME.old-*``) is renamed back. With ``clean`` (writers; readers pass False),
    the aside copies of a finished swap and the new directories (``.NAME.tmp-*``) untouched for
    :data:`STALE_TMP_SECONDS` are deleted."""
    path = Path(path)
    if not path.parent.is_dir():
        return path
    aside = sorted(path.parent.glob(f".{glob_escape(path.name)}.old-*"), key=_mtime)
    if aside and not path.exists():
        try:
            aside.pop().rename(path)  # the newest aside copy was the last complete one
        except FileNotFoundError:  # a concurrent recovery was first
            pass
    if not clean:
        return path
    cutoff = time.time() - STALE_TMP_SECONDS
    unfinished = [
        p for p in path.parent.glob(f".{glob_escape(path.name)}.tmp-*") if _mtime(p) < cutoff
    ]
    for leftover in aside + unfinished:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
    return path


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be
    opened."""
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


def format_duration(seconds: float) -> str:
    """A duration for logs and reports: ``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: cpuinfo flags of bfloat16 instructions, the most capable first.
_BF16_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("bf16", "BF16"))  # bf16: ARM


def machine_description(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU model, its bfloat16 instructions and the CPUs this process may use, e.g. ``AMD
    EPYC, AVX512-BF16 (2 CPUs)``: timings (and bfloat16 kernels) differ between machines, so
    results that hold a time name the machine they were measured on."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip():
                fields.setdefault(key.strip(), value.strip())  # the first processor's
    arm = (
        f"ARM implementer {fields['CPU implementer']} part {fields['CPU part']}"
        if "CPU implementer" in fields and "CPU part" in fields
        else ""
    )
    model = (
        fields.get("model name")  # x86
        or fields.get("Model")  # Raspberry Pi and other boards
        or arm  # other ARM (e.g. AWS Graviton)
        or fields.get("cpu")  # POWER
        or platform.processor()
        or platform.machine()
        or "unknown CPU"
    )
    flags = set((fields.get("flags") or fields.get("Features", "")).split())
    bf16 = next((f", {name}" for flag, name in _BF16_FLAGS if flag in flags), "")
    cpus = usable_cpus()
    return f"{model}{bf16} ({cpus} CPU{'s' if cpus != 1 else ''})"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while the output is being finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def quiet_transformers() -> None:
    """Only errors from transformers, and none of its progress bars: its warnings about unused
    weights and the like are expected here (the heads are not the encoder's)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def setup_logging(process_id: bool = False, tag: str = "") -> None:
    """The commands' logging: INFO lines with time and level (and the process id, or a
    ``[tag]``, where the logs of several processes interleave); transformers quiet."""
    pid = " [%(process)d]" if process_id else ""
    label = f" [{tag}]" if tag else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s{pid}{label} %(message)s"
    )
    quiet_transformers()


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Within the block, a UserError or a missing file ends the process with its message as
    one line (``spert: error: ...``, status 1), and Ctrl-C with ``spert: interrupted``."""
    try:
        yield
    except (UserError, FileNotFoundError) as e:
        sys.exit(f"spert: error: {e}")
    except KeyboardInterrupt:
        sys.exit("spert: interrupted")
