"""Data-parallel training: sharding, sampling streams, accumulation, and torchrun on gloo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SRC
from transformers import BertModel

from spert.api import SpERT
from spert.data import write_dataset
from spert.training import SampleStreams, distributed, step_shares, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def deterministic_encoder(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout: training is then a deterministic function of its data."""
    path = tmp_path_factory.mktemp("encoders") / "tiny-bert-no-dropout"
    encoder = BertModel.from_pretrained(bert_dir)
    encoder.config.hidden_dropout_prob = 0.0
    encoder.config.attention_probs_dropout_prob = 0.0
    encoder.save_pretrained(path)
    for file in bert_dir.iterdir():
        if file.name != "model.safetensors" and file.name != "config.json":
            shutil.copy(file, path / file.name)
    return path


# -- pieces -----------------------------------------------------------------------------------
def test_shard_and_unshard_round_trip():
    items = list(range(11))
    shards = [distributed.shard(items, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert distributed.unshard(shards) == items
    assert distributed.unshard([distributed.shard(items[:1], r, 4) for r in range(4)]) == [0]


@pytest.mark.parametrize("size, world, accumulation", [(8, 2, 1), (7, 2, 2), (1, 2, 1), (5, 1, 3)])
def test_step_shares_split_a_step_batch_exactly(size, world, accumulation):
    batch = np.arange(100, 100 + size)
    shares = [step_shares(batch, r, world, accumulation) for r in range(world)]
    assert all(len(s) == accumulation for s in shares)
    flat = [part for rank in shares for part in rank]
    assert np.array_equal(np.concatenate(flat), batch)  # every sentence once, in order
    assert max(map(len, flat)) - min(map(len, flat)) <= 1


def test_sample_streams_do_not_depend_on_the_order_of_use():
    streams = SampleStreams(7)
    forward = [streams(e, j).integers(0, 10**9, 4).tolist() for e in (1, 2) for j in range(5)]
    backward = [
        streams(e, j).integers(0, 10**9, 4).tolist() for e in (2, 1) for j in range(4, -1, -1)
    ]
    assert forward == list(reversed(backward))
    assert len({tuple(x) for x in forward}) == len(forward)  # all different
    assert (
        streams(1, 0).integers(0, 10**9, 4).tolist()
        != SampleStreams(8)(1, 0).integers(0, 10**9, 4).tolist()
    )


def test_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup("cpu")
    assert (ctx.enabled, ctx.rank, ctx.world_size, ctx.is_main) == (False, 0, 1, True)
    assert ctx.all_gather({"a": 1}) == [{"a": 1}]
    assert not torch.distributed.is_initialized()


# -- equivalences -----------------------------------------------------------------------------
def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return SpERT.load(run / "final", "cpu").model.state_dict()


def assert_close_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal up to float rounding (sums in another order), except attention key biases: their
    gradient is 0 in exact arithmetic (softmax ignores a shift shared by all keys), so it is
    rounding noise, which Adam's normalisation turns into steps of about the learning rate."""
    assert a.keys() == b.keys()
    compared = [name for name in a if not name.endswith("attention.self.key.bias")]
    assert len(compared) == len(a) - 2  # the 2 layers of the tiny BERT
    for name in compared:
        torch.testing.assert_close(
            a[name], b[name], rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_gradient_accumulation_equals_a_larger_batch(
    types, sentences, tiny_config, deterministic_encoder, tmp_path
):
    # 7 sentences, step batch 4: batches of 4 and 3; with 2 x 2, the last one splits 2 + 1.
    config = tiny_config.replace(
        encoder=str(deterministic_encoder), dropout=0.0, epochs=3, lr=3e-3, max_span_size=4
    )
    data = (sentences * 3)[:7]
    large = train(config.replace(train_batch_size=4), data, types, tmp_path / "a", progress=False)
    accumulated = train(
        config.replace(train_batch_size=2, grad_accumulation=2),
        data,
        types,
        tmp_path / "b",
        progress=False,
    )
    assert [r["step"] for r in large.history] == [r["step"] for r in accumulated.history]
    losses = [[r["train_loss"] for r in run.history] for run in (large, accumulated)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert losses[0][-1] < 0.5 * losses[0][0]  # it learned: the comparison is not vacuous
    assert_close_weights(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))


def test_torchrun_two_processes_equal_one_process_with_the_same_step_batch(
    types, sentences, tiny_config, deterministic_encoder, tmp_path
):
    """2 processes x batch 2 on gloo = 1 process x batch 4 (no dropout: deterministic)."""
    data = sentences * 7  # 21 sentences: steps of 4, the last of 1 (one process gets none)
    write_dataset(tmp_path / "train.json", data)
    write_dataset(tmp_path / "dev.json", sentences)
    (tmp_path / "types.json").write_text(json.dumps(types.to_dict()))
    config = tiny_config.replace(
        encoder=str(deterministic_encoder), dropout=0.0, epochs=4, lr=3e-3, max_span_size=4
    )
    (tmp_path / "config.toml").write_text(
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in config.to_dict().items()) + "\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "spert", "train", "--train", "train.json"]
    command += ["--dev", "dev.json", "--types", "types.json", "--config", "config.toml"]
    command += ["--out", "two", "--train-batch-size", "2", "--checkpoint-every", "5"]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("saved ") == 1  # only rank 0 reports

    one = train(
        config.replace(train_batch_size=4, checkpoint_every=5),
        data,
        types,
        tmp_path / "one",
        dev_data=sentences,
        progress=False,
    )
    out = tmp_path / "two"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    two = [json.loads(line) for line in lines]  # one writer: one line per epoch
    assert [r["step"] for r in two] == [r["step"] for r in one.history] == [6, 12, 18, 24]
    assert [r["train_loss"] for r in two] == pytest.approx(
        [r["train_loss"] for r in one.history], rel=1e-5
    )
    assert_close_weights(final_weights(out), one.model.model.state_dict())
    # Dev metrics were gathered from both processes' shares: those of the whole dev set.
    assert two[-1]["dev"] == one.history[-1]["dev"]
    assert one.history[-1]["dev_summary"]["entity_micro_f1"] > 50  # a non-trivial model
    final = SpERT.load(out / "final", "cpu")
    metrics, _ = final.evaluate(sentences)
    assert metrics == two[-1]["dev"]
    # Checkpoints were written (every 5 steps, and at epoch ends) and deleted at the end.
    names = {p.name for p in out.iterdir()} - {"tensorboard"}
    assert names == {"best", "final", "metrics.jsonl", "run.json"}
    if (out / "tensorboard").exists():  # with tensorboard installed: one writer
        assert len(list((out / "tensorboard").glob("events.*"))) == 1
