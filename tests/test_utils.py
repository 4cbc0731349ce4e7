"""Atomic folder replacement: an interruption at any step leaves the old or the new folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from spert.utils import atomic_replace_dir, recover_replaced_dir


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
    (tmp_path / ".out.tmp-5e6f7a8b").mkdir()  # a crashed run's unfinished copy
    atomic_replace_dir(out, lambda tmp: (tmp / "a").write_text("new"))
    assert _contents(out) == {"a": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_crash_after_the_swap_leaves_the_new_folder(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", a="new")
    _folder(tmp_path / ".out.old-1a2b3c4d", a="old")  # not yet deleted
    recover_replaced_dir(out)
    assert _contents(out) == {"a": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
