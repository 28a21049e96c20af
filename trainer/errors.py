"""Domain errors: plain exceptions that library code raises. Only the command line
(``trainer.cli``) turns them into one printed line and an exit code, never a traceback.

``UsageError`` (exit 2) is for input the user can correct on the command line;
``TrainerError`` (exit 1) is for failures while doing what was asked; ``Interrupted``
(exit 130 or 143) is a stop the user asked for, printed without the "Error:" prefix.
"""

from __future__ import annotations

from callbacks.text import one_line  # noqa: F401 - re-exported


class TrainerError(Exception):
    """A failure while running a command: exit code 1, printed as ``Error: <message>``."""

    exit_code = 1
    prefix = "Error: "  # what the command line prints before the message

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(TrainerError):
    """Bad input on the command line: exit code 2, and one line (no usage block: the
    message itself says what was received and what is expected)."""

    exit_code = 2


class Interrupted(TrainerError):
    """Ctrl-C (exit 130) or SIGTERM (exit 143): the message says what was saved and how to go on."""

    prefix = ""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def invalid_argument(name: str, received, expected: str) -> UsageError:
    """Keras-style argument error: what was received and what is expected."""
    return UsageError(
        f"Invalid value for argument `{name}`. Received: {name}={received!r}. Expected {expected}."
    )


def describe(exc: BaseException) -> str:
    """``exc`` as one line: a ``TrainerError``'s own message, any other exception as
    ``ExcType: message`` (its type says what went wrong where the message alone may not)."""
    if isinstance(exc, TrainerError):
        return one_line(exc.message)
    text = one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
