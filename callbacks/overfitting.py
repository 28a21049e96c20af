"""Says once when validation loss keeps rising while training loss keeps falling.

Writes the message as a text summary ``overfitting`` to ``<log_dir>`` (the run's root) at
step = the epoch index at which it was detected, and passes it to ``notify``.
"""

from __future__ import annotations

import math

from callbacks.base import TensorBoardCallback, never_raise
from callbacks.text import check_int


def overfitting_onset(train_losses, val_losses, patience: int):
    """Index of the first epoch of the earliest overfitting stretch, or None.

    An overfitting stretch is ``patience`` consecutive epochs ``i .. i+patience-1`` in
    which each validation loss is higher than the one before, while the training loss at
    the end of the stretch is lower than just before it (``train[i+patience-1] <
    train[i-1]``). NaN losses never count as a rise or a fall.
    """
    n = min(len(train_losses), len(val_losses))
    for start in range(1, n - patience + 1):
        end = start + patience - 1
        rising = all(val_losses[j] > val_losses[j - 1] for j in range(start, end + 1))
        if rising and train_losses[end] < train_losses[start - 1]:
            return start
    return None


def overfitting_message(began_at: int, patience: int) -> str:
    """One-line message for an onset at epoch index ``began_at`` (shown 1-based)."""
    return (
        f"Overfitting: val_loss has risen for {patience} epochs since epoch {began_at + 1} "
        "while loss kept falling."
    )


class OverfittingMonitor(TensorBoardCallback):
    """Calls ``notify(message)`` once per run when ``overfitting_onset`` first finds a stretch.

    ``began_at`` is the 0-based index of the stretch's first epoch, or None. Epochs
    without both ``loss`` and ``val_loss`` (no validation that epoch) are left out of the
    history, so with ``validation_freq=k`` the stretch counts validated epochs.
    """

    state_attributes = ("began_at", "_epochs", "_train", "_val")  # saved with a resumable state

    def __init__(self, log_dir: str, patience: int = 3, notify=print):
        super().__init__(log_dir)
        check_int("patience", patience, minimum=1)
        if not callable(notify):
            raise ValueError(
                f"Invalid value for argument `notify`. Received: notify={notify!r}. "
                "Expected a callable taking one message string."
            )
        self.patience = patience
        self.notify = notify
        self.on_train_begin()

    @never_raise
    def on_train_begin(self, logs=None):
        self.began_at = None
        self._epochs, self._train, self._val = [], [], []

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.began_at is not None or "loss" not in logs or "val_loss" not in logs:
            return
        self._epochs.append(epoch)
        self._train.append(_as_float(logs["loss"]))
        self._val.append(_as_float(logs["val_loss"]))
        onset = overfitting_onset(self._train, self._val, self.patience)
        if onset is None:
            return
        # Only epochs with both losses are in the history (see ``validation_freq``).
        self.began_at = self._epochs[onset]
        message = overfitting_message(self.began_at, self.patience)
        import tensorflow as tf

        with self.writer("").as_default(step=epoch):
            tf.summary.text("overfitting", message)
        self.writer("").flush()
        self.notify(message)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
