"""The HTTP service (``spert serve``): a real server in a subprocess on a free loopback port
(happy path, limits, malformed input, concurrency, event loop, graceful shutdown), plus
in-process tests of the micro-batcher and of error handling."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from spert.api import SpERT
from spert.cli.serve import register as add_parser
from spert.config import SpertConfig
from spert.data import RelationType, Types
from spert.serve import ServeSettings
from spert.serve.app import WORKER_HEADER, create_app
from spert.serve.batching import MicroBatcher
from spert.serve.cli import settings_from_args

TEXTS = [
    "Mary works for Acme Corp in Boston. She lives in Cambridge.",
    "John Wilkes Booth, who assassinated President Lincoln, was an actor.",
    "",
    "The Ministry of Health in Paris hired Dr. Smith last year.",
]
#: A token that makes the test server's model sleep (see SERVER_SCRIPT).
SLOW = "SLOWDOWN"
SLOW_SECONDS = 4.0
#: The real server entry point, with a model made slow for sentences holding SLOW: a stand-in
#: for a long model run, to test that the event loop and shutdown do not wait on the model. It is
#: run as a file, so that the worker processes of --workers (spawned) import it too, as
#: __mp_main__, and get the same slow model; it patches where the model is loaded, as importing
#: torch up front would slow down the start of every worker. A slow run appends the pid of its
#: process to the file $SPERT_TEST_SLOW_MARK; with $SPERT_TEST_FAIL_WORKERS, the workers (not the
#: parent's check of the model) cannot load the model.
SERVER_SCRIPT = f"""
import os, sys, time
import spert.serve.app as app
import spert.serve.cli as cli

_load_app = app.load_app

def load_app(*args, **kwargs):
    if os.environ.get("SPERT_TEST_FAIL_WORKERS") and os.environ.get("SPERT_SERVE_WORKER"):
        raise FileNotFoundError("cannot load the model in a worker (on purpose)")
    from spert.api import SpERT

    _predict = SpERT.predict

    def predict(self, sentences, *args, **kwargs):
        if any({SLOW!r} in list(s) for s in sentences):
            mark = os.environ.get("SPERT_TEST_SLOW_MARK")
            if mark:
                with open(mark, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
            time.sleep({SLOW_SECONDS})
        return _predict(self, sentences, *args, **kwargs)

    SpERT.predict = predict
    return _load_app(*args, **kwargs)

app.load_app = load_app

if __name__ == "__main__":
    cli.main(sys.argv[1:])
"""
LIMITS = {"max_texts": 8, "max_chars": 2000, "max_body_bytes": 20_000}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(bert_dir: Path, **config: Any) -> SpERT:
    """An untrained tiny model that keeps a few entities (the "none" class is pushed up so
    that not every span is one, which would make relation scoring slow)."""
    types = Types(
        entities=("Peop", "Org", "Loc"),
        relations=(RelationType("Work_For"), RelationType("Live_In"), RelationType("Spouse", True)),
    )
    torch.manual_seed(0)
    config = SpertConfig(encoder=str(bert_dir), max_span_size=4, **config)
    model = SpERT.create(types, config, "cpu")
    with torch.no_grad():
        model.model.entity_classifier.bias[0] = 1.5
    return model


@pytest.fixture(scope="module")
def model_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "model"
    make_model(bert_dir).save(path)
    return path


@pytest.fixture(scope="module")
def model(model_dir: Path) -> SpERT:
    return SpERT.load(model_dir, device="cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_server_script(folder: Path) -> Path:
    path = folder / "spert_test_server.py"
    path.write_text(SERVER_SCRIPT, encoding="utf-8")
    return path


class Server:
    """``spert serve`` in a subprocess on a free loopback port."""

    def __init__(self, model_dir: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.slow_mark = log.parent / "slow-runs.txt"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "SPERT_TEST_SLOW_MARK": str(self.slow_mark),
        }
        self._log_file = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(write_server_script(log.parent)), "--model", str(model_dir)]
            + ["--port", str(self.port), "--no-access-log", *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start:\n{self.output()}")
            time.sleep(0.2)

    def slow_runs(self) -> list[int]:
        """The pids of the processes that have started a slow model run."""
        if not self.slow_mark.exists():
            return []
        return [int(line) for line in self.slow_mark.read_text().split()]

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


def limit_args(**overrides: Any) -> list[str]:
    values = {**LIMITS, "max_wait_ms": 100, **overrides}
    return [x for k, v in values.items() for x in ("--" + k.replace("_", "-"), str(v))]


@pytest.fixture(scope="module")
def _servers(model_dir: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for srv in started:
        srv.stop()


@pytest.fixture()
def server(
    _servers: list[Server], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Server:
    """One server for the module; a new one if a test (the shutdown test) has stopped it."""
    if not _servers or _servers[-1].process.poll() is not None:
        log = tmp_path_factory.mktemp("serve-log") / "server.log"
        # A long max wait makes batching concurrent requests certain, not timing-dependent.
        _servers.append(Server(model_dir, log, *limit_args()))
    return _servers[-1]


def post(server: Server, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + "/extract", json=body, timeout=60, **kwargs)


def without_scores(doc: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """A document dict with its scores taken out (they may differ in the last digits when
    sentences are batched with others: padding changes the float summation order)."""
    doc = json.loads(json.dumps(doc))
    scores = []
    for sentence in doc["sentences"]:
        for item in sentence["entities"] + sentence["relations"]:
            scores.append(item.pop("score"))
    return doc, scores


def assert_same_documents(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g_doc, g_scores = without_scores(g)
        e_doc, e_scores = without_scores(e)
        assert g_doc == e_doc
        assert g_scores == pytest.approx(e_scores, abs=1e-4)


# -- the real server -----------------------------------------------------------------------
def test_health_info_and_docs(server: Server, model_dir: Path) -> None:
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers[WORKER_HEADER].endswith(f":{server.process.pid}")
    info = httpx.get(server.url + "/info").json()
    assert info["entity_types"] == ["Peop", "Org", "Loc"]
    assert info["relation_types"][2] == {"name": "Spouse", "symmetric": True}
    assert info["encoder"].endswith("tiny-bert-cased")
    assert info["spert_version"] == __import__("spert").__version__
    assert info["pid"] == server.process.pid
    assert info["limits"] == LIMITS
    assert info["torch_threads"] == 1  # OMP_NUM_THREADS=1 in the server's environment
    assert httpx.get(server.url + "/docs").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/extract", "/health", "/info"} <= set(paths)


def test_extract_texts(server: Server, model: SpERT) -> None:
    r = post(server, {"texts": TEXTS})
    assert r.status_code == 200, r.text
    documents = r.json()["documents"]
    assert [d["text"] for d in documents] == TEXTS
    assert len(documents[0]["sentences"]) == 2 and documents[2]["sentences"] == []
    assert_same_documents(documents, [d.to_dict() for d in model.extract(TEXTS)])
    assert any(d["sentences"] and d["sentences"][0]["entities"] for d in documents)


def test_extract_pretokenized_sentences(server: Server, model: SpERT) -> None:
    sentences = [t.split() for t in TEXTS if t]
    r = post(server, {"sentences": sentences})
    assert r.status_code == 200, r.text
    documents = r.json()["documents"]
    assert [d["sentences"][0]["tokens"] for d in documents] == sentences
    assert_same_documents(documents, [d.to_dict() for d in model.extract(sentences)])


def test_empty_request(server: Server) -> None:
    r = post(server, {"texts": []})
    assert r.status_code == 200 and r.json() == {"documents": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": ["a"] * 9}, "too many texts: 9 > max_texts 8"),
        ({"sentences": [["a"]] * 9}, "too many sentences: 9 > max_texts 8"),
        ({"texts": ["ok", "x" * 2001]}, "texts[1] too long: 2001 characters > max_chars 2000"),
        ({"sentences": [["abcd"] * 401]}, "sentences[0] too long: 2004 characters > max_chars"),
    ],
)
def test_limits_422(server: Server, body: Any, message: str) -> None:
    r = post(server, body)
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_body_limit_413(server: Server) -> None:
    body = json.dumps({"texts": ["word " * 300] * 20}).encode()
    assert len(body) > LIMITS["max_body_bytes"]
    headers = {"content-type": "application/json"}
    r = httpx.post(server.url + "/extract", content=body, headers=headers)
    assert r.status_code == 413
    assert r.json()["detail"] == (
        f"request body too large: {len(body)} bytes > max_body_bytes {LIMITS['max_body_bytes']}"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is checked while reading
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    r = httpx.post(server.url + "/extract", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert "max_body_bytes 20000" in r.json()["detail"]
    assert post(server, {"texts": ["Mary works."]}).status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"texts": ["unfinished"', "JSON decode error"),
        (b"[]", "valid dictionary"),
        (b'{"texts": "not a list"}', "valid list"),
        (b'{"texts": [1, 2]}', "valid string"),
        (b'{"text": ["typo"]}', "Extra inputs"),
        (b"{}", "give either 'texts'"),
        (b'{"texts": ["a"], "sentences": [["a"]]}', "give either 'texts'"),
        (b'{"sentences": [["Mary", ""]]}', "sentences[0]: token 1 must be a non-empty string"),
        (b'{"texts": ["ok", "\\ud800"]}', "texts[1]: unpaired surrogates"),
    ],
)
def test_malformed_input_422(server: Server, content: bytes, message: str) -> None:
    headers = {"content-type": "application/json"}
    r = httpx.post(server.url + "/extract", content=content, headers=headers)
    assert r.status_code == 422
    assert message in json.dumps(r.json()["detail"])


def test_concurrent_requests_batched_without_mixups(server: Server, model: SpERT) -> None:
    words = "Mary John Acme Boston Paris Smith works lives hired in for the".split()
    requests = [
        {"texts": [" ".join(words[(i + k) % len(words)] for k in range(3 + i % 7)) + "."]}
        if i % 3
        else {"sentences": [words[i % 5 : i % 5 + 4 + i % 4], words[::-1][: 2 + i % 6]]}
        for i in range(24)
    ]
    before = httpx.get(server.url + "/info").json()["batching"]
    barrier = threading.Barrier(len(requests))

    def send(body: dict[str, Any]) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return client.post(server.url + "/extract", json=body)

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(send, requests))
    for body, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        inputs = body.get("texts") or body["sentences"]
        assert_same_documents(r.json()["documents"], [d.to_dict() for d in model.extract(inputs)])
    after = httpx.get(server.url + "/info").json()["batching"]
    runs = after["runs"] - before["runs"]
    assert after["requests"] - before["requests"] == len(requests)
    # Requests that arrive together share model runs.
    assert 1 <= runs <= len(requests) // 2
    assert after["largest_run"] > 2


def test_event_loop_free_while_model_runs(server: Server) -> None:
    result: dict[str, Any] = {}

    def slow_request() -> None:
        started = time.monotonic()
        result["response"] = post(server, {"sentences": [[SLOW, "works", "."]]})
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/info").json()["batching"]["pending_sentences"] == 0:
            assert time.monotonic() < deadline, "the slow request never reached the model"
            time.sleep(0.05)
        # The model thread now sleeps for SLOW_SECONDS: the loop must still answer at once.
        started = time.monotonic()
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
        health_seconds = time.monotonic() - started
        assert post(server, {"texts": []}).status_code == 200
        assert thread.is_alive()
    finally:
        thread.join()
    assert result["response"].status_code == 200
    assert result["seconds"] >= SLOW_SECONDS
    assert health_seconds < SLOW_SECONDS / 4


def test_graceful_shutdown_finishes_request_in_flight(server: Server) -> None:
    """SIGTERM while a request is in the model: it completes, then the server exits 0.
    (It stops the module's server: a later test gets a new one.)"""
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["response"] = post(server, {"sentences": [[SLOW, "works", "."], ["Mary"]]})

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/info").json()["batching"]["pending_sentences"] == 0:
            assert time.monotonic() < deadline, "the slow request never reached the model"
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
    finally:
        thread.join()
    response = result["response"]
    assert response.status_code == 200, response.text
    assert [d["sentences"][0]["tokens"] for d in response.json()["documents"]] == [
        [SLOW, "works", "."],
        ["Mary"],
    ]
    assert server.process.wait(60) == 0, server.output()
    assert "Finished server process" in server.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)


# -- several worker processes (--workers 2) ----------------------------------------------
@pytest.fixture(scope="module")
def workers_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve-workers") / "server.log"
    srv = Server(model_dir, log, *limit_args(max_wait_ms=20), "--workers", "2")
    yield srv
    srv.stop()


def worker_pid(response: httpx.Response) -> int:
    return int(response.headers[WORKER_HEADER].rsplit(":", 1)[1])


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_share_the_port_without_mixups(workers_server: Server, model: SpERT) -> None:
    """Concurrent requests, each on a new connection, reach both workers, and each gets the
    results for its own input."""
    srv = workers_server
    words = "Mary John Acme Boston Paris Smith works lives hired in for the".split()
    requests = [
        {"sentences": [[words[i % 12], words[(i * 5 + 1) % 12], words[(i * 7 + 2) % 12], str(i)]]}
        if i % 2
        else {"texts": [f"{words[i % 12]} {words[(i + 3) % 12]} {i} in {words[(i * 5) % 12]}."]}
        for i in range(16)
    ]
    expected = [
        [d.to_dict() for d in model.extract(body.get("texts") or body["sentences"])]
        for body in requests
    ]

    def send(body: dict[str, Any]) -> httpx.Response:
        barrier.wait()
        return httpx.post(srv.url + "/extract", json=body, timeout=60)  # a new connection

    seen: set[int] = set()
    for _ in range(20):  # the kernel picks the worker for each connection: try a few rounds
        barrier = threading.Barrier(len(requests))
        with ThreadPoolExecutor(len(requests)) as pool:
            responses = list(pool.map(send, requests))
        for r, documents in zip(responses, expected):
            assert r.status_code == 200, r.text
            assert_same_documents(r.json()["documents"], documents)
            seen.add(worker_pid(r))
        if len(seen) > 1:
            break
    assert len(seen) == 2, f"all requests went to worker {seen}"
    assert srv.process.pid not in seen
    assert all(parent_pid(pid) == srv.process.pid for pid in seen)
    for _ in range(20):
        r = httpx.get(srv.url + "/info")
        info = r.json()
        assert info["pid"] == worker_pid(r) and info["pid"] in seen
        # The default: the usable CPUs shared out among the workers.
        assert info["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_a_burst_of_connections_spreads_over_the_workers(workers_server: Server) -> None:
    """32 connections opened at once (as a load balancer or a pool of clients does) are spread
    over both workers, each getting at least 6; one shared socket would hand the whole
    burst to whichever worker wakes first."""
    # Both workers listening first (a worker still loading its model takes no connection).
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only worker(s) {seen} answer"
        seen.add(worker_pid(httpx.get(workers_server.url + "/health", timeout=30)))
    host, port = workers_server.url.removeprefix("http://").rsplit(":", 1)
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    connections = [socket.create_connection((host, int(port)), timeout=30) for _ in range(32)]
    try:
        for sock in connections:
            sock.sendall(request)
        workers = []
        for sock in connections:
            with sock.makefile("rb") as answer:
                headers = {}
                for line in iter(answer.readline, b"\r\n"):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
            workers.append(headers[WORKER_HEADER])
    finally:
        for sock in connections:
            sock.close()
    counts = sorted(Counter(workers).values())
    assert len(counts) == 2 and counts[0] >= 6, f"connections per worker: {Counter(workers)}"


def test_workers_graceful_shutdown(workers_server: Server) -> None:
    """SIGTERM to the parent while a worker runs the model: the request completes, every worker
    finishes, and the parent exits 0. (It stops the workers server.)"""
    srv = workers_server
    workers = [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", srv.output())]
    assert len(workers) == 2, srv.output()
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["response"] = post(srv, {"sentences": [[SLOW, "works", "."], ["Mary"]]})

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.slow_runs():
            assert time.monotonic() < deadline, "the slow request never reached the model"
            time.sleep(0.05)
        srv.process.send_signal(signal.SIGTERM)
    finally:
        thread.join()
    response = result["response"]
    assert response.status_code == 200, response.text
    assert worker_pid(response) == srv.slow_runs()[0]
    assert [d["sentences"][0]["tokens"] for d in response.json()["documents"]] == [
        [SLOW, "works", "."],
        ["Mary"],
    ]
    assert srv.process.wait(60) == 0, srv.output()
    output = srv.output()
    for pid in workers:
        assert f"Finished server process [{pid}]" in output
        with pytest.raises(ProcessLookupError):  # no worker left behind
            os.kill(pid, 0)
    assert "leaked" not in output and "Traceback" not in output, output
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/health", timeout=5)


def test_worker_that_cannot_start_stops_the_server(model_dir: Path, tmp_path: Path) -> None:
    """The model directory is checked before the workers start; a worker that fails anyway
    (here: SpERT.load fails in the workers only) stops the server with a one-line error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPERT_TEST_FAIL_WORKERS": "1"}
    args = ["--model", str(model_dir), "--port", str(free_port()), "--workers", "2"]
    done = subprocess.run(
        [sys.executable, str(write_server_script(tmp_path)), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 1, done.stderr
    assert "could not start: cannot load the model in a worker (on purpose)" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"spert: error: worker process\(es\) [\d, ]+ failed to start .*", last)


# -- in process ----------------------------------------------------------------------------
def test_error_gets_500_with_error_id_and_server_goes_on(
    model: SpERT, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    real_predict = model.predict

    def predict(sentences: Any, *args: Any, **kwargs: Any) -> Any:
        if any("BOOM" in list(s) for s in sentences):
            raise RuntimeError("model exploded")
        return real_predict(sentences, *args, **kwargs)

    monkeypatch.setattr(model, "predict", predict)
    app = create_app(model, ServeSettings())
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="spert.serve"):
        r = client.post("/extract", json={"sentences": [["BOOM", "!"]]})
        assert r.status_code == 500
        error_id = r.json()["error_id"]
        assert r.json() == {"detail": "internal error", "error_id": error_id}
        record = next(rec for rec in caplog.records if error_id in rec.getMessage())
        assert f"error id {error_id}" in record.getMessage()
        assert record.exc_info and "model exploded" in str(record.exc_info[1])
        r = client.post("/extract", json={"texts": ["Mary works."]})
        assert r.status_code == 200
        assert r.json()["documents"][0]["sentences"][0]["tokens"] == ["Mary", "works", "."]


def test_failing_request_does_not_fail_its_batch_mates(
    model: SpERT, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_predict = model.predict
    calls: list[int] = []

    def predict(sentences: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(sentences))
        if any("BOOM" in list(s) for s in sentences):
            raise RuntimeError("model exploded")
        return real_predict(sentences, *args, **kwargs)

    monkeypatch.setattr(model, "predict", predict)

    async def run() -> list[Any]:
        batcher = MicroBatcher(model, ServeSettings(max_wait_ms=500))
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.extract([["Mary", "works"]]),
                batcher.extract([["BOOM"]]),
                batcher.extract(["John lives in Paris. Mary works."]),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    good, bad, good2 = asyncio.run(run())
    assert calls[0] == 4  # one joint run, then each request alone
    assert isinstance(bad, RuntimeError)
    assert [d.to_dict() for d in good] == [d.to_dict() for d in model.extract([["Mary", "works"]])]
    assert len(good2[0].sentences) == 2


def test_micro_batcher_splits_big_requests_and_keeps_order(model: SpERT) -> None:
    texts = [f"Mary works in Paris {'and Boston ' * (i % 3)}. John lives there." for i in range(7)]
    sentences = [["Acme", "hired", "Smith"], ["Paris"]]

    async def run() -> tuple[list[Any], list[Any], dict[str, Any]]:
        batcher = MicroBatcher(model, ServeSettings(max_batch_sentences=4, max_wait_ms=50))
        await batcher.start()
        try:
            a, b = await asyncio.gather(batcher.extract(texts), batcher.extract(sentences))
            return a, b, batcher.stats()
        finally:
            await batcher.close()

    a, b, stats = asyncio.run(run())
    expected_a, expected_b = model.extract(texts), model.extract(sentences)
    assert_same_documents([d.to_dict() for d in a], [d.to_dict() for d in expected_a])
    assert_same_documents([d.to_dict() for d in b], [d.to_dict() for d in expected_b])
    n = sum(len(d.sentences) for d in expected_a + expected_b)
    assert n > 8 and stats["requests"] == 2 and stats["sentences"] == n
    assert stats["largest_run"] == 4 and stats["runs"] >= -(-n // 4)
    assert stats["pending_sentences"] == 0


def test_micro_batcher_survives_cancelled_requests(model: SpERT) -> None:
    async def run() -> list[Any]:
        batcher = MicroBatcher(model, ServeSettings(max_batch_sentences=2, max_wait_ms=20))
        await batcher.start()
        try:
            # 200 sentences, 100 runs: cancelled after its first run, long before its last
            # (a fixed sleep let a fast machine finish all of them first).
            doomed = asyncio.create_task(batcher.extract(["Mary works. John lives. " * 100]))
            while batcher.stats()["runs"] == 0:
                await asyncio.sleep(0.001)
            doomed.cancel()
            kept = await batcher.extract(["Mary works."])
            return [kept, batcher.stats()]
        finally:
            await batcher.close()

    kept, stats = asyncio.run(run())
    assert kept[0].sentences[0].tokens == ["Mary", "works", "."]
    assert stats["pending_sentences"] == 0
    assert stats["requests"] == 1 and stats["sentences"] < 201  # the cancelled one was dropped


def test_busy_server_gets_503(model: SpERT) -> None:
    # The first request always goes in; it waits 200 ms for batch mates, so the others,
    # arriving meanwhile, find 2 sentences pending, over the limit of 1.
    app = create_app(model, ServeSettings(max_pending_sentences=1, max_wait_ms=200))

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                responses = await asyncio.gather(
                    *(client.post("/extract", json={"texts": ["A b. C d."]}) for _ in range(4))
                )
        return [r.status_code for r in responses]

    codes = asyncio.run(run())
    assert codes.count(200) == 1 and codes.count(503) == 3


# -- command line --------------------------------------------------------------------------
def test_cli_parser_and_settings() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    argv = ["serve", "--port", "9000", "--max-texts", "3", "--threads", "2", "--no-access-log"]
    settings = settings_from_args(parser.parse_args(argv))
    assert settings == ServeSettings(port=9000, max_texts=3, threads=2, access_log=False)
    args = parser.parse_args(["serve"])
    assert settings_from_args(args) == ServeSettings()
    assert args.model is None and args.ray is False and args.replicas == 1
    args = parser.parse_args(["serve", "--workers", "2"])
    assert settings_from_args(args) == ServeSettings(workers=2)
    args = parser.parse_args(["serve", "--runtime", "torch-bf16"])
    assert settings_from_args(args) == ServeSettings(runtime="torch-bf16")
    args = parser.parse_args(["serve", "--ray", "--replicas", "2", "--num-cpus", "0.5"])
    assert (args.ray, args.replicas, args.num_cpus, args.num_gpus) == (True, 2, 0.5, 0.0)


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spert.serve.cli import main

    monkeypatch.setenv("SPERT_HOME", str(tmp_path / "home"))
    cases = [
        (["--max-texts", "0"], "spert: error: max_texts must be at least 1, got 0"),
        (["--max-wait-ms", "-1"], "spert: error: max_wait_ms and shutdown_timeout_s"),
        (["--threads", "0"], "spert: error: threads must be at least 1, got 0"),
        (["--workers", "0"], "spert: error: workers must be at least 1, got 0"),
        (
            ["--label-studio", "--runtime", "onnx", "--project-dir", str(tmp_path / "ls")],
            "--label-studio retrains its model: use --runtime torch or torch-bf16",
        ),
        (["--ray", "--workers", "2"], "spert: error: --workers is for the uvicorn server; on Ray"),
        (["--model", str(tmp_path)], "not a SpERT model directory"),
        ([], "run `spert demo` first"),
        # With workers, the model is checked (in a process of its own) before they start.
        (["--workers", "2", "--model", str(tmp_path)], "not a SpERT model directory"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert isinstance(exit_info.value.code, str)  # printed as one line, exit status 1
        assert exit_info.value.code.startswith("spert: error: ")
        assert message in exit_info.value.code


def test_document_context_reaches_the_model(bert_dir: Path) -> None:
    """With context_words, the server predicts each sentence with its document's words around
    it, exactly as SpERT.extract does."""
    from spert.serve.batching import predict, prepare

    model = make_model(bert_dir, context_words=4)
    text = "Mary works for Acme Corp . She lives in Boston . John Smith was an actor ."
    prepared = prepare(model, [text])
    contexts = [c for _, _, c in prepared.items()]
    assert len(contexts) == 3
    assert contexts[0] == ([], ["She", "lives", "in", "Boston"])
    assert contexts[1] == (["for", "Acme", "Corp", "."], ["John", "Smith", "was", "an"])
    served = prepared.assemble(predict(model, prepared.items(), 8))
    assert [d.to_dict() for d in served] == [model.extract(text).to_dict()]


def test_response_schema_is_derived_from_the_result_types() -> None:
    import dataclasses

    from spert.results import Document, ExtractedEntity, ExtractedRelation, ExtractedSentence
    from spert.serve.app import ExtractResponse

    definitions = ExtractResponse.model_json_schema()["$defs"]
    for cls in (Document, ExtractedSentence, ExtractedEntity, ExtractedRelation):
        properties = definitions[cls.__name__]["properties"]
        assert list(properties) == [f.name for f in dataclasses.fields(cls)], cls.__name__
    assert (
        "Character offset" in definitions["ExtractedEntity"]["properties"]["start"]["description"]
    )
    sentence = ExtractedSentence(
        "Mary works .",
        0,
        12,
        ["Mary", "works", "."],
        [(0, 4), (5, 10), (11, 12)],
        [ExtractedEntity("Peop", "Mary", 0, 4, 0, 1, 0.9)],
        [ExtractedRelation("Work_For", 0, 0, 0.5)],
    )
    document = Document("Mary works .", [sentence], 7)
    # What the server writes (Document.to_dict) is what the schema describes.
    parsed = ExtractResponse.model_validate({"documents": [document.to_dict()]})
    assert parsed.documents == [document]


# -- calibration (in process) --------------------------------------------------------------
def test_calibration_in_info_and_predictions(model_dir: Path, tmp_path: Path) -> None:
    """/info reports a model's calibration and /extract applies it; --no-calibration
    (settings.calibration=False) serves the raw model."""
    import shutil

    from fastapi.testclient import TestClient

    from spert.model.calibration import Calibration
    from spert.model.directory import write_calibration
    from spert.serve.app import load_app

    calibrated_dir = tmp_path / "calibrated"
    shutil.copytree(model_dir, calibrated_dir)
    plain = SpERT.load(model_dir, device="cpu")
    names = plain.types.relation_names
    calibration = Calibration(
        tuple(plain.types.entities),
        tuple(names),
        entity_temperature=3.0,
        relation_method="temperature",
        relation_scale=(0.5,) * len(names),
        relation_bias=(0.0,) * len(names),
        relation_thresholds=(0.2,) * len(names),
        fitted_on={"data": "dev.json", "sentences": 3},
    )
    write_calibration(calibrated_dir, calibration)
    sentences = [t.split() for t in TEXTS if t]
    expected = {
        True: SpERT.load(calibrated_dir, device="cpu").predict(sentences),
        False: plain.predict(sentences),
    }
    assert expected[True] != expected[False]
    for use in (True, False):
        app = load_app(str(calibrated_dir), ServeSettings(calibration=use), "cpu")
        with TestClient(app) as client:
            info = client.get("/info").json()
            documents = client.post("/extract", json={"sentences": sentences}).json()["documents"]
        if use:
            assert info["calibration"]["relation_method"] == "temperature"
            assert info["calibration"]["relation_thresholds"] == {n: 0.2 for n in names}
            assert info["calibration"]["fitted_on"]["data"] == "dev.json"
        else:
            assert info["calibration"] is None
        for doc, want in zip(documents, expected[use]):
            (sentence,) = doc["sentences"]
            assert [(e["type"], e["score"]) for e in sentence["entities"]] == [
                (e.type, pytest.approx(e.score, abs=1e-4)) for e in want.entities
            ]
            assert len(sentence["relations"]) == len(want.relations)
