"""Plain text for messages: any exception or multi-line library message as one line."""

from __future__ import annotations

import re

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
