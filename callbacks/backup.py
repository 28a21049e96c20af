"""Resumable training state, saved atomically: weights, optimizer, position and callback state.

Like Keras's ``BackupAndRestore`` this saves at every epoch end (and, optionally, every N
batches or seconds), but it also records the batch position within the epoch and the state of
the other callbacks (best value so far, early-stopping patience, ...), and every write is a
write to a temporary file followed by a rename: a kill at any moment leaves the previous state
intact. ``state.json`` names the weights file it belongs to, and is written last.
"""

from __future__ import annotations

import glob
import os
import time

import keras

from callbacks import compat
from callbacks.files import atomic_path, atomic_write_json, read_json

STATE_FILE = "state.json"


def state_name(callback) -> str:
    """The stable key of a callback's saved state: its ``state_name`` attribute, else its class
    name. The order of the callback list is not part of the file format."""
    return getattr(callback, "state_name", None) or type(callback).__name__


def _state_attributes(callback) -> tuple:
    """Our callbacks declare ``state_attributes``; Keras's own come from the compat module."""
    return getattr(callback, "state_attributes", None) or compat.keras_callback_state(callback)


def _plain(value):
    """JSON-able copy of a state value (numpy scalars and arrays become Python numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def stateful(callbacks) -> dict:
    """``{state_name: callback}`` for the callbacks that have state; two with one name are an
    error (give one a ``state_name``)."""
    named = {}
    for cb in callbacks:
        if not _state_attributes(cb):
            continue
        name = state_name(cb)
        if name in named:
            raise ValueError(f"Invalid value for argument `callbacks`. Received: two callbacks with "
                             f"saved state named {name!r}. Expected distinct names: set `state_name` "
                             "on one of them.")
        named[name] = cb
    return named


def snapshot_callbacks(callbacks) -> dict:
    states = {}
    for name, cb in stateful(callbacks).items():
        compat.keras_callback_state(cb, saving=True)  # Keras's own: every attribute still there
        states[name] = {a: _plain(getattr(cb, a, None)) for a in _state_attributes(cb)}
    return states


def restore_callbacks(callbacks, states: dict) -> None:
    # States saved before names were stable are keyed "<position>:<class name>".
    by_name = {key.split(":", 1)[-1]: value for key, value in states.items()}
    for name, cb in stateful(callbacks).items():
        for attr, value in by_name.get(name, {}).items():
            setattr(cb, attr, value)


def load_state(state_dir: str) -> dict | None:
    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.isfile(path):
        return None
    return read_json(path)


class Backup(keras.callbacks.Callback):
    """Saves resumable state to ``state_dir``.

    Args:
        state_dir: where ``state.json`` and ``weights-<global batch>.weights.h5`` go.
        steps_per_epoch: batches per full epoch (the position is epoch * steps + batch).
        every_batches: also save every N batches (0: epoch ends only).
        every_seconds: also save when this many seconds have passed since the last save.
        callbacks: the other callbacks whose ``state_attributes`` are saved with the weights.
        before_save: called first on every save (the run flushes its event files there, so
            that what TensorBoard shows never runs behind the saved state).
    """

    def __init__(self, state_dir: str, steps_per_epoch: int, every_batches: int = 0, every_seconds: float = 0.0,
                 callbacks=(), before_save=None):
        super().__init__()
        for name, value in (("every_batches", every_batches), ("every_seconds", every_seconds)):
            if value < 0:
                raise ValueError(f"Invalid value for argument `{name}`. Received: {name}={value}. "
                                 "Expected a number >= 0 (0 turns it off).")
        self.state_dir = state_dir
        self.steps_per_epoch = steps_per_epoch
        self.every_batches = every_batches
        self.every_seconds = every_seconds
        self.callbacks = list(callbacks)
        stateful(self.callbacks)  # two callbacks with one state name: an error now, not at a save
        self.before_save = before_save
        self.pending: dict | None = None  # callback states to put back at the next train begin
        os.makedirs(state_dir, exist_ok=True)

    def on_train_begin(self, logs=None):
        # Runs after the callbacks listed before it have reset themselves in their own
        # on_train_begin; a resumed run (or the second fit of one) puts their state back.
        if self.pending:
            restore_callbacks(self.callbacks, self.pending)
            self.pending = None
        self._last_save_time = time.monotonic()
        self._last_saved_batch = None

    def on_train_end(self, logs=None):
        self.pending = snapshot_callbacks(self.callbacks)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not (self.every_batches or self.every_seconds):
            return
        done = min(batch + 1, self.steps_per_epoch)
        if done >= self.steps_per_epoch:
            return  # the epoch-end save covers it, with the validation results
        position = self._epoch * self.steps_per_epoch + done
        due_batches = self.every_batches and (
            self._last_saved_batch is None or position - self._last_saved_batch >= self.every_batches)
        due_time = self.every_seconds and time.monotonic() - self._last_save_time >= self.every_seconds
        if due_batches or due_time:
            self.save(self._epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)

    def save(self, epoch: int, batch: int) -> dict:
        """Saves the state "``batch`` batches into epoch ``epoch`` (0-based) are done"."""
        if self.before_save is not None:
            self.before_save()
        position = epoch * self.steps_per_epoch + batch
        weights = f"weights-{position}.weights.h5"
        compat.cache_saving_skipsets()
        with atomic_path(os.path.join(self.state_dir, weights)) as tmp:
            self.model.save_weights(tmp)
        state = {
            "epoch": epoch,
            "batch": batch,
            "global_batch": position,
            "weights": weights,
            "callbacks": snapshot_callbacks(self.callbacks),
            "saved_at": time.time(),
        }
        atomic_write_json(os.path.join(self.state_dir, STATE_FILE), state)
        for old in glob.glob(os.path.join(self.state_dir, "weights-*.weights.h5")):
            if os.path.basename(old) != weights:
                os.remove(old)
        self._last_save_time, self._last_saved_batch = time.monotonic(), position
        return state

    def restore(self, state: dict) -> None:
        """Loads the weights and optimizer state saved with ``state`` into ``self.model``."""
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(self.state_dir, state["weights"]))

    def resume_from(self, state: dict) -> None:
        """Weights and optimizer now; the callbacks' state at the next ``on_train_begin``
        (after they have reset themselves)."""
        self.restore(state)
        self.pending = state.get("callbacks")
