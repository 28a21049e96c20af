"""Every use of a private Keras, TensorFlow or TensorBoard internal, in one place.

trainer and its callbacks use public APIs everywhere else. Each function here names the
internal it touches, why no public API does the job, and the versions it was checked on;
where the assumption no longer holds it raises ``CompatError`` (a clear message naming the
installed version), never a silent skip. This module sits at the bottom of the layers: it
imports only Keras, TensorFlow and TensorBoard, so ``callbacks`` works without ``trainer``.

Tested range (see pyproject.toml): the lower bounds there are run in CI as well.
"""

from __future__ import annotations


class CompatError(RuntimeError):
    """A private internal trainer relies on is missing or changed in the installed version."""


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.11.2"`` -> ``(3, 11, 2)``; pre-release and local suffixes are ignored."""
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def keras_version() -> tuple[int, ...]:
    import keras

    return version_tuple(keras.__version__)


def _missing(what: str, library: str = "keras") -> CompatError:
    import importlib

    version = getattr(importlib.import_module(library), "__version__", "?")
    return CompatError(f"{what} is not available in the installed {library} {version}; trainer was "
                       "tested with the versions pyproject.toml allows.")


# --- training loop and callbacks (trainer/run.py, callbacks/backup.py, callbacks/gradients.py) ---


# --- devices, precision, strategies, fused optimizer updates (trainer/devices/, trainer/fused.py) ---


# --- TensorBoard internals (trainer/readback.py, trainer/sweep.py) ---


def tensorboard_without_tensorflow() -> None:
    """Makes TensorBoard read event files with its own TensorFlow stub unless TensorFlow is
    already loaded, so ``trainer show`` never imports TensorFlow. Internal: TensorBoard picks
    the stub when a module ``tensorboard.compat.notf`` exists (the switch of its own
    ``no_tensorflow`` build); no public API selects it. Checked with TensorBoard 2.16-2.21."""
    import importlib.util
    import sys
    import types

    if "tensorflow" in sys.modules or "tensorboard.compat.notf" in sys.modules:
        return
    if importlib.util.find_spec("tensorboard.compat.tensorflow_stub") is None:
        raise _missing("tensorboard.compat.tensorflow_stub (read event files without TensorFlow)",
                       "tensorboard")
    sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def hparams_session_end(status: int) -> bytes:
    """A serialized HParams ``SessionEndInfo`` summary for ``status`` (an ``api_pb2.Status``).
    Internal: the public ``hparams.api`` writes a session's start but not its end; the v1
    ``summary.session_end_pb`` does. Checked with TensorBoard 2.16-2.21."""
    from tensorboard.plugins.hparams import summary as hparams_v1

    make = getattr(hparams_v1, "session_end_pb", None)
    if make is None:
        raise _missing("tensorboard.plugins.hparams.summary.session_end_pb (a sweep trial's end status)",
                       "tensorboard")
    return make(status).SerializeToString()


# --- profiler (callbacks/profiler.py) ---
