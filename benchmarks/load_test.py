"""Load test of ``spert serve``: concurrent clients against the real server, and the offline
batched ``SpERT.extract`` on the same texts, in one run.

    python benchmarks/load_test.py [--model DIR] [--clients 32] [--duration 60]
    python benchmarks/load_test.py --server-arg=--workers=2   # a server process per core

Starts the server in a subprocess on a free 127.0.0.1 port (loopback only), sends the
CoNLL04 test sentences as raw texts (tokens joined by spaces) from ``--clients`` concurrent
clients for ``--duration`` seconds (at most ``--max-requests`` requests), and reports
requests/s, sentences/s, p50/p99 latency and errors; then the offline throughput of
``SpERT.load(model).extract(texts, batch_size=...)`` on the same texts (measured first, before
the server starts) and the ratio of the two. Writes ``benchmarks/results/load_test.json`` and
``.md`` (atomically). The target: no errors and at least 0.8x the offline sentences/s.

The model defaults to the one ``spert demo`` writes (``spert.api.default_model_dir()``).

With ``--server-arg=--workers=N`` (N server processes; on a CPU-only machine, N = cores gives
each worker 1 torch thread), the throughput, latency, errors and server CPU time (the parent
and its worker processes) cover all workers, but the batching counters do not: each ``/info``
answer, before and after the load, comes from one worker, not necessarily the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "conll04" / "conll04_test.json"
TARGET_RATIO = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, all threads) of this process, or of process ``pid`` and its
    live child processes (the workers of ``spert serve --workers N``) (Linux)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in _children(pid):
        total += cpu_seconds(child) or 0.0
    return total


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def per_sentence_ms(seconds: float | None, sentences: int) -> float | None:
    return round(seconds * 1000 / sentences, 2) if seconds is not None and sentences else None


def read_texts(path: Path) -> list[str]:
    from spert import read_dataset

    return [" ".join(s.tokens) for s in read_dataset(path)]


def measure_offline(model_dir: Path, texts: list[str], batch_size: int, repeats: int) -> dict:
    """Sentences/s of ``SpERT.extract`` on all texts at once (after a warm-up)."""
    from spert.api import SpERT

    model = SpERT.load(model_dir)
    model.extract(texts[:32], batch_size=batch_size)  # warm-up
    seconds, sentences = [], 0
    cpu = cpu_seconds()
    for i in range(repeats):
        started = time.perf_counter()
        documents = model.extract(texts, batch_size=batch_size)
        seconds.append(time.perf_counter() - started)
        sentences = sum(len(d.sentences) for d in documents)
        print(f"offline {i + 1}/{repeats}: {sentences / seconds[-1]:.1f} sentences/s", flush=True)
    total = sum(seconds)
    cpu = cpu_seconds() - cpu
    return {
        "batch_size": batch_size,
        "repeats": repeats,
        "sentences_per_repeat": sentences,
        "seconds": round(total, 3),
        "sentences_per_s": round(sentences * repeats / total, 2),
        "cpu_ms_per_sentence": per_sentence_ms(cpu, sentences * repeats),
    }


class ServerProcess:
    """``spert serve`` (``python -m spert.serve``) on 127.0.0.1 in a subprocess."""

    def __init__(
        self, model_dir: Path, batch_size: int, extra: list[str], env: list[str], log: Path
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "spert.serve", "--model", str(model_dir)]
        self.args += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        self.args += ["--batch-size", str(batch_size), *extra]
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115
        environ = {**os.environ, **dict(item.split("=", 1) for item in env)}
        self.process = subprocess.Popen(
            self.args, stdout=self._log_file, stderr=subprocess.STDOUT, env=environ
        )

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited early; its log:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        log = self.log.read_text()
        raise SystemExit(f"server not ready after {timeout:.0f} s; its log:\n{log}")

    def stop(self) -> int:
        """SIGTERM (graceful shutdown); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client for ``POST`` with a JSON body, in the spirit of
    ``wrk``: it costs the shared CPUs a fraction of what a full client library does, so the
    load generator takes less from the server it measures. Any answer it does not understand
    (no Content-Length, a closed connection) raises :class:`ConnectionError`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode("ascii") + body)
            header = await self.reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            pairs = (line.partition(":") for line in lines[1:])
            fields = {k.strip().lower(): v.strip() for k, _, v in pairs}
            if "content-length" not in fields:
                raise ConnectionError(f"answer without Content-Length: {lines[0]}")
            content = await self.reader.readexactly(int(fields["content-length"]))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
            await self.close()
            raise ConnectionError(f"{type(e).__name__}: {e}") from None
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(
    url: str,
    texts: list[str],
    clients: int,
    duration: float,
    max_requests: int,
    texts_per_request: int,
    client_kind: str = "raw",
) -> dict[str, Any]:
    """``clients`` concurrent clients, each sending one request after the other on its own
    keep-alive connection; ``client_kind`` "raw" (:class:`RawConnection`) or "httpx"."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    state = {"issued": 0, "ok": 0, "sentences": 0}
    started = time.perf_counter()
    end = started + duration
    host, port = url.removeprefix("http://").rsplit(":", 1)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    http = httpx.AsyncClient(limits=limits, timeout=120) if client_kind == "httpx" else None

    async def post(connection: RawConnection, body: dict[str, Any]) -> tuple[int, bytes]:
        if http is not None:
            r = await http.post(url + "/extract", json=body)
            return r.status_code, r.content
        return await connection.post("/extract", json.dumps(body).encode("utf-8"))

    async def client() -> None:
        connection = RawConnection(host, int(port))
        while time.perf_counter() < end and state["issued"] < max_requests:
            k = state["issued"]
            state["issued"] += 1
            first = k * texts_per_request
            body = {"texts": [texts[(first + j) % len(texts)] for j in range(texts_per_request)]}
            t0 = time.perf_counter()
            try:
                status, content = await post(connection, body)
            except (httpx.HTTPError, ConnectionError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            if status != 200:
                errors.append(f"HTTP {status}: {content[:200]!r}")
                continue
            documents = json.loads(content)["documents"]
            latencies.append(time.perf_counter() - t0)
            if len(documents) != texts_per_request:
                errors.append(f"{len(documents)} documents for {texts_per_request} texts")
                continue
            state["ok"] += 1
            state["sentences"] += sum(len(d["sentences"]) for d in documents)
        await connection.close()

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            elapsed = time.perf_counter() - started
            print(
                f"load {elapsed:5.0f}/{duration:.0f} s: {state['ok'] / elapsed:7.1f} requests/s, "
                f"{state['sentences'] / elapsed:7.1f} sentences/s, {len(errors)} errors",
                flush=True,
            )

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        reporter.cancel()
        if http is not None:
            await http.aclose()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "clients": clients,
        "client": client_kind,
        "duration_s": duration,
        "max_requests": max_requests,
        "texts_per_request": texts_per_request,
        "elapsed_s": round(elapsed, 3),
        "requests": state["ok"],
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "requests_per_s": round(state["ok"] / elapsed, 2),
        "sentences": state["sentences"],
        "sentences_per_s": round(state["sentences"] / elapsed, 2),
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p90": round(float(np.percentile(ms, 90)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1),
            "max": round(float(ms.max()), 1),
            "mean": round(float(ms.mean()), 1),
        },
    }


def server_batching(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(url + "/info", timeout=30).json()["batching"]


def markdown(result: dict[str, Any]) -> str:
    load, offline = result["load"], result["offline"]
    lat = load["latency_ms"]
    batching = result["server_batching"]
    cpu = result["cpu_ms_per_sentence"]
    verdict = "PASS" if result["pass"] else "FAIL"
    lines = [
        "# Load test: `spert serve`",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Model: `{result['model']}` (encoder `{result['encoder']}`); texts: "
        f"{result['texts']['count']} CoNLL04 test sentences as raw text "
        f"({load['texts_per_request']} per request); server on 127.0.0.1, batch size "
        f"{offline['batch_size']}, max {batching['max_batch_sentences']} sentences per model run, "
        f"max wait {batching['max_wait_ms']:g} ms.",
        "",
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs, "
        f"torch {result['machine']['torch']} ({result['machine']['torch_threads']} threads), "
        f"nice {result['machine']['nice']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| clients | {load['clients']} ({load.get('client', 'httpx')} HTTP client) |",
        f"| duration (s) | {load['elapsed_s']:.1f} |",
        f"| requests | {load['requests']} |",
        f"| errors | {load['errors']} |",
        f"| requests/s | {load['requests_per_s']:.1f} |",
        f"| sentences/s (server) | {load['sentences_per_s']:.1f} |",
        f"| latency p50 (ms) | {lat['p50']:.1f} |",
        f"| latency p90 (ms) | {lat['p90']:.1f} |",
        f"| latency p99 (ms) | {lat['p99']:.1f} |",
        f"| latency max (ms) | {lat['max']:.1f} |",
        f"| model runs (mean sentences per run) | {batching['runs']} "
        f"({batching['mean_run_sentences']:.1f}) |",
        f"| sentences/s (offline `extract`) | {offline['sentences_per_s']:.1f} |",
        f"| ratio server / offline | {result['ratio']:.3f} |",
        f"| CPU ms per sentence: offline / server / client | {cpu['offline']} / "
        f"{cpu['server']} / {cpu['client']} |",
        f"| server exit status after SIGTERM | {result['server_exit_status']} |",
        "",
        f"**{verdict}**: {load['errors']} errors (target 0), ratio {result['ratio']:.3f} "
        f"(target >= {TARGET_RATIO}).",
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the model of `spert demo`)")
    parser.add_argument("--data", default=str(DATA), help="SpERT JSON whose sentences to send")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--offline-repeats", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of unmeasured load")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra `spert serve` argument (repeatable), e.g. --server-arg=--max-wait-ms=10",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the server process (repeatable)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: a minimal keep-alive HTTP/1.1 client (raw, the default) or httpx",
    )
    parser.add_argument("--note", default="", help="a line to add to the report")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load_test"))
    args = parser.parse_args()
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes KEY=VALUE")
    for name in ("clients", "max_requests", "texts_per_request", "offline_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    import torch

    from spert.api import META_FILE, default_model_dir
    from spert.utils import atomic_write_text

    model_dir = Path(args.model) if args.model else default_model_dir()
    if not (model_dir / META_FILE).is_file():
        hint = "run `spert demo` first to create it" if not args.model else "not a model"
        raise SystemExit(f"load_test: no model in {model_dir}: {hint} (or give --model DIR)")
    texts = read_texts(Path(args.data))
    config = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))["config"]
    batch_size = args.batch_size or config["eval_batch_size"]
    print(f"{len(texts)} texts from {args.data}; model {model_dir}", flush=True)

    offline = measure_offline(model_dir, texts, batch_size, args.offline_repeats)

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        server = ServerProcess(model_dir, batch_size, args.server_arg, args.server_env, log)
        try:
            server.wait_ready(300)
            # Warm-up, not measured.
            asyncio.run(
                run_load(server.url, texts, args.clients, args.warmup, len(texts), 1, args.client)
            )
            before = server_batching(server.url)
            server_cpu, client_cpu = cpu_seconds(server.process.pid), cpu_seconds()
            print(f"server ready on {server.url}; {args.clients} clients", flush=True)
            load = asyncio.run(
                run_load(
                    server.url,
                    texts,
                    args.clients,
                    args.duration,
                    args.max_requests,
                    args.texts_per_request,
                    args.client,
                )
            )
            after = server_batching(server.url)
            server_cpu_after = cpu_seconds(server.process.pid)
            if server_cpu is not None and server_cpu_after is not None:
                server_cpu = server_cpu_after - server_cpu
            client_cpu = cpu_seconds() - client_cpu
        finally:
            exit_status = server.stop()
            server_log = server.log.read_text(errors="replace")
    if exit_status != 0:
        print(f"server exited with status {exit_status}; its log:\n{server_log}", file=sys.stderr)

    runs = after["runs"] - before["runs"]
    sentences_run = after["sentences"] - before["sentences"]
    ratio = load["sentences_per_s"] / offline["sentences_per_s"]
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "nice": os.nice(0),
        },
        "model": str(model_dir),
        "encoder": config["encoder"],
        "texts": {"source": str(args.data), "count": len(texts)},
        "load": load,
        "server_batching": {
            "runs": runs,
            "mean_run_sentences": round(sentences_run / runs, 2) if runs else 0.0,
            "largest_run": after["largest_run"],
            "model_seconds": round(after["model_seconds"] - before["model_seconds"], 3),
            "max_batch_sentences": after["max_batch_sentences"],
            "max_wait_ms": after["max_wait_ms"],
            "batch_size": after["batch_size"],
        },
        "cpu_ms_per_sentence": {
            "offline": offline["cpu_ms_per_sentence"],
            "server": per_sentence_ms(server_cpu, load["sentences"]),
            "client": per_sentence_ms(client_cpu, load["sentences"]),
        },
        "offline": offline,
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "server_exit_status": exit_status,
        "pass": load["errors"] == 0 and ratio >= TARGET_RATIO and exit_status == 0,
        "note": args.note,
    }
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
