"""Best-model checkpoint, written atomically: a kill during a save never leaves a broken file."""

from __future__ import annotations

import math

import keras

from callbacks import compat
from callbacks.base import never_raise
from callbacks.files import atomic_path


def portable_compile_config(config: dict | None) -> dict | None:
    """``config`` (``model.get_compile_config()``) without the metrics trainer registers
    (``trainer>...``), so that the saved file loads in plain Keras, compiled and with its
    optimizer state, without importing trainer's modules. Keras's own metrics stay."""
    if not config or not isinstance(config.get("metrics"), list):
        return config

    def ours(metric) -> bool:
        return isinstance(metric, dict) and str(metric.get("registered_name") or "").startswith("trainer>")

    return {**config, "metrics": [m for m in config["metrics"] if not ours(m)]}


def atomic_save(model, path: str) -> None:
    """``model.save`` to a temporary ``.keras`` beside ``path``, then rename into place; the
    file's compile config is ``portable_compile_config``'s."""
    get_compile_config = model.get_compile_config
    model.get_compile_config = lambda: portable_compile_config(get_compile_config())
    compat.cache_saving_skipsets()
    try:
        with atomic_path(path) as tmp:
            model.save(tmp)
    finally:
        del model.get_compile_config


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` whenever ``monitor`` improves (lower is better by default)."""

    state_attributes = ("best", "best_epoch")  # saved with a resumable state

    def __init__(self, path: str, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid value for argument `mode`. Received: mode={mode!r}. Expected 'min' or 'max'.")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        if self.best is None:  # keep the best of a resumed run
            self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    @never_raise
    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or not self._improved(float(value)):
            return
        atomic_save(self.model, self.path)
        self.best, self.best_epoch = float(value), epoch
