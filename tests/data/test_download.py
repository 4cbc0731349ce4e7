"""Dataset download, against a local HTTP server (127.0.0.1 only) serving the reference copies."""

from __future__ import annotations

import argparse
import functools
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SHARED as SHARED_DIR

from spert.cli.data import register as add_parser
from spert.data import DataError
from spert.data.download import (
    DATASETS,
    DEFAULT_BASE_URL,
    ENV_VAR,
    DownloadError,
    download,
    fetch,
    resolve_base_url,
)

SHARED = SHARED_DIR / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no reference datasets at {SHARED}")


class Server:
    """A static file server on 127.0.0.1 that records the paths requested."""

    def __init__(self, root: Path, handler: type[SimpleHTTPRequestHandler] | None = None) -> None:
        self.requests: list[str] = []
        requests = self.requests
        base = handler or SimpleHTTPRequestHandler

        class Handler(base):  # type: ignore[valid-type, misc]
            def do_GET(self) -> None:  # noqa: N802
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.httpd.timeout = 10
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture()
def shared_server() -> Iterator[Server]:
    if not SHARED.is_dir():
        pytest.skip(f"no reference datasets at {SHARED}")
    with Server(SHARED) as server:
        yield server


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.startswith("."))


@needs_shared
@pytest.mark.parametrize("name", ["conll04", "scierc"])
def test_download_matches_originals(shared_server: Server, tmp_path: Path, name: str) -> None:
    paths = download(name, tmp_path, base_url=shared_server.url, progress=False)
    assert [p.name for p in paths] == list(DATASETS[name].files)
    for path in paths:
        assert path.parent == tmp_path / name
        assert path.read_bytes() == (SHARED / name / path.name).read_bytes()
        assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(shared_server.requests) == sorted(f"/{name}/{p.name}" for p in paths)
    assert leftovers(tmp_path) == []


@needs_shared
def test_second_call_downloads_nothing(
    shared_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = fetch("conll04", tmp_path, base_url=shared_server.url, progress=False)
    assert len(first.downloaded) == 5 and first.present == []
    n_requests = len(shared_server.requests)
    second = fetch("conll04", tmp_path, base_url=shared_server.url, progress=True)
    assert len(shared_server.requests) == n_requests
    assert second.downloaded == [] and second.paths == first.paths == second.present
    assert capsys.readouterr().err.count("already present and valid, not downloaded") == 5

    # A damaged file is downloaded again, and only that one.
    (tmp_path / "conll04" / "conll04_dev.json").write_text("[{")
    third = fetch("conll04", tmp_path, base_url=shared_server.url, progress=False)
    assert [p.name for p in third.downloaded] == ["conll04_dev.json"]
    assert shared_server.requests[n_requests:] == ["/conll04/conll04_dev.json"]
    assert (tmp_path / "conll04" / "conll04_dev.json").read_bytes() == (
        SHARED / "conll04" / "conll04_dev.json"
    ).read_bytes()


def serve_copy(root: Path, name: str, replace: dict[str, bytes]) -> Path:
    """A copy of a reference dataset under ``root/name`` with some files replaced."""
    if not (SHARED / name).is_dir():
        pytest.skip(f"no reference datasets at {SHARED}")
    (root / name).mkdir(parents=True)
    for file_name in DATASETS[name].files:
        data = replace.get(file_name, (SHARED / name / file_name).read_bytes())
        (root / name / file_name).write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda data: data[: len(data) // 2], r"invalid JSON at line 1, column \d+"),
        (
            lambda data: data.replace(b'"type": "Peop"', b'"type": "Person"', 1),
            r"conll04_train\.json, record \d+ \(orig_id \d+\), field 'entities\[\d\]\.type': "
            r"unknown entity type 'Person'",
        ),
        (
            lambda data: json.dumps(json.loads(data)[:-1]).encode(),
            r"conll04_train\.json: 921 sentences, expected 922",
        ),
    ],
    ids=["truncated", "unknown-type", "count"],
)
def test_bad_file_is_an_error_and_leaves_nothing(tmp_path: Path, make_bad, message: str) -> None:
    train = SHARED / "conll04" / "conll04_train.json"
    if not train.is_file():
        pytest.skip(f"no reference datasets at {SHARED}")
    root = serve_copy(tmp_path / "www", "conll04", {train.name: make_bad(train.read_bytes())})
    out = tmp_path / "out"
    with Server(root) as server, pytest.raises(DownloadError) as info:
        download("conll04", out, base_url=server.url, progress=False)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{server.url}/conll04/conll04_train.json: verification failed")
    assert re.search(message, text), text
    assert not (out / "conll04" / "conll04_train.json").exists()
    assert (out / "conll04" / "conll04_types.json").is_file()  # verified before the failure
    assert leftovers(out) == []


@needs_shared
def test_environment_variable(
    shared_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, shared_server.url + "/")
    assert resolve_base_url() == shared_server.url
    assert resolve_base_url("http://127.0.0.1:1/x/") == "http://127.0.0.1:1/x"
    download("conll04", tmp_path, progress=False)
    assert len(shared_server.requests) == 5
    monkeypatch.delenv(ENV_VAR)
    assert resolve_base_url() == DEFAULT_BASE_URL


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'conll05'; choose one of conll04"):
        download("conll05", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_http_404_names_the_url(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    with Server(tmp_path / "www") as server, pytest.raises(DownloadError) as info:
        download("scierc", tmp_path / "out", base_url=server.url, progress=False)
    assert (
        str(info.value) == f"{server.url}/scierc/scierc_types.json: HTTP error 404 File not found"
    )
    assert leftovers(tmp_path / "out") == []
    assert list((tmp_path / "out" / "scierc").iterdir()) == []


def test_connection_refused_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as s:  # a free port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DownloadError, match=rf"^{url}/ade/ade_types\.json: cannot connect \("):
        download("ade", tmp_path, base_url=url, progress=False, timeout=5)


def test_incomplete_response(tmp_path: Path) -> None:
    class Short(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"entities"')
            self.close_connection = True

    (tmp_path / "www").mkdir()
    with Server(tmp_path / "www", Short) as server, pytest.raises(DownloadError) as info:
        download("conll04", tmp_path / "out", base_url=server.url, progress=False)
    assert str(info.value).startswith(f"{server.url}/conll04/conll04_types.json: ")
    assert "\n" not in str(info.value)
    assert list((tmp_path / "out" / "conll04").iterdir()) == []


def ade_files(sizes: list[tuple[int, int]], full: int) -> dict[str, bytes]:
    types = {
        "entities": {"Adverse-Effect": {}, "Drug": {}},
        "relations": {"Adverse-Effect": {"symmetric": False}},
    }
    record = {
        "tokens": ["aspirin", "caused", "rash"],
        "entities": [
            {"type": "Drug", "start": 0, "end": 1},
            {"type": "Adverse-Effect", "start": 2, "end": 3},
        ],
        "relations": [{"type": "Adverse-Effect", "head": 1, "tail": 0}],
    }
    files = {"ade_types.json": json.dumps(types).encode()}
    for k, (train, test) in enumerate(sizes):
        files[f"ade_split_{k}_train.json"] = json.dumps([record] * train).encode()
        files[f"ade_split_{k}_test.json"] = json.dumps([record] * test).encode()
    files["ade_full.json"] = json.dumps([record] * full).encode()
    return files


def test_ade_folds(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "ade").mkdir(parents=True)
    for name, data in ade_files([(9, 1)] * 10, 10).items():
        (root / "ade" / name).write_bytes(data)
    with Server(root) as server:
        paths = download("ade", tmp_path / "ok", base_url=server.url, progress=False)
        assert len(paths) == 22 and len(server.requests) == 22
        assert {p.name for p in paths} == {p.name for p in (root / "ade").iterdir()}

        (root / "ade" / "ade_split_3_test.json").write_bytes(
            ade_files([(9, 2)], 10)["ade_split_0_test.json"]
        )
        with pytest.raises(DownloadError, match="ade: split 3 holds 11 sentences .*expected 10"):
            download("ade", tmp_path / "bad", base_url=server.url, progress=False)


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="spert")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


@needs_shared
def test_cli(shared_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "datasets",
        "download",
        "conll04",
        "--dir",
        str(tmp_path),
        "--base-url",
        shared_server.url,
    ]
    run_cli([*argv, "--quiet"])
    assert f"conll04: downloaded 5 file(s), 0 already present, in {tmp_path / 'conll04'}" in (
        capsys.readouterr().out
    )
    run_cli(argv)
    captured = capsys.readouterr()
    assert "all 5 files already present and valid" in captured.out
    assert "conll04_train.json: already present and valid, not downloaded" in captured.err
    with pytest.raises(SystemExit):
        run_cli(["datasets", "download", "conll05", "--dir", str(tmp_path)])
    assert "invalid choice: 'conll05'" in capsys.readouterr().err
