"""spert.utils: the commands' shared set-up (one logging set-up, one error-to-exit handler) and
atomic folder replacement (an interruption at any step leaves the old or the new folder)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from spert.cli import main as cli_main
from spert.cli.common import CliError
from spert.config import ConfigError
from spert.data import DataError
from spert.model.directory import META_FILE, ModelError, find_model_dir
from spert.serve.cli import main as serve_main
from spert.utils import (
    STALE_TMP_SECONDS,
    UserError,
    atomic_replace_dir,
    exit_on_user_error,
    machine_description,
    recover_replaced_dir,
    setup_logging,
    usable_cpus,
)


@pytest.mark.parametrize("error", [DataError, ConfigError, ModelError, CliError, FileNotFoundError])
def test_user_errors_exit_with_one_line(error: type[Exception]) -> None:
    with pytest.raises(SystemExit) as exited, exit_on_user_error():
        raise error("data.json, line 3: bad offset")
    assert exited.value.code == "spert: error: data.json, line 3: bad offset"


def test_interrupt_exits_and_bugs_keep_their_traceback() -> None:
    assert all(issubclass(e, UserError) for e in (DataError, ConfigError, ModelError, CliError))
    with pytest.raises(SystemExit) as exited, exit_on_user_error():
        raise KeyboardInterrupt
    assert exited.value.code == "spert: interrupted"
    with pytest.raises(ZeroDivisionError), exit_on_user_error():
        raise ZeroDivisionError("a bug, not bad input")


@pytest.mark.parametrize(
    "run",
    [
        lambda model: cli_main(["predict", "--model", model, "--input", "in.json", "--out", "o"]),
        lambda model: serve_main(["--model", model]),
    ],
    ids=["spert", "spert serve"],
)
def test_cli_and_server_share_the_error_exit(run, tmp_path) -> None:
    with pytest.raises(SystemExit) as exited:
        run(str(tmp_path))
    expected = (
        f"spert: error: {tmp_path}: not a SpERT model directory (no spert.json, nor ensemble.json)"
    )
    assert exited.value.code == expected


def test_setup_logging_quiets_transformers() -> None:
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        setup_logging()
        assert hf_logging.get_verbosity() == logging.ERROR
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(verbosity)
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def _folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def test_failed_fill_leaves_the_old_folder(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", a="old")

    def fill(tmp: Path) -> None:
        (tmp / "a").write_text("new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_replace_dir(out, fill)
    assert _contents(out) == {"a": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_aside_copy_is_recovered_after_a_crash_between_the_renames(tmp_path: Path) -> None:
    # A crash after the old folder was renamed aside and before the new one was renamed in.
    aside = _folder(tmp_path / ".out.old-1a2b3c4d", a="old")
    out = tmp_path / "out"
    assert recover_replaced_dir(out) == out
    assert _contents(out) == {"a": "old"} and not aside.exists()
    # The next replacement starts by the same recovery, then swaps as usual.
    _folder(tmp_path / ".out.old-99999999", a="older")
    crashed = tmp_path / ".out.tmp-5e6f7a8b"  # a crashed run's unfinished copy, hours old
    crashed.mkdir()
    os.utime(crashed, (time.time() - 2 * STALE_TMP_SECONDS,) * 2)
    atomic_replace_dir(out, lambda tmp: (tmp / "a").write_text("new"))
    assert _contents(out) == {"a": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_crash_after_the_swap_leaves_the_new_folder(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", a="new")
    _folder(tmp_path / ".out.old-1a2b3c4d", a="old")  # not yet deleted
    recover_replaced_dir(out)
    assert _contents(out) == {"a": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_concurrent_writes_new_folder_is_left_alone(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", a="old")
    filling = _folder(tmp_path / ".out.tmp-0f0f0f0f", a="being written")  # fresh: still filled
    atomic_replace_dir(out, lambda tmp: (tmp / "a").write_text("new"))
    assert _contents(out) == {"a": "new"} and _contents(filling) == {"a": "being written"}


def test_a_model_directory_cut_off_between_the_renames_loads(tmp_path: Path) -> None:
    aside = _folder(tmp_path / ".final.old-1a2b3c4d", **{META_FILE: "{}"})
    assert find_model_dir(tmp_path / "final") == tmp_path / "final"
    assert (tmp_path / "final" / META_FILE).is_file() and not aside.exists()


def test_machine_description_names_the_cpu_model_and_bf16_support(tmp_path: Path) -> None:
    cpus = usable_cpus()
    count = f"({cpus} CPU{'s' if cpus != 1 else ''})"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("\nprocessor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t: fpu avx512_bf16\n")
    assert machine_description(cpuinfo) == f"AMD EPYC 9R14, AVX512-BF16 {count}"
    # The first processor's fields count.
    cpuinfo.write_text("model name\t: Intel Xeon\nflags\t: amx_bf16\n\nmodel name\t: x\n")
    assert machine_description(cpuinfo) == f"Intel Xeon, AMX {count}"
    cpuinfo.write_text("model name\t: Old CPU\nflags\t: fpu avx2\n")
    assert machine_description(cpuinfo) == f"Old CPU {count}"
    # aarch64 names no model: implementer and part do (here a Neoverse V1, AWS Graviton3).
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    cpuinfo.write_text(arm)
    assert machine_description(cpuinfo) == f"ARM implementer 0x41 part 0xd40, BF16 {count}"
    # Without a readable /proc/cpuinfo (macOS, Windows): what the platform module knows.
    fallback = machine_description(tmp_path / "missing")
    assert fallback.endswith(count) and len(fallback) > len(count) + 1
