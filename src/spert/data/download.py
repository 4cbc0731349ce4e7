"""Download the benchmark datasets (CoNLL04, SciERC, ADE) from the original SpERT location.

``download("conll04", Path("data"))`` fetches ``BASE/conll04/conll04_train.json`` etc. into
``data/conll04/``. Every file is downloaded to a temporary file beside its destination,
verified (valid JSON, every record valid against the types file, the known sentence counts),
and only then renamed into place; files already present and valid are not downloaded again.
The base URL is, in order: the ``base_url`` argument, the ``SPERT_DATASETS_URL`` environment
variable, :data:`DEFAULT_BASE_URL`.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spert.data.dataset import DataError, Types, check_record
from spert.utils import atomic_write
from spert.version import __version__

DEFAULT_BASE_URL = "http://lavis.cs.hs-rm.de/storage/spert/public/datasets"
ENV_VAR = "SPERT_DATASETS_URL"
TIMEOUT = 60.0  # seconds, per connection attempt and per read
CHUNK = 64 * 1024


class DownloadError(DataError):
    """A dataset file that could not be downloaded or failed verification."""


@dataclass(frozen=True)
class DatasetSpec:
    """The files of a dataset and the sentence counts they must have (where known)."""

    name: str
    types_file: str
    data_files: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    folds: int = 0  # ADE: k-fold splits whose train + test must hold the same sentences

    @property
    def files(self) -> tuple[str, ...]:
        return (self.types_file, *self.data_files)


def _splits(name: str, counts: tuple[int, int, int, int]) -> DatasetSpec:
    files = tuple(f"{name}_{split}.json" for split in ("train", "dev", "test", "train_dev"))
    return DatasetSpec(name, f"{name}_types.json", files, dict(zip(files, counts)))


DATASETS: dict[str, DatasetSpec] = {
    # Sentence counts from ../shared/datasets/README.md (the files SpERT was evaluated on).
    "conll04": _splits("conll04", (922, 231, 288, 1153)),
    "scierc": _splits("scierc", (1861, 275, 551, 2136)),
    "ade": DatasetSpec(
        "ade",
        "ade_types.json",
        tuple(f"ade_split_{k}_{split}.json" for k in range(10) for split in ("train", "test"))
        + ("ade_full.json",),
        folds=10,
    ),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else ``$SPERT_DATASETS_URL``, else the original SpERT location."""
    url = base_url or os.environ.get(ENV_VAR) or DEFAULT_BASE_URL
    return url.rstrip("/")


@dataclass
class DownloadResult:
    """Where a dataset's files are, and which of them this call downloaded."""

    paths: list[Path]
    downloaded: list[Path]
    present: list[Path]


def download(
    name: str,
    directory: Path,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT,
) -> list[Path]:
    """Download and verify dataset ``name`` into ``directory/name/``; return its file paths."""
    return fetch(name, directory, base_url, progress, timeout).paths


def fetch(
    name: str,
    directory: Path,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT,
) -> DownloadResult:
    """As :func:`download`, also telling which files were downloaded and which were present."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    base = f"{resolve_base_url(base_url)}/{name}"
    target = Path(directory) / name
    target.mkdir(parents=True, exist_ok=True)
    say: Callable[[str], None] = _say if progress else (lambda message: None)

    result = DownloadResult([], [], [])
    types: Types | None = None
    sizes: dict[str, int] = {}

    def verify(data: bytes, file_name: str) -> None:
        nonlocal types
        if file_name == spec.types_file:
            types = _verify_types(data, file_name)
        else:
            assert types is not None
            sizes[file_name] = _verify_dataset(data, file_name, types, spec.counts.get(file_name))

    for file_name in spec.files:
        path = target / file_name
        url = f"{base}/{file_name}"
        if path.is_file():
            try:
                verify(path.read_bytes(), file_name)
            except DataError as e:
                say(f"{path}: present but invalid ({e}); downloading it again")
            else:
                say(f"{path}: already present and valid, not downloaded")
                result.present.append(path)
                result.paths.append(path)
                continue
        _download_file(url, path, lambda data, f=file_name: verify(data, f), progress, timeout)
        result.downloaded.append(path)
        result.paths.append(path)
    if spec.folds:
        _check_folds(spec, sizes)
    return result


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _parse_json(data: bytes, file_name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DownloadError(f"{file_name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DownloadError(
            f"{file_name}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None


def _verify_types(data: bytes, file_name: str) -> Types:
    return Types.from_dict(_parse_json(data, file_name), file_name)


def _verify_dataset(data: bytes, file_name: str, types: Types, expected: int | None) -> int:
    """Check every record against the types; return the number of sentences."""
    raw = _parse_json(data, file_name)
    if not isinstance(raw, list):
        raise DownloadError(f"{file_name}: a dataset must be a JSON list of sentences")
    problems = []
    for index, record in enumerate(raw):
        problems.extend(check_record(record, index, file_name, types)[1])
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DownloadError(f"{problems[0]}{more}")
    if expected is not None and len(raw) != expected:
        raise DownloadError(f"{file_name}: {len(raw)} sentences, expected {expected}")
    return len(raw)


def _check_folds(spec: DatasetSpec, sizes: dict[str, int]) -> None:
    """Every fold's train + test must hold the same sentences (all of ``*_full.json``)."""
    totals = {
        k: sizes[f"{spec.name}_split_{k}_train.json"] + sizes[f"{spec.name}_split_{k}_test.json"]
        for k in range(spec.folds)
    }
    full = sizes.get(f"{spec.name}_full.json")
    expected = full if full is not None else totals[0]
    wrong = {k: n for k, n in totals.items() if n != expected}
    if wrong:
        k, n = next(iter(wrong.items()))
        raise DownloadError(
            f"{spec.name}: split {k} holds {n} sentences (train + test), expected {expected}"
        )


def _download_file(
    url: str,
    path: Path,
    verify: Callable[[bytes], None],
    progress: bool,
    timeout: float,
) -> None:
    """Stream ``url`` to a temporary file beside ``path``, verify it, then rename it."""
    from tqdm import tqdm

    def download(tmp: Path) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": f"spert/{__version__}"})
        with tmp.open("wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    received = 0
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=path.name,
                        disable=not progress,
                        file=sys.stderr,
                    ) as bar:
                        while chunk := response.read(CHUNK):
                            out.write(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as e:
                raise DownloadError(f"{url}: HTTP error {e.code} {e.reason}") from None
            except urllib.error.URLError as e:
                raise DownloadError(f"{url}: cannot connect ({_reason(e.reason)})") from None
            except TimeoutError:
                raise DownloadError(f"{url}: timed out after {timeout:g} s") from None
            except (OSError, ValueError, http.client.HTTPException) as e:
                # a connection reset, an incomplete read, a malformed URL
                raise DownloadError(f"{url}: download failed ({_reason(e)})") from None
        if total is not None and received != total:
            raise DownloadError(f"{url}: incomplete download ({received} of {total} bytes)")
        try:
            verify(tmp.read_bytes())
        except DataError as e:
            raise DownloadError(f"{url}: verification failed, nothing written: {e}") from None

    atomic_write(path, download)


def _reason(reason: object) -> str:
    text = str(reason) or type(reason).__name__
    return " ".join(text.split())
