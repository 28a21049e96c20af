"""TensorFlow's per-op placement log: captured off the terminal, counted per device."""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterable

from callbacks import compat
from callbacks.placement import PLACEMENT_TITLE, short_device
from trainer.errors import TrainerError

_EAGER = re.compile(r"Executing op (\S+) in device (\S+)")
_PLACED = re.compile(r"(?:^|\] )(\S+): \((\S+)\): (/\S*device:\S+)\s*$")


def placement_summary(log_lines: str | Iterable[str]) -> dict[str, int]:
    """Counts op placements per device in TensorFlow's ``log_device_placement`` output.

    Reads eager lines ("Executing op MatMul in device …", stderr, shown only with
    TF_CPP_MIN_LOG_LEVEL=0) and graph placer lines ("name: (MatMul): /job:…/device:CPU:0",
    printed to stdout and, at log level 0, repeated on stderr behind a "placer.cc" prefix;
    the repetition is not counted twice). ``log_lines``: a string or an iterable of lines.
    """
    if isinstance(log_lines, str):
        log_lines = log_lines.splitlines()
    eager, plain, logged = Counter(), Counter(), Counter()
    for line in log_lines:
        if m := _EAGER.search(line):
            eager[m.group(2)] += 1
        elif m := _PLACED.search(line.rstrip()):
            (logged if "placer.cc" in line else plain)[m.group(3)] += 1
    devices = set(eager) | set(plain) | set(logged)
    return {d: eager[d] + max(plain[d], logged[d]) for d in sorted(devices)}


def placement_line(summary: dict[str, int]) -> str:
    """One terminal line: 'Op placement (…): CPU:0 1,234 ops. Full counts: …'."""
    counts = ", ".join(f"{short_device(dev)} {count:,} ops" for dev, count in summary.items())
    return (f"{PLACEMENT_TITLE}: {counts or 'none logged'}. "
            "Per device in config.json (devices.placement) and TensorBoard text device_placement.")


def _flush_c_stdio() -> None:
    """Flushes C's stdio buffers (TensorFlow's placer writes with ``printf``)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows)
        pass


class PlacementLog:
    """TensorFlow's per-op placement log, kept off the terminal and summarised.

    ``start()`` it before TensorFlow initialises its devices: from then on file descriptors
    1 and 2 (where TensorFlow's C++ code prints) go to a temporary file, while Python's
    ``sys.stdout`` / ``sys.stderr`` (progress, messages, warnings) still reach the terminal.
    ``summary()`` counts the ops per device logged so far; after it the log is discarded.
    TensorFlow cannot turn the log off again (it logs until the process ends, down to the
    resources freed at exit), so the redirection is for the rest of the process.
    """

    def __init__(self) -> None:
        self._log = self._summary = None

    def start(self) -> PlacementLog:
        import tempfile

        import tensorflow as tf

        if compat.tensorflow_initialized():
            raise TrainerError("The device placement log must be turned on before TensorFlow "
                               "initialises its devices; start a new process for it.")
        sys.stdout.flush()
        sys.stderr.flush()
        self._log = tempfile.TemporaryFile()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        streams = (sys.stdout, sys.stderr)
        for fd in (1, 2):
            os.dup2(self._log.fileno(), fd)
        sys.stdout, sys.stderr = (
            open(saved[fd], "w", buffering=1, errors="replace",
                 encoding=getattr(stream, "encoding", None) or "utf-8")
            for fd, stream in zip((1, 2), streams))
        tf.debugging.set_log_device_placement(True)
        return self

    def summary(self) -> dict[str, int]:
        """Ops per device (``placement_summary``) logged until the first call."""
        if self._summary is None:
            _flush_c_stdio()
            self._log.seek(0)
            self._summary = placement_summary(self._log.read().decode(errors="replace"))
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
            self._log.close()
        return self._summary
