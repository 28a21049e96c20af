"""Domain errors. Each one becomes a one-line message and an exit code, never a traceback.

``UsageError`` (exit 2) is for input the user can correct on the command line;
``TrainerError`` (exit 1) is for failures while doing what was asked.
"""

import click

from callbacks.text import one_line  # noqa: F401 - re-exported


class _OneLineError:
    def show(self, file=None):
        click.echo(f"Error: {one_line(self.format_message())}", file=file, err=True)


class UsageError(_OneLineError, click.UsageError):
    """Bad input on the command line: exit code 2, and one line (no usage block: the
    message itself says what was received and what is expected)."""


class TrainerError(_OneLineError, click.ClickException):
    """A failure while running a command: exit code 1."""


def invalid_argument(name: str, received, expected: str) -> UsageError:
    """Keras-style argument error: what was received and what is expected."""
    return UsageError(
        f"Invalid value for argument `{name}`. Received: {name}={received!r}. Expected {expected}."
    )
