"""Shared plumbing for the TensorBoard callbacks: lazily created writers, safe logging.

Every callback in this package writes to ``<log_dir>/train`` or ``<log_dir>/validation``
(so TensorBoard overlays the two curves of one tag) or to ``<log_dir>`` itself for
run-wide panels (text reports, images of the final evaluation, layouts).

Writers are shared between callbacks in one process: two callbacks writing to the same
directory use one ``tf.summary`` writer and so one event file, which keeps TensorBoard's
loaders happy. Each callback acquires writers lazily and releases them in
``on_train_end``; the last release flushes and closes the file.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings

import keras

from callbacks.text import one_line

_lock = threading.Lock()
_writers: dict[str, list] = {}  # abs path -> [writer, refcount]


def acquire_writer(path: str):
    """Returns the process-wide ``tf.summary`` writer for ``path``, creating it if needed."""
    import tensorflow as tf

    key = os.path.abspath(path)
    with _lock:
        entry = _writers.get(key)
        if entry is None:
            entry = _writers[key] = [tf.summary.create_file_writer(key), 0]
        entry[1] += 1
        return entry[0]


def release_writer(path: str) -> None:
    """Releases one reference; the last one flushes and closes the writer."""
    key = os.path.abspath(path)
    with _lock:
        entry = _writers.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _writers[key]
            writer = entry[0]
        else:
            writer = None
    if writer is not None:
        writer.flush()
        writer.close()
    elif entry is not None:
        entry[0].flush()


def never_raise(method):
    """Decorates a callback hook so that a failure warns once and training goes on.

    Logging is a side feature: a broken summary must never cost a training run.
    ``KeyboardInterrupt`` and ``SystemExit`` still propagate.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - this is the point
            key = (type(self).__name__, method.__name__)
            failed = self.__dict__.setdefault("_failed_hooks", set())
            if key not in failed:
                failed.add(key)
                warnings.warn(
                    f"{type(self).__name__}.{method.__name__} failed and was skipped: "
                    f"{type(exc).__name__}: {one_line(exc)}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None

    return wrapper


class TensorBoardCallback(keras.callbacks.Callback):
    """Base class: a Keras callback that writes summaries under ``log_dir``.

    Subclasses call ``self.writer("train")``, ``self.writer("validation")`` or
    ``self.writer("")`` (the run's root) and use ``tf.summary`` inside
    ``with writer.as_default():``. Writers are opened on first use and released in
    ``on_train_end``, so one instance can be reused for several ``fit`` calls.
    """

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._open: dict[str, object] = {}

    def writer(self, subdir: str = ""):
        path = os.path.join(self.log_dir, subdir) if subdir else self.log_dir
        if path not in self._open:
            self._open[path] = acquire_writer(path)
        return self._open[path]

    def close_writers(self) -> None:
        for path in list(self._open):
            release_writer(path)
        self._open.clear()

    def on_train_end(self, logs=None):
        self.close_writers()
