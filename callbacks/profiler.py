"""Profiler: a TensorFlow profiler trace of chosen training batches, for TensorBoard's Profile tab."""

from __future__ import annotations

import importlib.util
import os

import keras

from callbacks.base import never_raise

PLUGIN_HINT = ("TensorBoard's Profile tab needs the profile plugin: "
               'pip install "trainer[profile]" (xprof).')
# The plugin's module: ``xprof`` now, ``tensorboard_plugin_profile`` before it was renamed.
PLUGIN_MODULES = ("xprof", "tensorboard_plugin_profile")


def plugin_installed() -> bool:
    """Whether TensorBoard will show the Profile tab (the plugin under either name)."""
    return any(importlib.util.find_spec(name) is not None for name in PLUGIN_MODULES)


def trace_dir(log_dir) -> str:
    """Where the trace goes: ``<log_dir>/train``, as Keras's TensorBoard callback does; the
    profiler adds ``plugins/profile/<timestamp>/<host>.xplane.pb`` below it."""
    return os.path.join(os.fspath(log_dir), "train")


class Profiler(keras.callbacks.Callback):
    """Traces training batches ``start`` to ``end`` (1-based global batch numbers, inclusive).

    With ``steps_per_execution=k`` Keras reports batches k at a time: the trace then starts
    before the execution that holds batch ``start`` and stops after the first one that
    reaches ``end``, so it always covers the requested batches. A trace still running when
    training ends is stopped and saved. ``notify`` receives one line when the trace is saved
    if the Profile tab's plugin is not installed.
    """

    def __init__(self, log_dir: str, start: int, end: int, notify=print):
        super().__init__()
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
                                 "Expected a batch number >= 1.")
        if end < start:
            raise ValueError(f"Invalid value for argument `end`. Received: end={end}. "
                             f"Expected a batch number >= start ({start}).")
        self.log_dir, self.start, self.end, self.notify = os.fspath(log_dir), start, end, notify
        self.saved = False

    def on_train_begin(self, logs=None):
        self._epoch, self._tracing = 0, False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _global(self, batch: int) -> int:
        steps = self.params.get("steps") or 0
        if steps:  # a last, partial execution reports batch indices past the epoch's end
            batch = min(batch, steps - 1)
        return self._epoch * steps + batch + 1

    @never_raise
    def on_train_batch_begin(self, batch, logs=None):
        if self._tracing or self.saved:
            return
        per_execution = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if self._global(batch) + per_execution - 1 >= self.start:
            import tensorflow as tf

            tf.profiler.experimental.start(trace_dir(self.log_dir))
            self._tracing = True

    @never_raise
    def on_train_batch_end(self, batch, logs=None):
        if self._tracing and self._global(batch) >= self.end:
            self._stop()

    @never_raise
    def on_train_end(self, logs=None):
        if self._tracing:
            self._stop()

    def _stop(self):
        import tensorflow as tf

        self._tracing = False
        tf.profiler.experimental.stop()
        self.saved = True
        if not plugin_installed():
            self.notify(f"Profile trace saved under {trace_dir(self.log_dir)}; {PLUGIN_HINT}")
