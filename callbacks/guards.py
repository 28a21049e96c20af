"""Stopping cleanly: on Ctrl-C / SIGTERM at the end of the current batch, and on a NaN loss."""

from __future__ import annotations

import math
import signal
import threading

import keras


class Interrupted(Exception):
    """Training stopped on a signal; ``epoch``/``batch`` is the position reached (batches done)."""

    def __init__(self, signum: int, epoch: int, batch: int):
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch + 1}, batch {batch}")
        self.signum, self.epoch, self.batch = signum, epoch, batch

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


class NonFiniteLoss(Exception):
    def __init__(self, value: float, epoch: int, first_batch: int, last_batch: int):
        where = f"batch {last_batch + 1}" if first_batch == last_batch else \
            f"batches {first_batch + 1}-{last_batch + 1}"
        super().__init__(f"Loss became {value} at epoch {epoch + 1}, {where}")
        self.value, self.epoch, self.first_batch, self.last_batch = value, epoch, first_batch, last_batch


class SignalGuard:
    """While active, the first SIGINT/SIGTERM only sets ``signum`` (and calls ``notify``);
    a second one raises ``KeyboardInterrupt`` at once. Handlers are restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify=None):
        self.notify = notify
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.notify is not None:
            self.notify(f"{signal.Signals(signum).name} received: stopping at the end of this batch "
                        "and saving (press Ctrl-C again to abort at once).")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class StopOnSignal(keras.callbacks.Callback):
    """Raises :class:`Interrupted` at the first batch end (or epoch end) after a signal.

    Place it last, so the epoch-end callbacks (and the epoch-end save) run before it stops.
    """

    def __init__(self, guard: SignalGuard, steps_per_epoch: int):
        super().__init__()
        self.guard, self.steps_per_epoch = guard, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.guard.signum is not None:
            done = min(batch + 1, self.steps_per_epoch)
            raise Interrupted(self.guard.signum, self._epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.signum is not None:
            raise Interrupted(self.guard.signum, epoch + 1, 0)


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises :class:`NonFiniteLoss` at the first batch whose loss is NaN or infinite.

    With several batches per execution the loss is seen once per execution, so the error
    names the range of batches it happened in. Place it before anything that saves state.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._previous = epoch, -1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(float(loss), self._epoch, self._previous + 1, batch)
        self._previous = batch
