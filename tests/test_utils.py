"""The commands' shared set-up: one logging set-up and one error-to-exit handler."""

from __future__ import annotations

import logging

import pytest
from transformers.utils import logging as hf_logging

from spert.cli import main as cli_main
from spert.cli.common import CliError
from spert.config import ConfigError
from spert.data import DataError
from spert.model.directory import ModelError
from spert.serve.cli import main as serve_main
from spert.utils import UserError, exit_on_user_error, setup_logging


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
    expected = f"spert: error: {tmp_path}: not a SpERT model directory (no spert.json)"
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
