"""Domain errors. Each one becomes a one-line message and an exit code, never a traceback.

``UsageError`` (exit 2) is for input the user can correct on the command line;
``TrainerError`` (exit 1) is for failures while doing what was asked.
"""

import re

import click

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RAISED = re.compile(r"^\w+(?:Error|Exception|Warning): (.*)$")
_KERAS_WRAPPER = re.compile(r"Exception encountered when calling \S+\.?$")


def one_line(text) -> str:
    """``text`` as one plain line: escape codes removed, and for a multi-line message (such as
    Keras's "Exception encountered when calling X.call()." / the error in bold / the arguments
    received) its first paragraph, joined with the next one when it only names the layer or
    ends with a colon."""
    paragraphs = [" ".join(line.strip() for line in block.splitlines() if line.strip())
                  for block in re.split(r"\n\s*\n", _ANSI.sub("", str(text)).strip())]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        return ""
    if paragraphs[0] == "in user code:":  # TensorFlow's traced-function error: skip the frames
        raised = [i for i, p in enumerate(paragraphs) if _RAISED.match(p)]
        if raised:
            paragraphs = paragraphs[raised[-1]:]
            paragraphs[0] = _RAISED.match(paragraphs[0]).group(1)
    line, rest = paragraphs[0], paragraphs[1:]
    if rest and _KERAS_WRAPPER.search(line):
        line = f"{line.rstrip('.')}: {rest.pop(0)}"
    while rest and line.endswith(":") and not rest[0].startswith("Arguments received by"):
        line = f"{line} {rest.pop(0)}"  # "... Error encountered:" and what it was
    return line


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
