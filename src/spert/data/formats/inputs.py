"""Command-line inputs of the importers: files, folders or glob patterns, expanded to files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from spert.data.dataset import DataError


def expand_inputs(inputs: Iterable[str | os.PathLike[str]], suffixes: Sequence[str]) -> list[Path]:
    """The files named by ``inputs``, in order, each once.

    A file is taken as it is (whatever its suffix); a folder gives every file below it whose
    name ends with one of ``suffixes``, sorted; anything else is a glob pattern (``**``
    allowed) whose matches are taken the same way. An input that names nothing is a
    :class:`DataError`.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    def add_folder(folder: Path) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name.endswith(tuple(suffixes)):
                add(path)

    for item in inputs:
        path = Path(item)
        if path.is_file():
            add(path)
        elif path.is_dir():
            add_folder(path)
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            if not matches:
                raise DataError(f"{item}: no such file or folder, and no file matches it")
            for match in matches:
                found = Path(match)
                if found.is_dir():
                    add_folder(found)
                elif found.name.endswith(tuple(suffixes)):
                    add(found)
    return out
