"""What every ``trainer`` command shares: the context settings, the one console, the quiet
TensorFlow import, and the one place where exceptions become a printed line and an exit code.

Only click is imported here (rich inside ``make_console``), so ``trainer --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from typing import TYPE_CHECKING

import click

from trainer.errors import TrainerError, describe

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
LOG_WIDTH = 200  # columns when the output is a file or a pipe: paths are never wrapped

if TYPE_CHECKING:
    from rich.console import Console


def make_console() -> Console:
    """The console every command prints to: no highlighting; not in a terminal, at least
    ``LOG_WIDTH`` columns wide (a log file never wraps a path mid-line). In Jupyter (the Python
    API) rich renders in the notebook at its own width."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and not console.is_jupyter:
        console.width = max(console.width, LOG_WIDTH)
    return console


# ---- exceptions -> one line and an exit code ------------------------------------------------


class _Reported(click.ClickException):
    """A message click prints as it is (``prefix`` + one line), with its exit code."""

    def __init__(self, message: str, exit_code: int, prefix: str = "Error: "):
        super().__init__(message)
        self.exit_code, self.prefix = exit_code, prefix

    def show(self, file=None) -> None:
        click.echo(f"{self.prefix}{self.message}", file=file, err=True)


class _MapsErrors:
    """``TrainerError`` -> its one line and exit code; Ctrl-C -> exit 130; any other exception
    -> one line and exit 1 (``TRAINER_DEBUG=1`` shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except TrainerError as exc:
            raise _Reported(describe(exc), exc.exit_code, exc.prefix) from None
        except Exception as exc:  # noqa: BLE001 - a one-line report instead of a traceback
            if os.environ.get("TRAINER_DEBUG"):
                raise
            raise _Reported(f"{describe(exc)} (set TRAINER_DEBUG=1 for the traceback)", 1) from None


class Command(_MapsErrors, click.Command):
    """A ``trainer`` command: maps exceptions itself, so it behaves the same when invoked alone."""


class Group(_MapsErrors, click.Group):
    """The ``trainer`` group."""


command = functools.partial(click.command, cls=Command, context_settings=CONTEXT)


# ---- TensorFlow, imported inside the commands -----------------------------------------------

_NOISE = ("All log messages before absl::InitializeLog()", "I0000 ", "W0000 ", "cuInit",
          "cuda drivers", "Unable to register cu", "computation placer already registered")


@contextlib.contextmanager
def _filtered_stderr():
    """Captures file descriptor 2 (where TensorFlow's C++ start-up chatter goes, before any
    log level applies) and passes on only the lines that are not known start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(marker in line for marker in _NOISE):
                    sys.stderr.write(line)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow, as the environment has it, and initialises its platforms with the
    start-up chatter filtered."""
    with _filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()


def quiet_tensorflow() -> None:
    """Imports TensorFlow with trainer's settings (``devices.tensorflow_environment``)."""
    from trainer.devices import tensorflow_environment

    tensorflow_environment()
    import_tensorflow_quietly()
