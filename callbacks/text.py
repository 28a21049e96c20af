"""Plain text for messages (one-line errors, Keras-style argument errors) and the few
constants the CLI needs without importing Keras. Imports nothing heavy."""

from __future__ import annotations

import re

# The display modes of callbacks.progress.make_progress; here, free of heavy imports, so the
# CLI can offer them as choices without importing Keras.
PROGRESS_MODES = ("auto", "rich", "plain", "none")

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


def invalid_argument_text(name: str, received, expected: str) -> str:
    """Keras's wording: "Invalid value for argument `x`. Received: x=…. Expected …"."""
    return f"Invalid value for argument `{name}`. Received: {name}={received!r}. Expected {expected}."


def check_int(name: str, value, minimum: int = 0) -> int:
    """``value`` if it is an integer >= ``minimum`` (not a bool), else a ValueError in Keras's
    wording."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        hint = " (0 turns it off)" if minimum == 0 else ""
        raise ValueError(invalid_argument_text(name, value, f"an integer >= {minimum}{hint}"))
    return int(value)
