"""The HTTP app on Ray Serve: a local Ray instance, 2 replicas of a tiny model; requests
succeed, match the Python API, and both replicas serve.

Ray takes a while to start, so everything shares one deployment. Set SPERT_SKIP_RAY_TESTS=1
to skip this module (it runs by default).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from spert.api import SpERT
from spert.serve import ServeSettings
from spert.serve.app import WORKER_HEADER

if os.environ.get("SPERT_SKIP_RAY_TESTS") == "1":
    pytest.skip("SPERT_SKIP_RAY_TESTS=1", allow_module_level=True)

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from test_app import assert_same_documents, make_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve-ray") / "model"
    make_model(bert_dir).save(path)
    return path


@pytest.fixture(scope="module")
def ray_url(model_dir: Path) -> Iterator[str]:
    from spert.serve.ray_serve import build_app

    port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Small runs, so that a big request is spread over several of Ray's batches.
        settings = ServeSettings(max_batch_sentences=4, max_wait_ms=20, max_texts=16)
        app = build_app(model_dir, settings, replicas=2, num_cpus=0.5)
        serve.run(app, name="spert-test", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_correct_results(ray_url: str, model_dir: Path) -> None:
    model = SpERT.load(model_dir, device="cpu")
    info = httpx.get(ray_url + "/info", timeout=30).json()
    assert info["entity_types"] == ["Peop", "Org", "Loc"]
    assert info["batching"]["engine"] == "ray-serve"

    texts = [f"Mary works for Acme in Paris {i}. John lives in Boston." for i in range(6)]
    r = httpx.post(ray_url + "/extract", json={"texts": texts}, timeout=60)
    assert r.status_code == 200, r.text
    assert_same_documents(r.json()["documents"], [d.to_dict() for d in model.extract(texts)])

    bodies = [{"sentences": [["Mary", "works", "in", f"P{i}"]]} for i in range(16)]

    def send(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(ray_url + "/extract", json=body, timeout=60)

    workers: set[str] = set()
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        while len(workers) < 2 and time.monotonic() < deadline:
            for body, response in zip(bodies, pool.map(send, bodies)):
                assert response.status_code == 200, response.text
                expected = [d.to_dict() for d in model.extract(body["sentences"])]
                assert_same_documents(response.json()["documents"], expected)
                workers.add(response.headers[WORKER_HEADER])
    assert len(workers) == 2, workers

    r = httpx.post(ray_url + "/extract", json={"texts": ["x"] * 17}, timeout=60)
    assert r.status_code == 422 and "max_texts 16" in r.json()["detail"]


def test_serve_config_app_builder(model_dir: Path) -> None:
    from spert.config import ConfigError
    from spert.serve.ray_serve import app_builder

    app = app_builder({"model": str(model_dir), "replicas": 2, "num_cpus": 0.5, "max_texts": 3})
    deployment = app._bound_deployment
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment.init_args[0] == str(model_dir)
    assert deployment.init_args[1]["max_texts"] == 3
    with pytest.raises(ConfigError, match="unknown spert serve option"):
        app_builder({"max_textz": 3})
    with pytest.raises(ConfigError, match="replicas must be at least 1"):
        app_builder({"replicas": 0})
