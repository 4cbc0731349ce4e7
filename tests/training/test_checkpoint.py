"""Checkpoints: atomic files, rotation, and resumed runs that equal uninterrupted ones."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SRC

from spert.api import SpERT
from spert.cli import main as cli_main
from spert.data import write_dataset
from spert.training import batches, train
from spert.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_latest,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# -- files ------------------------------------------------------------------------------------
def test_save_keeps_the_newest_and_leaves_no_temporary_files(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".step_00000001.pt.tmp-deadbeef").write_bytes(b"half a file")  # an old crash
    for step in (2, 4, 6, 8):
        save_checkpoint(folder, step, {"weights": torch.full((3,), float(step))}, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000006.pt", "step_00000008.pt"]
    latest = load_latest(folder)
    assert latest is not None and latest["step"] == 8
    assert torch.equal(latest["weights"], torch.full((3,), 8.0))


def test_load_latest_skips_an_unreadable_checkpoint(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, 1, {"x": torch.ones(2)}, keep=3)
    newest = save_checkpoint(folder, 2, {"x": torch.zeros(1000)}, keep=3)
    newest.write_bytes(newest.read_bytes()[:300])  # truncated, e.g. a disk filled up
    with caplog.at_level(logging.WARNING, logger="spert.training.checkpoint"):
        latest = load_latest(folder)
    assert latest is not None and latest["step"] == 1
    assert "step_00000002.pt" in caplog.text
    assert load_latest(tmp_path / "nowhere") is None


# -- resuming in-process ----------------------------------------------------------------------
def tensors_equal(a: SpERT, b: SpERT) -> None:
    first, second = a.model.state_dict(), b.model.state_dict()
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in history]


class Crash(Exception):
    pass


def crash_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """Let training die in its ``calls``-th sampling call (in the middle of some step)."""
    count = {"n": 0}
    sample = batches.sample_training

    def dying_sample(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls:
            raise Crash()
        return sample(*args, **kwargs)

    monkeypatch.setattr(batches, "sample_training", dying_sample)


@pytest.mark.parametrize(
    "changes, crash_at",
    [
        # 9 sentences, batch 2: 5 steps per epoch; checkpoints at steps 2, 4, epoch ends.
        ({}, 6),  # step 3 of epoch 1: back to step 2
        ({}, 16),  # epoch 2 (its 3rd step): back to the epoch-1 end or step 6
        ({"grad_accumulation": 2, "keep_checkpoints": 1}, 9),  # 3 steps per epoch: 4, 4, 1
        ({"average_last_epochs": 2}, 16),  # the weight average of epoch 1 is in the checkpoint
        ({"ema_decay": 0.9}, 16),  # the moving average of the steps so far, too
    ],
)
def test_resume_equals_an_uninterrupted_run(
    types, sentences, tiny_config, tmp_path, monkeypatch, changes, crash_at
):
    # Dropout on (heads and encoder): the resumed run must restore the torch RNG too.
    config = tiny_config.replace(epochs=2, max_span_size=4, lr=1e-3, checkpoint_every=2, **changes)
    data = sentences * 3
    reference = train(config, data, types, tmp_path / "ref", dev_data=sentences, progress=False)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_after(patch, crash_at)
        with pytest.raises(Crash):
            train(config, data, types, out, dev_data=sentences, progress=False)
    assert not (out / "final").exists()
    interrupted = load_latest(out / "checkpoints")
    assert interrupted is not None and 0 < interrupted["step"] < reference.history[-1]["step"]
    assert 1 <= len(list_checkpoints(out / "checkpoints")) <= config.keep_checkpoints

    resumed = train(config, data, types, out, dev_data=sentences, progress=False, resume=True)
    tensors_equal(resumed.model, reference.model)
    tensors_equal(SpERT.load(out / "final", "cpu"), reference.model)
    assert resumed.model.predict(data) == reference.model.predict(data)
    assert without_times(resumed.history) == without_times(reference.history)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert without_times([json.loads(line) for line in lines]) == without_times(reference.history)
    assert (resumed.best_epoch, resumed.best_dev) == (reference.best_epoch, reference.best_dev)
    assert not (out / "checkpoints").exists()  # finished: no more use


def test_resume_refuses_another_configuration_or_other_data(
    types, sentences, tiny_config, tmp_path, monkeypatch
):
    config = tiny_config.replace(max_span_size=4, checkpoint_every=1)  # 2 steps, 1 epoch
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(config, sentences, types, tmp_path / "none", progress=False, resume=True)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_after(patch, 3)  # in step 2
        with pytest.raises(Crash):
            train(config, sentences, types, out, progress=False)
    with pytest.raises(CheckpointError, match=r"lr 0\.5 \(checkpoint: 5e-05\)"):
        train(config.replace(lr=0.5), sentences, types, out, progress=False, resume=True)
    with pytest.raises(CheckpointError, match="step batch was 2 sentences, now 3"):
        train(
            config.replace(train_batch_size=3), sentences, types, out, progress=False, resume=True
        )
    with pytest.raises(CheckpointError, match="training data differ"):
        train(config, sentences[:2], types, out, progress=False, resume=True)
    # Allowed: another split of the same step batch, more checkpoints.
    changed = config.replace(train_batch_size=1, grad_accumulation=2, keep_checkpoints=3)
    resumed = train(changed, sentences, types, out, progress=False, resume=True)
    reference = train(config, sentences, types, tmp_path / "ref", progress=False)
    tensors_equal(resumed.model, reference.model)  # no dropout differences: 1 process again
    with pytest.raises(CheckpointError, match="the run has finished"):
        train(config, sentences, types, out, progress=False, resume=True)


def test_a_new_run_deletes_old_checkpoints_and_none_are_written_when_asked(
    types, sentences, tiny_config, tmp_path, monkeypatch, caplog
):
    config = tiny_config.replace(max_span_size=4, checkpoint_every=1)
    for keep, left in ((2, [1]), (0, [])):
        out = tmp_path / f"keep{keep}"
        with monkeypatch.context() as patch:
            crash_after(patch, 3)  # in step 2 of 2
            with pytest.raises(Crash):
                train(config.replace(keep_checkpoints=keep), sentences, types, out, progress=False)
        assert [s for s, _ in list_checkpoints(out / "checkpoints")] == left
    with caplog.at_level(logging.WARNING, logger="spert.training"):
        train(config, sentences, types, tmp_path / "keep2", progress=False)
    assert "deleted 1 old checkpoint(s)" in caplog.text
    assert not (tmp_path / "keep2" / "checkpoints").exists()


# -- the command line -------------------------------------------------------------------------
def write_run_files(root: Path, types, sentences, encoder: Path) -> None:
    write_dataset(root / "train.json", sentences)
    write_dataset(root / "dev.json", sentences[:3])
    (root / "types.json").write_text(json.dumps(types.to_dict()))
    (root / "config.toml").write_text(
        f'encoder = "{encoder}"\nepochs = 2\nmax_span_size = 4\nlr = 1e-3\n'
        "neg_entity_count = 20\nneg_relation_count = 20\n"
    )


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code not in (0, None)
    return str(exit_info.value.code) + capsys.readouterr().err


def test_cli_resume_errors_are_one_line(types, sentences, bert_dir, tmp_path, capsys):
    write_run_files(tmp_path, types, sentences, bert_dir)
    out = tmp_path / "out"
    assert "no such run directory" in cli_error(["train", "--resume", str(out)], capsys)
    out.mkdir()
    message = cli_error(["train", "--resume", str(out)], capsys)
    assert "--train, --types required" in message
    args = ["--train", str(tmp_path / "train.json"), "--types", str(tmp_path / "types.json")]
    message = cli_error(["train", *args, "--resume", str(out)], capsys)
    assert "no checkpoint to resume from" in message
    assert "Traceback" not in message
    assert "--out required" in cli_error(["train", *args], capsys)


def test_run_record_of_a_python_run_without_data_files(
    types, sentences, tiny_config, tmp_path, capsys
):
    """train() writes the run's record (every option); without data_files it names no data,
    so resuming it from the command line asks for them, in one line."""
    out = tmp_path / "run"
    config = tiny_config.replace(epochs=1, lr=1e-3, keep_checkpoints=0)
    train(config, sentences, types, out, progress=False)
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert record["config"] == config.to_dict() and record.get("train") is None
    message = cli_error(["train", "--resume", str(out)], capsys)
    assert "--train, --types required (run.json names no data)" in message
    assert "Traceback" not in message


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(
    types, sentences, tiny_config, bert_dir, tmp_path, capsys
):
    data = sentences * 10  # 30 sentences, batch 2: 15 steps per epoch, 2 epochs
    write_run_files(tmp_path, types, data, bert_dir)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "spert", "train", "--train", "train.json"]
    command += ["--dev", "dev.json", "--types", "types.json", "--config", "config.toml"]
    command += ["--out", "out", "--checkpoint-every", "2"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not list_checkpoints(out / "checkpoints"):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "final").exists()
    interrupted = load_latest(out / "checkpoints")
    assert interrupted is not None and interrupted["progress"]["position"] > 0  # mid-epoch

    # The run's options come from OUT/run.json; changing one that matters is refused.
    message = cli_error(["train", "--resume", str(out), "--lr", "0.5"], capsys)
    assert "cannot resume with another configuration: lr 0.5 (checkpoint: 0.001)" in message
    message = cli_error(["train", "--resume", str(out), "--preset", "fast"], capsys)
    assert "do not go with --resume" in message

    cli_main(["train", "--resume", str(out)])
    assert "saved" in capsys.readouterr().out

    config = tiny_config.replace(epochs=2, max_span_size=4, lr=1e-3, checkpoint_every=2)
    reference = train(config, data, types, tmp_path / "ref", dev_data=data[:3], progress=False)
    resumed = SpERT.load(out / "final", "cpu")
    tensors_equal(resumed, reference.model)
    assert resumed.predict(data) == reference.model.predict(data)
    for name in ("best", "final"):
        tensors_equal(SpERT.load(out / name, "cpu"), SpERT.load(tmp_path / "ref" / name, "cpu"))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert without_times([json.loads(line) for line in lines]) == without_times(reference.history)
    message = cli_error(["train", "--resume", str(out)], capsys)
    assert "the run has finished" in message
