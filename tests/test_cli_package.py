"""The command line package: library errors are plain exceptions that only the CLI maps to one
line and an exit code, and a command module that fails to import fails loudly."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tests.conftest import REPO
from trainer.cli.common import command
from trainer.errors import Interrupted, TrainerError, UsageError


def raising(exc: BaseException) -> click.Command:
    @command("raise")
    def raise_():
        raise exc

    return raise_


def test_domain_errors_are_plain_exceptions():
    for cls in (TrainerError, UsageError, Interrupted):
        assert not issubclass(cls, click.ClickException)
    assert (TrainerError("x").exit_code, UsageError("x").exit_code, Interrupted("x", 143).exit_code) == (1, 2, 143)


@pytest.mark.parametrize("exc, code, output", [
    (UsageError("Received: 3.\nExpected 2."), 2, "Error: Received: 3. Expected 2.\n"),
    (TrainerError("It failed."), 1, "Error: It failed.\n"),
    (Interrupted("Stopped; resume with: trainer fit --resume X", 143), 143,
     "Stopped; resume with: trainer fit --resume X\n"),
    (RuntimeError("boom"), 1, "Error: RuntimeError: boom (set TRAINER_DEBUG=1 for the traceback)\n"),
    (KeyboardInterrupt(), 130, "Interrupted.\n"),
])
def test_the_cli_maps_exceptions_to_one_line_and_an_exit_code(exc, code, output):
    result = CliRunner().invoke(raising(exc), [])
    assert (result.exit_code, result.output) == (code, output)


def test_a_run_interrupted_is_printed_without_the_error_prefix():
    from trainer.run import RunInterrupted

    result = CliRunner().invoke(raising(RunInterrupted("Aborted; resume with X", 130)), [])
    assert (result.exit_code, result.output) == (130, "Aborted; resume with X\n")


def test_a_command_module_that_fails_to_import_fails_loudly():
    code = "import sys; sys.modules['trainer.cli.reports'] = None\nimport trainer.cli"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "trainer.cli.reports" in proc.stderr


def test_every_command_is_registered():
    from trainer.cli import main

    assert set(main.commands) == {"fit", "sweep", "show", "compare", "runs", "export", "evaluate", "predict",
                                  "list", "summary", "devices", "config", "lr-find"}
