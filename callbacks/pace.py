"""Keeping ``steps_per_execution`` prompt: measure how long one execution takes and, when it is
much longer than a target, ask for fewer batches per execution from the next epoch on.

With several batches per compiled execution, Keras calls the batch hooks once per execution, so
the progress display, the Ctrl-C check and the NaN check all wait for a whole execution. Sixteen
MNIST batches take well under a second on a CPU; a user's larger model may take many seconds.
"""

from __future__ import annotations

import statistics
import time

import keras


def paced_steps(current: int, seconds_per_batch: float, target_seconds: float = 1.0,
                tolerance: float = 2.0) -> int:
    """Batches per execution so that one execution takes about ``target_seconds``.

    Returns ``current`` unless an execution (``current`` batches) takes more than
    ``tolerance`` × target, so timing noise never makes it flip back and forth; otherwise the
    largest power of two whose execution fits in the target (at least 1). Never increases.
    """
    if current <= 1 or seconds_per_batch <= 0 or current * seconds_per_batch <= tolerance * target_seconds:
        return current
    fits = max(1, int(target_seconds / seconds_per_batch))
    steps = 1
    while steps * 2 <= min(fits, current):
        steps *= 2
    return steps


class ExecutionPace(keras.callbacks.Callback):
    """Times the executions of each epoch (the first of each ``fit`` is skipped: it includes
    tracing). At the end of an epoch whose executions were too slow (see :func:`paced_steps`), and
    when more epochs follow and nothing else asked training to stop, sets ``requested`` to the new
    number of batches per execution and stops this ``fit`` so the caller can recompile (setting
    the model's ``steps_per_execution``) and go on. Put it last in the callback list, so it sees
    every other callback's ``stop_training``."""

    def __init__(self, target_seconds: float = 1.0, clock=time.perf_counter):
        super().__init__()
        self.target_seconds = target_seconds
        self.clock = clock
        self.requested: int | None = None
        self.seconds_per_batch: float | None = None
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.requested = None
        self._first_of_fit = True
        self.on_epoch_begin(None)

    def on_epoch_begin(self, epoch, logs=None):
        self._per_batch: list[float] = []
        self._last = None  # (time, batch index) at the end of the previous execution

    def on_train_batch_begin(self, batch, logs=None):
        if self._last is None:
            self._last = (self.clock(), batch - 1)

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if self._last is None:  # no batch-begin hook seen: start timing from here
            self._last = (now, batch)
            return
        then, last_batch = self._last
        self._last = (now, batch)
        if self._first_of_fit:
            self._first_of_fit = False
            return
        if batch > last_batch:
            self._per_batch.append((now - then) / (batch - last_batch))

    def on_epoch_end(self, epoch, logs=None):
        if not self._per_batch:
            return
        self.seconds_per_batch = statistics.median(self._per_batch)
        current = int(self.model.steps_per_execution)
        steps = paced_steps(current, self.seconds_per_batch, self.target_seconds)
        last_epoch = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if steps != current and not last_epoch and not self.model.stop_training:
            self.requested = steps
            self.model.stop_training = True
